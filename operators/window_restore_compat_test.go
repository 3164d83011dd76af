package operators

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// TestWindowRestoreWithAddedAggregates: state restores into a window that
// has more aggregates (and a longer allowed lateness, which is not state).
// The aggregates it had keep their values exactly; an added one covers
// the records after the restore, so a window that opened after it equals
// a run with the new configuration from the start. Taking an aggregate
// away, or changing the window, is still refused.
func TestWindowRestoreWithAddedAggregates(t *testing.T) {
	events := randomStream(4, 800, 0, false) // in order: no late firings
	base := []string{"tumbling: 30s", "watermark: 2s", "event_time: ts", "group_by: [k]"}
	before := windowYAML(append(base, "aggregate: {n: count(), s: sum(v), mn: min(v)}")...)
	after := windowYAML(append(base, "allowed_lateness: 5s", "aggregate: {n: count(), s: sum(v), mx: max(v), mn: min(v), a: avg(w)}")...)

	refBefore := run(t, newOperator(t, before, nil), events, 7, true)
	refAfter := run(t, newOperator(t, after, nil), events, 7, true)

	const cut = 400
	first := newOperator(t, before, nil)
	var got runResult
	feed(t, first, events[:cut], 7, &got)
	state, err := first.(pipeline.Snapshotter).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	second := newOperator(t, after, nil)
	if err := second.(pipeline.Snapshotter).Restore(state); err != nil {
		t.Fatalf("restore into a window with added aggregates: %v", err)
	}
	feed(t, second, events[cut:], 7, &got)
	finish(t, second, &got)

	byWindow := func(lines []string) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			out[m["window_start"].(string)+"/"+m["k"].(string)] = m // its last firing
		}
		return out
	}
	gotW, wantOld, wantNew := byWindow(got.out), byWindow(refBefore.out), byWindow(refAfter.out)
	if len(gotW) != len(wantOld) || len(gotW) == 0 {
		t.Fatalf("%d windows, want %d", len(gotW), len(wantOld))
	}
	restoredAt := t0.Add(events[cut-1].d)
	checkedNew := 0
	for key, w := range gotW {
		old := wantOld[key]
		for _, f := range []string{"n", "s", "mn"} {
			if w[f] != old[f] {
				t.Errorf("window %s: %s = %v, want %v (the aggregate the state had)", key, f, w[f], old[f])
			}
		}
		start, _ := time.Parse(time.RFC3339Nano, w["window_start"].(string))
		if start.After(restoredAt) {
			checkedNew++
			for _, f := range []string{"mx", "a"} {
				if w[f] != wantNew[key][f] {
					t.Errorf("window %s, opened after the restore: %s = %v, want %v", key, f, w[f], wantNew[key][f])
				}
			}
		}
	}
	if checkedNew == 0 {
		t.Fatal("no window opened after the restore: the test checks nothing of the added aggregates")
	}

	for _, refused := range []string{
		windowYAML(append(base, "aggregate: {n: count(), s: sum(v)}")...),             // min taken away
		windowYAML(append(base, "aggregate: {n: count(), mn: min(v), s: sum(v)}")...), // reordered
		windowYAML("tumbling: 1m", "watermark: 2s", "event_time: ts", "group_by: [k]",
			"aggregate: {n: count(), s: sum(v), mn: min(v)}"), // another size
	} {
		op := newOperator(t, refused, nil)
		if err := op.(pipeline.Snapshotter).Restore(state); err == nil || !strings.Contains(err.Error(), "different window configuration") {
			t.Errorf("restore into\n%s: %v, want refused", refused, err)
		}
	}
}
