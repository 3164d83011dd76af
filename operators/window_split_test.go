package operators

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Windows keep one watermark per split (a Kafka partition, a file): the
// split that is behind holds the watermark, an announced split holds it
// until its first record, a caught-up split does not hold it, a removed
// one is forgotten, and a reset forgets the splits it does not name.
func TestWindowPerSplitWatermarks(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	op := newOperator(t, windowYAML("tumbling: 1m", "event_time: ts", "aggregate: {n: count()}"), clock)
	var res runResult
	splits := func(c pipeline.SplitChange) {
		t.Helper()
		b := &pipeline.Batch{}
		forward, err := op.(pipeline.SplitHandler).OnSplits(context.Background(), 0, c, b)
		if err != nil {
			t.Fatal(err)
		}
		if forward {
			t.Error("the window forwarded a split change; its output records carry no split")
		}
		res.take(b)
	}
	splits(pipeline.SplitChange{Reset: true, Added: []string{"p0", "p1", "p2"}})
	// p0 is fetched ahead: its whole backlog comes first.
	feed(t, op, []ev{{d: sec(10), split: "p0"}, {d: sec(70), split: "p0"}, {d: sec(130), split: "p0"}}, 10, &res)
	equalLines(t, "while p1 and p2 have sent nothing", res.out, nil)
	feed(t, op, []ev{{d: sec(20), split: "p1"}, {d: sec(125), split: "p1"}}, 10, &res)
	equalLines(t, "while p2 has sent nothing", res.out, nil)
	feed(t, op, []ev{{d: sec(30), split: "p2"}, {d: sec(65), split: "p2"}}, 10, &res)
	// Watermark: min(130, 125, 65) = 65s: [0, 60) fires with p0, p1 and p2's records.
	want := []string{row(0, 60, `"n":3`, "on_time")}
	equalLines(t, "p2 behind", res.out, want)
	if len(res.dead) != 0 {
		t.Fatalf("dead letters %q: no record is late", res.dead)
	}

	// p2 caught up: the watermark is min(130, 125) = 125s.
	splits(pipeline.SplitChange{CaughtUp: []string{"p2"}})
	want = append(want, row(60, 120, `"n":2`, "on_time"))
	equalLines(t, "p2 caught up", res.out, want)

	// Its next record makes it hold again (and is not late).
	feed(t, op, []ev{{d: sec(126), split: "p2"}, {d: sec(190), split: "p0"}, {d: sec(185), split: "p1"}}, 10, &res)
	equalLines(t, "p2 back at 126s", res.out, want)

	// p2 removed (a revoked partition): min(190, 185) = 185s.
	splits(pipeline.SplitChange{Removed: []string{"p2"}})
	want = append(want, row(120, 180, `"n":3`, "on_time"))
	equalLines(t, "p2 removed", res.out, want)

	// Snapshot and restore keep the splits: p1 still holds at 185s.
	state, err := op.(pipeline.Snapshotter).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	op = newOperator(t, windowYAML("tumbling: 1m", "event_time: ts", "aggregate: {n: count()}"), clock)
	if err := op.(pipeline.Snapshotter).Restore(state); err != nil {
		t.Fatal(err)
	}
	feed(t, op, []ev{{d: sec(300), split: "p0"}}, 10, &res)
	equalLines(t, "after restore, p1 holds", res.out, want)

	// A reset naming only p0 forgets p1 (it went to another process).
	splits(pipeline.SplitChange{Reset: true, Added: []string{"p0"}})
	want = append(want, row(180, 240, `"n":2`, "on_time"))
	equalLines(t, "after a reset to p0", res.out, want)

	// An announced split that sends nothing holds the watermark: a new p3.
	splits(pipeline.SplitChange{Added: []string{"p3"}})
	feed(t, op, []ev{{d: sec(500), split: "p0"}}, 10, &res)
	equalLines(t, "p3 announced", res.out, want)
	// p3's first record is behind p0 (at 500s) but not behind the
	// watermark (300s, where p0 alone had taken it): not late.
	feed(t, op, []ev{{d: sec(310), split: "p3"}}, 10, &res)
	if len(res.dead) != 0 {
		t.Errorf("dead letters %q: p3's first record is not late", res.dead)
	}
	feed(t, op, []ev{{d: sec(400), split: "p3"}}, 10, &res)
	want = append(want, row(300, 360, `"n":2`, "on_time"))
	equalLines(t, "p3 moves the watermark to 400s", res.out, want)
	if got := op.(*Window).Late(); got != 0 {
		t.Errorf("Late() = %d, want 0", got)
	}
}

// A state written before watermarks had splits (version 1) still restores.
func TestWindowRestoresVersion1State(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	op := newOperator(t, windowYAML("tumbling: 1m", "event_time: ts", "aggregate: {n: count()}"), clock)
	var res runResult
	feed(t, op, []ev{{d: sec(10)}, {d: sec(20), source: 1}}, 10, &res)
	w := op.(*Window)
	// The version 1 body: as version 2, without the split strings.
	s := newStateWriter(windowMagic)
	s.b = s.b[:len(windowMagic)]
	s.uvarint(1)
	s.str(w.plan.fingerprint)
	s.varint(w.marks.wm)
	s.uvarint(uint64(len(w.marks.inputs)))
	for _, m := range w.marks.inputs {
		s.varint(int64(m.source))
		s.varint(m.max)
		s.bool(m.idle)
	}
	full, err := w.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Append the rest of the version 2 body after the watermarks: the
	// early point, the late count and the windows.
	r, err := newStateReader(full, windowMagic)
	if err != nil {
		t.Fatal(err)
	}
	r.str()
	newWatermarks(0, 0).readState(r)
	s.b = append(s.b, r.b...)
	state := s.finish()
	op2 := newOperator(t, windowYAML("tumbling: 1m", "event_time: ts", "aggregate: {n: count()}"), clock)
	if err := op2.(pipeline.Snapshotter).Restore(state); err != nil {
		t.Fatalf("restore version 1: %v", err)
	}
	feed(t, op2, []ev{{d: sec(70)}, {d: sec(75), source: 1}}, 10, &res)
	if want := row(0, 60, `"n":2`, "on_time"); len(res.out) != 1 || res.out[0] != want {
		t.Errorf("out = %q, want [%s]", res.out, want)
	}
	if len(res.dead) > 0 && strings.Contains(res.dead[0], "late") {
		t.Errorf("dead = %q", res.dead)
	}
}
