package operators

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

func TestAggregateSplitArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string // "text@offset"
		err  string
	}{
		{"", nil, ""},
		{"x", []string{"x@0"}, ""},
		{" a , b ", []string{"a@1", "b@5"}, ""},
		{`f(a, b), "x,y", 'p,q'`, []string{"f(a, b)@0", `"x,y"@9`, `'p,q'@16`}, ""},
		{`[1, 2], {a: 1, b: 2}, "\",", x`, []string{"[1, 2]@0", "{a: 1, b: 2}@8", `"\","@22`, "x@29"}, ""},
		{"a, ", nil, "3: empty argument"},
		{"(a", nil, "2: missing ')'"},
		{"a]", nil, "1: unbalanced ']'"},
		{`"abc`, nil, "4: unterminated string"},
	}
	for _, tt := range tests {
		args, err := splitArgs(tt.in, 0)
		if tt.err != "" {
			if err == nil || fmt.Sprintf("%d: %s", err.off, err.msg) != tt.err {
				t.Errorf("splitArgs(%q) error = %v, want %s", tt.in, err, tt.err)
			}
			continue
		}
		var got []string
		for _, a := range args {
			got = append(got, fmt.Sprintf("%s@%d", a.text, a.off))
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func mustAggregate(t testing.TB, call string) *Aggregate {
	t.Helper()
	a, err := parseAggregate("x", call, pipeline.Pos{})
	if err != nil {
		t.Fatalf("%s: %v", call, err)
	}
	return a
}

// fold feeds (x, y, t) triples through check and add, as a window does.
func fold(t testing.TB, a *Aggregate, args [][3]any) accumulator {
	t.Helper()
	acc := a.newAccumulator()
	var sc aggScratch
	var x, y value
	for _, v := range args {
		x.set(v[0])
		y.set(v[1])
		skip, err := a.check(&x, &y)
		if err != nil {
			t.Fatalf("%s: check(%v, %v): %v", a.Func, v[0], v[1], err)
		}
		if !skip {
			tm, _ := v[2].(int)
			acc.add(&x, &y, int64(tm), &sc)
		}
	}
	return acc
}

// roundTrip writes and reads an accumulator's state.
func roundTrip(t testing.TB, a *Aggregate, acc accumulator) accumulator {
	t.Helper()
	w := newStateWriter("TEST")
	acc.appendState(w)
	r, err := newStateReader(w.finish(), "TEST")
	if err != nil {
		t.Fatal(err)
	}
	back := a.newAccumulator()
	back.readState(r)
	if err := r.done(); err != nil {
		t.Fatalf("%s: read state: %v", a.Func, err)
	}
	return back
}

func TestAggregateFunctions(t *testing.T) {
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		call string
		args [][3]any // x, y, event time
		want any
	}{
		{"count(x)", [][3]any{{1}, {nil}, {"a"}}, int64(2)},
		{"sum(x)", nil, nil},
		{"sum(x)", [][3]any{{int64(1)}, {nil}, {2}}, int64(3)},
		{"sum(x)", [][3]any{{int64(1)}, {0.5}, {int64(2)}}, 3.5},
		{"sum(x)", [][3]any{{int64(math.MaxInt64)}, {int64(1)}}, float64(math.MaxInt64) + 1},
		{"sum(x)", [][3]any{{int64(math.MinInt64)}, {int64(-1)}}, float64(math.MinInt64) - 1},
		{"avg(x)", [][3]any{{int64(1)}, {int64(2)}, {nil}}, 1.5},
		{"avg(x)", [][3]any{{nil}}, nil},
		{"min(x)", [][3]any{{int64(3)}, {2.5}, {int64(7)}}, 2.5},
		{"max(x)", [][3]any{{int64(3)}, {2.5}, {int64(7)}}, int64(7)},
		{"max(x)", [][3]any{{"b"}, {"abc"}, {int64(99)}}, "b"},
		{"min(x)", [][3]any{{"b"}, {t1}, {int64(99)}}, int64(99)},
		{"max(x)", [][3]any{{"b"}, {t1}, {int64(99)}}, t1},
		{"first(x)", [][3]any{{"b", nil, 5}, {"a", nil, 3}, {"c", nil, 3}, {nil, nil, 1}}, "a"},
		{"last(x)", [][3]any{{"b", nil, 5}, {"a", nil, 3}, {"c", nil, 5}, {nil, nil, 9}}, "c"},
		{"count_distinct(x)", [][3]any{{"a"}, {"b"}, {"a"}, {int64(1)}, {1.0}, {"1"}, {nil}}, int64(4)},
		{"arg_max(x, y)", [][3]any{{"a", int64(1)}, {"b", int64(5)}, {"c", int64(5)}, {"d", nil}, {nil, int64(9)}}, "b"},
		{"arg_min(x, y)", [][3]any{{"a", "m"}, {"b", "c"}, {"c", "z"}}, "b"},
		{"collect(x, 3)", [][3]any{{int64(1)}, {nil}, {"two"}, {[]any{"three"}}, {int64(4)}}, []any{int64(1), "two", []any{"three"}}},
		{"collect(x, 3)", nil, []any{}},
		{"quantile(x, 0.5)", [][3]any{{int64(10)}, {int64(20)}, {int64(30)}}, 20.0},
		{"quantile(x, 1)", nil, nil},
	}
	for _, tt := range tests {
		a := mustAggregate(t, tt.call)
		acc := fold(t, a, tt.args)
		got := acc.result()
		if f, ok := got.(float64); ok && a.kind == aggQuantile {
			if w := tt.want.(float64); math.Abs(f-w) > quantileAccuracy*w {
				t.Errorf("%s = %v, want %v ±1%%", tt.call, got, tt.want)
			}
		} else if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.call, got, tt.want)
		}
		if back := roundTrip(t, a, acc).result(); !reflect.DeepEqual(back, got) {
			t.Errorf("%s: after a state round trip %#v, want %#v", tt.call, back, got)
		}
	}
}

