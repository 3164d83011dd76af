package operators

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// randomStream is a seeded stream of records over a few keys, with event
// times that move forward 0-2 s a record and jump back up to disorder,
// from two inputs, with some nulls and some bad records.
func randomStream(seed uint64, n int, disorder time.Duration, bad bool) []ev {
	rng := rand.New(rand.NewPCG(seed, 42))
	var out []ev
	now := time.Duration(0)
	for i := range n {
		now += time.Duration(rng.IntN(2000)) * time.Millisecond
		d := now
		if disorder > 0 {
			d -= time.Duration(rng.Int64N(int64(disorder)))
		}
		k := string(rune('a' + rng.IntN(5)))
		v := fmt.Sprint(rng.IntN(1000) - 100)
		switch rng.IntN(20) {
		case 0:
			v = "null"
		case 1:
			v = fmt.Sprintf("%.3f", rng.Float64()*100)
		}
		fields := fmt.Sprintf(`"k":%q,"v":%s,"w":%.3f,"u":%d,"s":"s%03d"`, k, v, rng.ExpFloat64()*45+0.001, rng.IntN(3000), rng.IntN(500))
		if bad && rng.IntN(50) == 0 {
			fields = fmt.Sprintf(`"k":%q,"v":"oops"`, k) // sum of a string: dead letter
		}
		e := ev{d: d, fields: fields, source: i % 2}
		if bad && rng.IntN(100) == 0 {
			e = ev{raw: fmt.Sprintf(`{"k":%q,"v":1}`, k), source: i % 2} // no event time
		}
		out = append(out, e)
	}
	return out
}

// allAggregates uses every aggregate function.
const allAggregates = `aggregate: {n: count(), c: count(v), s: sum(v), mn: min(v), mx: max(s), a: avg(w), f: first(v), l: last(s), ` +
	`d: count_distinct(u), q: 'quantile(w, 0.9)', am: 'arg_max(k, v)', ai: 'arg_min(u, w)', col: 'collect(v, 3)'}`

var streamConfigs = []struct {
	name  string
	lines []string
}{
	{"tumbling", []string{"tumbling: 30s", "watermark: 2s", "allowed_lateness: 3s", "early_every: 10s"}},
	{"hopping", []string{"hopping: {size: 1m, slide: 20s}", "watermark: 2s", "allowed_lateness: 10s"}},
	{"session", []string{"session: {gap: 3s}", "watermark: 1s", "allowed_lateness: 2s", "early_every: 15s"}},
	{"ungrouped", []string{"tumbling: 20s", "watermark: 1s"}},
}

func streamYAML(lines []string, parallelism int) string {
	l := append(slices.Clone(lines), "event_time: ts", allAggregates, fmt.Sprintf("parallelism: %d", parallelism))
	if !slices.Contains(lines, "tumbling: 20s") {
		l = append(l, "group_by: [k]")
	}
	return windowYAML(l...)
}

// TestWindowDeterminism: the same input gives byte-identical output (and
// dead letters) whatever the batch size and parallelism.
func TestWindowDeterminism(t *testing.T) {
	events := randomStream(1, 1500, 8*time.Second, true)
	for _, cfg := range streamConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			want := run(t, newOperator(t, streamYAML(cfg.lines, 1), nil), events, 1024, true)
			if len(want.out) < 20 || len(want.dead) == 0 {
				t.Fatalf("weak test: %d outputs, %d dead letters", len(want.out), len(want.dead))
			}
			for _, par := range []int{1, 3} {
				for _, batch := range []int{1, 7, 1024} {
					if par == 1 && batch == 1024 {
						continue
					}
					got := run(t, newOperator(t, streamYAML(cfg.lines, par), nil), events, batch, true)
					equalLines(t, fmt.Sprintf("output, parallelism %d, batch %d", par, batch), got.out, want.out)
					equalLines(t, fmt.Sprintf("dead letters, parallelism %d, batch %d", par, batch), got.dead, want.dead)
				}
			}
		})
	}
}

