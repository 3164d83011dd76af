package sources

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// splitLog reads src once and accumulates its records' splits and its
// split changes.
type splitLog struct {
	recs     map[string]int // records per split
	added    []string
	caughtUp []string
	removed  []string
	resets   int
}

func (l *splitLog) read(t *testing.T, src *fileSource) {
	t.Helper()
	b := &pipeline.Batch{}
	if _, err := src.Read(context.Background(), b); err != nil && !src.eof {
		t.Fatalf("Read: %v", err)
	}
	for _, r := range b.Records {
		if r.Split == "" {
			t.Fatalf("record %q has no split", r.Value)
		}
		l.recs[r.Split]++
	}
	c := src.SplitChanges()
	if c.Reset {
		l.resets++
	}
	l.added = append(l.added, c.Added...)
	l.caughtUp = append(l.caughtUp, c.CaughtUp...)
	l.removed = append(l.removed, c.Removed...)
}

// In follow mode every file is a split: announced when opened, caught up
// at its end, announced again by nothing but a record after new data, and
// the first Read resets what a checkpoint held.
func TestFileFollowSplits(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	writeFile(t, a, "a1\na2\n")
	writeFile(t, b, "b1\n")
	c := fileCfg(filepath.Join(dir, "*.log"))
	c.Follow = true
	src := newFileSource(t, c, 100)
	l := &splitLog{recs: map[string]int{}}
	deadline := time.Now().Add(5 * time.Second)
	for len(l.caughtUp) < 2 && time.Now().Before(deadline) {
		l.read(t, src)
	}
	if l.resets != 1 || len(l.added) != 2 || len(l.recs) != 2 {
		t.Fatalf("resets %d, added %q, records per split %v: want one reset, both files announced, each its own split", l.resets, l.added, l.recs)
	}
	slices.Sort(l.added)
	caught := slices.Clone(l.caughtUp)
	slices.Sort(caught)
	if !slices.Equal(l.added, caught) {
		t.Fatalf("caught up %q, want both files %q", l.caughtUp, l.added)
	}
	// New data in a: its records, then caught up again; b stays caught up.
	appendFile(t, a, "a3\n")
	before := len(l.caughtUp)
	for len(l.caughtUp) == before && time.Now().Before(deadline) {
		l.read(t, src)
	}
	if got := l.caughtUp[before:]; len(got) != 1 || l.recs[got[0]] != 3 {
		t.Errorf("after a3: caught up %q, records per split %v; want a's split caught up again with 3 records", got, l.recs)
	}
	if len(l.removed) != 0 || len(l.added) != 2 {
		t.Errorf("removed %q, added %q: nothing is removed or announced again", l.removed, l.added)
	}
}

// Read to the end (follow: false), files are read one after the other:
// each is a split until its end, where it is removed.
func TestFileFiniteSplits(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.log"), "a1\na2\n")
	writeFile(t, filepath.Join(dir, "b.log"), "b1\n")
	src := newFileSource(t, fileCfg(filepath.Join(dir, "*.log")), 100)
	l := &splitLog{recs: map[string]int{}}
	for range 5 {
		l.read(t, src)
	}
	if len(l.recs) != 2 || len(l.removed) != 2 || len(l.added) != 0 || l.resets != 1 {
		t.Fatalf("records per split %v, removed %q, added %q, resets %d", l.recs, l.removed, l.added, l.resets)
	}
	for _, s := range l.removed {
		if l.recs[s] == 0 {
			t.Errorf("removed split %q sent no records", s)
		}
	}
}
