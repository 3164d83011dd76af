package runtime

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// fullIDSet is a set holding count ids like "msg-00000042-…" (36 bytes,
// the size of a UUID), stored in WAL entries of 1024.
func fullIDSet(count int, age time.Duration) *idSet {
	s := newIDSet(pipeline.DedupeWindow{Count: count, Age: age})
	now := time.Now()
	for i := range count {
		s.add(fmt.Sprintf("msg-%08d-0123456789abcdef01234567", i), now.UnixNano(), uint64(i/1024+1), now)
	}
	return s
}

// BenchmarkSeenIDsSave writes the seen-id file of a full default window
// (131,072 ids), as a WAL truncation does once per deleted segment.
func BenchmarkSeenIDsSave(b *testing.B) {
	s := fullIDSet(pipeline.DefaultDedupeCount, 0)
	path := filepath.Join(b.TempDir(), seenIDsFile)
	ids := s.below(pendingEntry)
	b.ResetTimer()
	for b.Loop() {
		if err := saveSeenIDs(path, s.below(pendingEntry)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(ids)), "ids")
}

// BenchmarkSeenIDsLoad reads it back into a set, as a restart does.
func BenchmarkSeenIDsLoad(b *testing.B) {
	path := filepath.Join(b.TempDir(), seenIDsFile)
	if err := saveSeenIDs(path, fullIDSet(pipeline.DefaultDedupeCount, 0).below(pendingEntry)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s := newIDSet(pipeline.DefaultDedupeWindow())
		if err := loadSeenIDs(path, s, time.Now()); err != nil || s.len() != pipeline.DefaultDedupeCount {
			b.Fatal(err, s.len())
		}
	}
}

// BenchmarkSeenIDsFilter checks and remembers the ids of 1024-record
// batches against a full window, with dedupe_window's age on, as the
// source stage does for every batch it stores.
func BenchmarkSeenIDsFilter(b *testing.B) {
	s := fullIDSet(pipeline.DefaultDedupeCount, time.Hour)
	recs := pipeline.NewRecords(1024)
	next := pipeline.DefaultDedupeCount
	b.ResetTimer()
	for b.Loop() {
		batch := make([]*pipeline.Record, len(recs))
		for i, r := range recs {
			r.Origin.ID = fmt.Sprintf("msg-%08d-0123456789abcdef01234567", next)
			next++
			batch[i] = r
		}
		kept, added, _ := s.filter(batch, time.Now())
		s.markStored(added, uint64(next))
		if len(kept) != len(recs) {
			b.Fatal("dropped a new id")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/id")
}