// TestWindowSnapshotRestore: stopping at any point, restoring the snapshot
// into a new operator (with the same or another parallelism) and going on
// gives the same output as an uninterrupted run.
func TestWindowSnapshotRestore(t *testing.T) {
	events := randomStream(2, 1000, 8*time.Second, true)
	for _, cfg := range streamConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			ref := newOperator(t, streamYAML(cfg.lines, 1), nil)
			want := run(t, ref, events, 7, true)
			for i, cut := range []int{0, 1, 333, 617, 999} {
				for _, par := range [][2]int{{1, 1}, {1 + i%2, 2 - i%2}} {
					first := newOperator(t, streamYAML(cfg.lines, par[0]), nil)
					var got runResult
					feed(t, first, events[:cut], 7, &got)
					state, err := first.(pipeline.Snapshotter).Snapshot()
					if err != nil {
						t.Fatal(err)
					}
					second := newOperator(t, streamYAML(cfg.lines, par[1]), nil)
					if err := second.(pipeline.Snapshotter).Restore(state); err != nil {
						t.Fatalf("restore: %v", err)
					}
					again, err := second.(pipeline.Snapshotter).Snapshot()
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(again, state) {
						t.Errorf("cut %d: snapshot after restore differs (%d bytes, was %d)", cut, len(again), len(state))
					}
					feed(t, second, events[cut:], 7, &got)
					finish(t, second, &got)
					what := fmt.Sprintf("cut %d, parallelism %d then %d", cut, par[0], par[1])
					equalLines(t, "output, "+what, got.out, want.out)
					equalLines(t, "dead letters, "+what, got.dead, want.dead)
					if a, b := second.(*Window).Late(), ref.(*Window).Late(); a != b {
						t.Errorf("%s: Late() = %d, want %d", what, a, b)
					}
				}
			}
		})
	}
}

