package operators

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Windows and dedupe publish each split's own watermark (its largest event
// time minus `watermark`) for the metrics, which read it from another
// goroutine: a split with no record yet is not listed, a caught-up split
// keeps its mark, a removed one goes, the same split name from two
// sources is two splits, and a restore publishes the restored splits.
func TestSplitWatermarks(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"window", windowYAML("tumbling: 1m", "event_time: ts", "watermark: 5s", "aggregate: {n: count()}")},
		{"dedupe", dedupeYAML("key: id, horizon: 1m, event_time: ts, watermark: 5s")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
			op := newOperator(t, tc.yaml, clock)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					op.(pipeline.SplitWatermarker).SplitWatermarks()
				}
			})
			defer func() { close(stop); wg.Wait() }()

			var res runResult
			splits := func(source int, c pipeline.SplitChange) {
				t.Helper()
				b := &pipeline.Batch{}
				if _, err := op.(pipeline.SplitHandler).OnSplits(context.Background(), source, c, b); err != nil {
					t.Fatal(err)
				}
				res.take(b)
			}
			check := func(what string, op pipeline.Operator, marks map[pipeline.SplitID]time.Duration) {
				t.Helper()
				want := map[pipeline.SplitID]time.Time{}
				for id, d := range marks {
					want[id] = t0.Add(d)
				}
				if got := op.(pipeline.SplitWatermarker).SplitWatermarks(); !maps.Equal(got, want) {
					t.Errorf("%s: SplitWatermarks() = %v, want %v", what, got, want)
				}
			}
			p0, p1, other := pipeline.SplitID{Source: 0, Split: "p0"}, pipeline.SplitID{Source: 0, Split: "p1"}, pipeline.SplitID{Source: 1, Split: "p0"}

			check("before any record", op, nil)
			splits(0, pipeline.SplitChange{Reset: true, Added: []string{"p0", "p1"}})
			check("announced, no record yet", op, nil)
			feed(t, op, []ev{
				{d: sec(10), split: "p0", fields: `"id":"a"`},
				{d: sec(70), split: "p0", fields: `"id":"b"`},
				{d: sec(40), split: "p0", fields: `"id":"c"`},
				{d: sec(20), split: "p1", fields: `"id":"d"`},
				{d: sec(30), split: "p0", source: 1, fields: `"id":"e"`},
			}, 2, &res)
			check("after records", op, map[pipeline.SplitID]time.Duration{p0: sec(65), p1: sec(15), other: sec(25)})
			splits(0, pipeline.SplitChange{CaughtUp: []string{"p1"}})
			check("p1 caught up", op, map[pipeline.SplitID]time.Duration{p0: sec(65), p1: sec(15), other: sec(25)})
			splits(0, pipeline.SplitChange{Removed: []string{"p0"}})
			check("source 0's p0 removed", op, map[pipeline.SplitID]time.Duration{p1: sec(15), other: sec(25)})
			feed(t, op, []ev{{d: sec(90), split: "p1", fields: `"id":"f"`}}, 1, &res)
			check("p1 moved", op, map[pipeline.SplitID]time.Duration{p1: sec(85), other: sec(25)})

			state, err := op.(pipeline.Snapshotter).Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			restored := newOperator(t, tc.yaml, clock)
			if err := restored.(pipeline.Snapshotter).Restore(state); err != nil {
				t.Fatal(err)
			}
			check("restored", restored, map[pipeline.SplitID]time.Duration{p1: sec(85), other: sec(25)})
			if len(res.dead) != 0 {
				t.Errorf("dead letters %q: no record is late", res.dead)
			}
		})
	}
}

// Sub-splits ("t/0|up") keep their own watermarks under their split: the
// first takes over the hold of its announced split, a removed split takes
// its sub-splits with it, and a Reset keeps the sub-splits of the splits
// it names (restored from a checkpoint, they hold for a partition whose
// announcements were read before the restart).
func TestSubSplitWatermarks(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := func(n int64) int64 { return n * int64(time.Second) }
	w := newWatermarks(0, 0)
	w.splits(0, pipeline.SplitChange{Reset: true, Added: []string{"t/0", "t/1"}}, now)
	w.splits(0, pipeline.SplitChange{Added: []string{"t/0|a", "t/0|b"}}, now)
	if _, ok := w.find(0, "t/0"); ok {
		t.Fatal("t/0 still holds after its first sub-split was announced")
	}
	w.observe(0, "t/0|a", s(100), now)
	w.observe(0, "t/1", s(50), now)
	if w.wm != noWatermark {
		t.Fatalf("watermark %d with t/0|b announced and silent, want none", w.wm)
	}
	w.observe(0, "t/0|b", s(80), now)
	if w.wm != s(50) {
		t.Fatalf("watermark %d, want the minimum %d", w.wm, s(50))
	}
	w.splits(0, pipeline.SplitChange{CaughtUp: []string{"t/1"}}, now)
	if w.wm != s(80) {
		t.Fatalf("watermark %d after t/1 caught up, want %d (t/0|b)", w.wm, s(80))
	}
	w.splits(0, pipeline.SplitChange{Reset: true, Added: []string{"t/0"}}, now)
	if _, ok := w.find(0, "t/0"); ok {
		t.Error("a Reset re-announced t/0 although its sub-splits hold for it")
	}
	if _, ok := w.find(0, "t/0|a"); !ok {
		t.Error("a Reset naming t/0 dropped its sub-split t/0|a")
	}
	if _, ok := w.find(0, "t/1"); ok {
		t.Error("a Reset not naming t/1 kept it")
	}
	w.splits(0, pipeline.SplitChange{Removed: []string{"t/0"}}, now)
	if len(w.inputs) != 0 {
		t.Errorf("removing t/0 left %d splits, want its sub-splits gone too", len(w.inputs))
	}
}
