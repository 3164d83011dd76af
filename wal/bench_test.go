package wal

import (
	"context"
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"testing"
	"time"
)

// latencyHist is a log-linear latency histogram: 8 buckets per power of
// two (about 9% resolution), so recording allocates nothing.
type latencyHist [64 * 8]uint64

func (h *latencyHist) record(d time.Duration) {
	h[histBucket(uint64(max(d, 1)))]++
}

func histBucket(ns uint64) int {
	e := bits.Len64(ns) - 1 // ns in [2^e, 2^(e+1))
	if e < 3 {
		return int(ns)
	}
	return e*8 + int((ns>>(e-3))&7)
}

// bucketUpper returns the upper bound of bucket i in nanoseconds.
func bucketUpper(i int) time.Duration {
	if i < 24 {
		return time.Duration(i + 1)
	}
	e, m := i/8, i%8
	return time.Duration((uint64(8+m+1) << e) >> 3)
}

func (h *latencyHist) add(o *latencyHist) {
	for i := range h {
		h[i] += o[i]
	}
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *latencyHist) quantile(q float64) time.Duration {
	var total uint64
	for _, c := range h {
		total += c
	}
	want := uint64(q*float64(total)) + 1
	var seen uint64
	for i, c := range h {
		seen += c
		if seen >= want {
			return bucketUpper(i)
		}
	}
	return 0
}

// BenchmarkAppend measures appends of 150-byte records per sync mode: one
// writer, 256 and 1024 goroutines appending one record at a time, and 8
// goroutines appending batches of 64 to 1024 records. It reports records/s,
// the p99 latency of an Append call, and how many records each write (and,
// for SyncAlways, each fsync) covered.
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []SyncMode{SyncAlways, SyncInterval, SyncNone} {
		b.Run(mode.String(), func(b *testing.B) {
			for _, c := range []struct{ writers, batch int }{{1, 1}, {256, 1}, {1024, 1}, {8, 64}, {8, 256}, {8, 1024}} {
				b.Run(fmt.Sprintf("writers=%d/batch=%d", c.writers, c.batch), func(b *testing.B) {
					benchAppend(b, mode, c.writers, c.batch)
				})
			}
		})
	}
}

func benchAppend(b *testing.B, mode SyncMode, writers, batch int) {
	l, err := Open(b.TempDir(), Options{Sync: mode})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rec := make([]byte, 150)
	for i := range rec {
		rec[i] = byte('a' + i%26)
	}
	recs := make([][]byte, batch)
	for i := range recs {
		recs[i] = rec
	}
	var (
		mu   sync.Mutex
		hist latencyHist
	)
	b.SetBytes(int64(len(rec) * batch))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if writers == 1 {
		ctx := context.Background()
		for range b.N {
			t0 := time.Now()
			if _, err := l.Append(ctx, recs...); err != nil {
				b.Fatal(err)
			}
			hist.record(time.Since(t0))
		}
	} else {
		// RunParallel starts parallelism*GOMAXPROCS goroutines.
		b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			var h latencyHist
			ctx := context.Background()
			for pb.Next() {
				t0 := time.Now()
				if _, err := l.Append(ctx, recs...); err != nil {
					b.Error(err)
					return
				}
				h.record(time.Since(t0))
			}
			mu.Lock()
			hist.add(&h)
			mu.Unlock()
		})
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(hist.quantile(0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(b.N*batch)/float64(max(1, l.nWrites.Load())), "records/write")
	if mode == SyncAlways {
		b.ReportMetric(float64(b.N*batch)/float64(max(1, l.nSyncs.Load())), "records/sync")
	}
}