// TestWindowRestoreRefuses checks that bad or mismatched state is an error,
// never a panic, and leaves the operator usable.
func TestWindowRestoreRefuses(t *testing.T) {
	op := newOperator(t, streamYAML(streamConfigs[0].lines, 1), nil)
	feed(t, op, randomStream(3, 300, time.Second, false), 100, &runResult{})
	state, err := op.(pipeline.Snapshotter).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	other := newOperator(t, streamYAML(streamConfigs[1].lines, 1), nil)
	if err := other.(pipeline.Snapshotter).Restore(state); err == nil || !strings.Contains(err.Error(), "different window configuration") {
		t.Errorf("restore into another configuration: %v", err)
	}
	target := newOperator(t, streamYAML(streamConfigs[0].lines, 1), nil).(pipeline.Snapshotter)
	fresh := func() pipeline.Snapshotter { return target } // a failed Restore changes nothing
	for i := range len(state) {
		bad := slices.Clone(state)
		bad[i] ^= 0x5a
		if err := fresh().Restore(bad); err == nil {
			t.Fatalf("flipped byte %d: no error", i)
		}
	}
	for _, n := range []int{0, 3, 10, len(state) / 2, len(state) - 1} {
		if err := fresh().Restore(state[:n]); err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
	// Corrupt bodies with a valid checksum exercise the decoder's own checks.
	rng := rand.New(rand.NewPCG(9, 9))
	for range 2000 {
		body := slices.Clone(state[:len(state)-4])
		for range 1 + rng.IntN(4) {
			body[4+rng.IntN(len(body)-4)] = byte(rng.IntN(256))
		}
		w := &stateWriter{b: body}
		_ = fresh().Restore(w.finish()) // must not panic
	}
}

// TestWindowAgainstGroupBy is a property test: for random streams whose
// disorder is within the watermark (so nothing is late), every window's
// count, sum, min, max and avg equal a GROUP BY computed directly, and the
// quantile is within the documented 1% relative error.
func TestWindowAgainstGroupBy(t *testing.T) {
	type group struct {
		n, sum, min, max int64
		fsum             float64
		ws               []float64
	}
	for seed := uint64(1); seed <= 8; seed++ {
		hopping := seed%2 == 0
		size, slide := 60*time.Second, 60*time.Second
		kind := "tumbling: 1m"
		if hopping {
			slide = 20 * time.Second
			kind = "hopping: {size: 1m, slide: 20s}"
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		var events []ev
		now := time.Duration(0)
		for range 1200 {
			now += time.Duration(rng.IntN(2000)) * time.Millisecond
			d := now - time.Duration(rng.Int64N(int64(4*time.Second))) // disorder 4s < watermark 5s
			fields := fmt.Sprintf(`"k":"%c","v":%d,"w":%.3f`, 'a'+rng.IntN(4), rng.IntN(2000)-500, rng.ExpFloat64()*45+0.001)
			events = append(events, ev{d: d, fields: fields})
		}
		want := map[string]*group{}
		for _, e := range events {
			var m map[string]any
			if err := json.Unmarshal([]byte("{"+e.fields+"}"), &m); err != nil {
				t.Fatal(err)
			}
			v, w := int64(m["v"].(float64)), m["w"].(float64)
			for s := e.d.Truncate(slide); s > e.d-size; s -= slide {
				if s > e.d {
					continue
				}
				id := fmt.Sprintf("%s|%s", at(s), m["k"])
				g := want[id]
				if g == nil {
					g = &group{min: math.MaxInt64, max: math.MinInt64}
					want[id] = g
				}
				g.n++
				g.sum += v
				g.min, g.max = min(g.min, v), max(g.max, v)
				g.fsum += w
				g.ws = append(g.ws, w)
			}
		}
		op := newOperator(t, windowYAML(kind, "watermark: 5s", "event_time: ts", "group_by: [k]",
			"aggregate: {n: count(), s: sum(v), mn: min(v), mx: max(v), a: avg(w), p: 'quantile(w, 0.95)'}"), nil)
		res := run(t, op, events, 64, true)
		if len(res.dead) > 0 {
			t.Fatalf("seed %d: dead letters %q", seed, res.dead[:1])
		}
		if len(res.out) != len(want) {
			t.Errorf("seed %d: %d windows, want %d", seed, len(res.out), len(want))
		}
		for _, line := range res.out {
			var got struct {
				Start, Firing, K string
				N, S, Mn, Mx     int64
				A, P             float64
			}
			dec := json.NewDecoder(strings.NewReader(strings.NewReplacer(`"window_start"`, `"start"`, `"mn"`, `"Mn"`).Replace(line)))
			if err := dec.Decode(&got); err != nil {
				t.Fatal(err)
			}
			g := want[got.Start+"|"+got.K]
			if g == nil {
				t.Errorf("seed %d: unexpected window %s", seed, line)
				continue
			}
			if got.Firing != "on_time" || got.N != g.n || got.S != g.sum || got.Mn != g.min || got.Mx != g.max ||
				math.Abs(got.A-g.fsum/float64(g.n)) > 1e-9*math.Abs(got.A) {
				t.Errorf("seed %d: %s\nwant n=%d s=%d mn=%d mx=%d a=%v", seed, line, g.n, g.sum, g.min, g.max, g.fsum/float64(g.n))
			}
			slices.Sort(g.ws)
			exact := g.ws[int(0.95*float64(len(g.ws)-1))]
			if math.Abs(got.P-exact) > quantileAccuracy*exact*(1+1e-9) {
				t.Errorf("seed %d: %s: p95 %v, exact %v: relative error %.4f", seed, line, got.P, exact, math.Abs(got.P-exact)/exact)
			}
		}
	}
}

// FuzzWindowRestore: no state, however corrupt, makes Restore panic. The
// fuzzer mutates the body; the checksum is recomputed so that the decoder
// itself is exercised.
func FuzzWindowRestore(f *testing.F) {
	for i, cfg := range streamConfigs {
		op := newOperator(f, streamYAML(cfg.lines, 1), nil)
		feed(f, op, randomStream(uint64(i), 200, 8*time.Second, false), 50, &runResult{})
		state, err := op.(pipeline.Snapshotter).Snapshot()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), state[:len(state)-4])
	}
	targets := make([]pipeline.Snapshotter, len(streamConfigs))
	for i, cfg := range streamConfigs {
		targets[i] = newOperator(f, streamYAML(cfg.lines, 2), nil).(pipeline.Snapshotter)
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		w := &stateWriter{b: slices.Clone(body)}
		_ = targets[int(which)%len(targets)].Restore(w.finish())
	})
}