// TestAggregateMerge: folding two halves and merging equals folding all
// (what session merges rely on).
func TestAggregateMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	var args [][3]any
	for i := range 3000 {
		args = append(args, [3]any{int64(rng.IntN(2500)), fmt.Sprint(rng.IntN(50)), i})
	}
	for _, call := range []string{"count(x)", "sum(x)", "avg(x)", "min(x)", "max(y)", "first(y)", "last(y)",
		"count_distinct(x)", "count_distinct(y)", "quantile(x, 0.3)", "arg_max(y, x)", "arg_min(x, y)", "collect(x, 5)"} {
		a := mustAggregate(t, call)
		for _, cut := range []int{0, 10, 1500, 3000} {
			whole := fold(t, a, args).result()
			left, right := fold(t, a, args[:cut]), fold(t, a, args[cut:])
			left.merge(right, &aggScratch{})
			got := left.result()
			if call == "count_distinct(x)" && cut > 0 && cut < 3000 {
				// Two sketches merged equal one sketch of everything only
				// approximately once the exact limit is passed.
				if g, w := float64(got.(int64)), float64(whole.(int64)); math.Abs(g-w) > 0.03*w {
					t.Errorf("%s cut %d: merged %v, whole %v", call, cut, got, whole)
				}
				continue
			}
			if !reflect.DeepEqual(got, whole) {
				t.Errorf("%s cut %d: merged %#v, whole %#v", call, cut, got, whole)
			}
		}
	}
}

func TestAggregateCountDistinctSketch(t *testing.T) {
	a := mustAggregate(t, "count_distinct(x)")
	for _, n := range []int{999, 1000, 1001, 5000, 30000} {
		var args [][3]any
		for i := range n {
			args = append(args, [3]any{fmt.Sprintf("user-%d", i)}, [3]any{fmt.Sprintf("user-%d", i)})
		}
		acc := fold(t, a, args)
		got := acc.result().(int64)
		if n <= distinctExactLimit && got != int64(n) {
			t.Errorf("%d distinct values: got %d, want exactly %d", n, got, n)
		}
		if rel := math.Abs(float64(got)-float64(n)) / float64(n); rel > 0.03 {
			t.Errorf("%d distinct values: estimate %d is %.1f%% off", n, got, 100*rel)
		}
		if back := roundTrip(t, a, acc).result(); back != got {
			t.Errorf("%d distinct values: %d after a state round trip, want %d", n, back, got)
		}
	}
}

// TestAggregateQuantileAccuracy checks the documented bound: within 1% of
// the exact value of rank ⌊q·(n−1)⌋, for several distributions, signs
// included.
func TestAggregateQuantileAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	dists := map[string]func() float64{
		"exponential": func() float64 { return rng.ExpFloat64() * 45 },
		"lognormal":   func() float64 { return math.Exp(rng.NormFloat64() * 3) },
		"normal":      func() float64 { return rng.NormFloat64() * 100 },
		"integers":    func() float64 { return float64(rng.IntN(10)) },
	}
	for name, gen := range dists {
		for _, n := range []int{1, 7, 1000, 20000} {
			vals := make([]float64, n)
			var args [][3]any
			for i := range vals {
				vals[i] = gen()
				args = append(args, [3]any{vals[i]})
			}
			slices.Sort(vals)
			acc := fold(t, mustAggregate(t, "quantile(x, 0.5)"), args).(*quantileAcc)
			for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.99, 1} {
				acc.q = q
				got := acc.result().(float64)
				// Rank ⌊q·(n−1)⌋; for negative values the sketch rounds the
				// rank up instead.
				lo, hi := vals[int(math.Floor(q*float64(n-1)))], vals[int(math.Ceil(q*float64(n-1)))]
				if math.Abs(got-lo) > quantileAccuracy*math.Abs(lo)+1e-12 && (hi >= 0 || math.Abs(got-hi) > quantileAccuracy*math.Abs(hi)) {
					t.Errorf("%s n=%d q=%g: %v, exact %v (or %v)", name, n, q, got, lo, hi)
				}
			}
		}
	}
}

