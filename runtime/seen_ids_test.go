package runtime_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/runtime"
	"github.com/weirhq/weir/wal"
)

// seenIDsRun fails a WAL-fed source with ids after 2944 records (46
// batches of 64) with ingest WAL segments of 4 KiB, so that checkpoints
// truncate the WAL while it runs, then restarts it at now with a source
// that sends every id again from resend, as a broker that redelivers
// everything would. It returns how often each i reached the output.
func seenIDsRun(t *testing.T, window string, resend int, now func() time.Time) map[int]int {
	t.Helper()
	defer runtime.SetIngestSegmentSize(4096)()
	dir := t.TempDir()
	src := func(extra string) string {
		return fmt.Sprintf("{n: 4000, with_ids: true%s%s}", extra, window)
	}
	if err := runOnce(t, load(t, config(dir, src(", fail_after: 2944"), "exactly_once"))); err == nil {
		t.Fatal("want the injected failure")
	}
	// The run must have truncated the WAL, so that ids it held are gone
	// from it: they survive only in the seen-id file.
	compDir := filepath.Join(dir, "data/t/sources-0-count")
	l, err := wal.Open(filepath.Join(compDir, "wal"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := l.FirstIndex()
	l.Close()
	if first < 10 {
		t.Fatalf("ingest WAL starts at entry %d: the run truncated too little for this test", first)
	}
	if _, err := os.Stat(filepath.Join(compDir, "seen-ids")); err != nil {
		t.Fatalf("no seen-id file after WAL truncation: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := runtime.Run(ctx, load(t, config(dir, src(fmt.Sprintf(", resend_from: %d", resend)), "exactly_once")), nil, nil, runtime.Options{Now: now}); err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	for _, l := range readLines(t, dir+"/out.jsonl") {
		var i int
		if _, err := fmt.Sscanf(l, `{"i":%d,`, &i); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		seen[i]++
	}
	return seen
}

// wantCounts checks every even i below 4000 reached the output twice when
// twice(i), else once, and no odd one did.
func wantCounts(t *testing.T, seen map[int]int, twice func(i int) bool) {
	t.Helper()
	var bad []string
	for i := 0; i < 4000; i += 2 {
		want := 1
		if twice(i) {
			want = 2
		}
		if seen[i] != want {
			bad = append(bad, fmt.Sprintf("%d: %d times, want %d", i, seen[i], want))
		}
	}
	for i := range seen {
		if i%2 != 0 || i < 0 || i >= 4000 {
			bad = append(bad, fmt.Sprintf("unexpected i %d", i))
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Fatalf("%d wrong: %s", len(bad), strings.Join(bad[:min(len(bad), 10)], "; "))
	}
}

// A redelivery of an id stored before the ingest WAL was truncated is
// still dropped: the ids of deleted segments are in the seen-id file.
func TestSeenIDsSurviveWALTruncation(t *testing.T) {
	wantCounts(t, seenIDsRun(t, "", 0, nil), func(int) bool { return false })
}

// dedupe_window's count is the horizon: of the 2944 ids stored, the newest
// 500 are remembered, so their redelivery is dropped; a redelivery from 0
// brings older ids, which are processed again (and, being new to the set,
// push the newer ones out of it in turn).
func TestSeenIDsForgottenPastCount(t *testing.T) {
	wantCounts(t, seenIDsRun(t, ", dedupe_window: {count: 500}", 2944-500, nil), func(int) bool { return false })
	wantCounts(t, seenIDsRun(t, ", dedupe_window: {count: 500}", 0, nil), func(i int) bool { return i < 2944 })
}

// dedupe_window's age is the horizon by time: restarted an hour later (by
// the clock the runtime is given), ids read more than 30 minutes before
// are forgotten, while with age 2h they are all still dropped.
func TestSeenIDsForgottenPastAge(t *testing.T) {
	later := func() time.Time { return time.Now().Add(time.Hour) }
	wantCounts(t, seenIDsRun(t, ", dedupe_window: {age: 30m}", 0, later), func(i int) bool { return i < 2944 })
	wantCounts(t, seenIDsRun(t, ", dedupe_window: {age: 2h}", 0, later), func(int) bool { return false })
}

// A damaged seen-id file stops the pipeline at start, naming the file:
// starting without the ids it held would let their redeliveries through.
func TestDamagedSeenIDsFileStopsTheStart(t *testing.T) {
	defer runtime.SetIngestSegmentSize(4096)()
	dir := t.TempDir()
	if err := runOnce(t, load(t, config(dir, "{n: 4000, with_ids: true, fail_after: 2944}", "exactly_once"))); err == nil {
		t.Fatal("want the injected failure")
	}
	path := filepath.Join(dir, "data/t/sources-0-count/seen-ids")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = runOnce(t, load(t, config(dir, "{n: 4000, with_ids: true}", "exactly_once")))
	if err == nil || !strings.Contains(err.Error(), "seen message ids "+path+": the file is damaged") {
		t.Fatalf("restart on a damaged seen-id file: %v; want it refused, naming the file", err)
	}
}
