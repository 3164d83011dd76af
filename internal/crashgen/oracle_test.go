package crashgen

import (
	"slices"
	"testing"
)

// TestWindowOracleByHand: the oracle's window follows the documented
// semantics on a case worked out by hand: tumbling 10 s, watermark 2 s,
// allowed_lateness 5 s, one key, event times (s past a 10 s boundary)
// 1, 12, 3, 25, 4.
func TestWindowOracleByHand(t *testing.T) {
	c := &Config{Window: &Window{Size: 10, Slide: 10, Watermark: 2, Lateness: 5}}
	base := int64(1767225600000) // a multiple of 10 s
	var recs []outRecord
	for i, s := range []int64{1, 12, 3, 25, 4} {
		recs = append(recs, outRecord{i: i, k: "a", hasTS: true, ts: base + s*1000 + 3})
	}
	e := &Expected{Windows: map[string][]string{}}
	var dead []string
	out := c.window(recs, func(r outRecord, reason string) { dead = append(dead, reason+" "+r.deadItem()) }, e)
	w := func(s int64) string { return "w=" + formatMS(base+s*1000) + " k=a" }
	want := map[string][]string{
		// 12 passes the watermark (10.003) over [0,10): on time with i=0;
		// 3 comes late but within lateness: re-fired at once.
		w(0): {w(0) + " on_time n=1 s=0 mx=0 mn=0", w(0) + " late n=2 s=2 mx=2 mn=0"},
		// 25 (watermark 23.003) fires [10,20) and drops [0,10), so 4 is
		// too late.
		w(10): {w(10) + " on_time n=1 s=1 mx=1 mn=1"},
		// the end of input fires the open window
		w(20): {w(20) + " on_time n=1 s=3 mx=3 mn=3"},
	}
	for k, items := range want {
		if !slices.Equal(e.Windows[k], items) {
			t.Errorf("%s fired %v, want %v", k, e.Windows[k], items)
		}
	}
	if len(e.Windows) != len(want) || len(out) != 4 {
		t.Errorf("%d windows, %d results; want 3 windows, 4 results: %v", len(e.Windows), len(out), e.Windows)
	}
	if !slices.Equal(dead, []string{"late i=4"}) {
		t.Errorf("dead letters %v, want [late i=4]", dead)
	}
}

// TestGenerateDeterministic: a seed gives the same configuration, YAML
// and input every time, which is what makes a printed seed a replay.
func TestGenerateDeterministic(t *testing.T) {
	p := Paths{Dir: "/d", In: "/d/in", DSN: "postgres://x", Tables: []string{"t0", "t1", "t2"}, CommitsTable: "c"}
	for seed := range uint64(50) {
		a, b := Generate(seed), Generate(seed)
		if a.YAML(p) != b.YAML(p) || !slices.Equal(a.Input(), b.Input()) {
			t.Fatalf("seed %d: two draws differ", seed)
		}
	}
}