func TestAggregateCheck(t *testing.T) {
	tests := []struct {
		call string
		x, y any
		err  string
	}{
		{"sum(x)", "12", nil, `sum(x): got a string, want a number`},
		{"avg(x)", true, nil, `avg(x): got a boolean, want a number`},
		{"sum(x)", math.NaN(), nil, "is not a finite number"},
		{"quantile(x, 0.5)", math.Inf(1), nil, "is not a finite number"},
		{"quantile(x, 0.5)", math.MaxFloat64, nil, "too large to track"},
		{"min(x)", map[string]any{}, nil, "min: x is an object, want a number, a string or a time"},
		{"arg_max(x, y)", "a", []any{}, "arg_max: y is a list"},
		{"min(x)", math.NaN(), nil, "is NaN"},
	}
	for _, tt := range tests {
		var x, y value
		x.set(tt.x)
		y.set(tt.y)
		_, err := mustAggregate(t, tt.call).check(&x, &y)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s check(%v, %v) = %v, want %q", tt.call, tt.x, tt.y, err, tt.err)
		}
	}
	x, y := &value{}, &value{}
	x.set("a")
	if skip, err := mustAggregate(t, "arg_max(x, y)").check(x, y); !skip || err != nil {
		t.Errorf("arg_max with a null y: skip %v, err %v; want skipped", skip, err)
	}
}

func TestWindowKeyOrder(t *testing.T) {
	// The key encoding sorts like the values, by type first.
	vals := []any{nil, false, true, int64(-5), -1.5, int64(0), 0.25, int64(3), 3.5, int64(1 << 62), "", "a", "a\x00", "a\x00b", "ab", "b",
		time.Unix(-10, 0), time.Unix(0, 0), time.Unix(0, 1), []any{int64(1)}}
	for i := 1; i < len(vals); i++ {
		a, b := appendKey(nil, vals[i-1]), appendKey(nil, vals[i])
		if string(a) >= string(b) {
			t.Errorf("key(%#v) >= key(%#v)", vals[i-1], vals[i])
		}
	}
	if string(appendKey(nil, 3.0)) != string(appendKey(nil, int64(3))) || string(appendKey(nil, 3)) != string(appendKey(nil, int64(3))) {
		t.Error("3.0, int 3 and int64 3 should be the same key")
	}
	// appendKeyValue is appendKey without boxing.
	for _, v := range append(vals, uint8(7), float32(1.5), int32(-3), map[string]any{"a": "b"}) {
		var x value
		x.set(v)
		if a, b := appendKey(nil, v), appendKeyValue(nil, &x); string(a) != string(b) {
			t.Errorf("%#v: appendKeyValue %x, appendKey %x", v, b, a)
		}
	}
}

// TestWindowParseRFC3339 checks the fast path of event-time parsing against
// time.Parse, on well-formed times and near misses.
func TestWindowParseRFC3339(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	var inputs []string
	for range 20000 {
		tm := time.Unix(rng.Int64N(int64(400*365*24*3600))-5364662400, rng.Int64N(1e9)).UTC()
		layout := []string{"2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05.000Z07:00", "2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.0Z07:00"}[rng.IntN(4)]
		if rng.IntN(3) == 0 {
			tm = tm.In(time.FixedZone("", (rng.IntN(48)-24)*1800))
		}
		inputs = append(inputs, tm.Format(layout))
	}
	inputs = append(inputs, "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2000-02-29T23:59:59.999999999Z",
		"2026-13-01T00:00:00Z", "2026-01-32T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z", "2026-01-01T00:00:60Z",
		"2026-01-01t00:00:00Z", "2026-01-01T00:00:00z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.1234567891Z",
		"2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+05:60", "2026-01-01T00:00:00-00:00", "2026-01-01T00:00:00+0100",
		"2026-01-01 00:00:00Z", "1799-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "+2026-01-01T00:00:00Z", "2026-1-01T00:00:00Z")
	for _, s := range inputs {
		ns, ok := parseRFC3339(s)
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok && (err != nil || want.UnixNano() != ns) {
			t.Errorf("parseRFC3339(%q) = %d; time.Parse: %v, %v", s, ns, want.UnixNano(), err)
		}
		if !ok && err == nil && want.Year() >= 1800 && want.Year() < 2200 && !strings.ContainsAny(s[19:], "+-") && len(s) <= 30 {
			t.Errorf("parseRFC3339(%q) refused a time time.Parse reads", s)
		}
	}
}
