package operators

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// TestExprMemo: a memoized expression gives exactly what evaluating it
// gives, errors included, over fields of every kind; expressions that
// may not be memoized get no memo.
func TestExprMemo(t *testing.T) {
	for _, src := range []string{"status >= 500 ? 1 : 0", "a + b", "a == b", "-a", `a ?? "none"`, "a / 2", `a in ["x", "y"]`} {
		e, err := pipeline.CompileExpr(src, pipeline.Pos{})
		if err != nil {
			t.Fatal(err)
		}
		var plain, memo valueSource = newValueSource(e).clone(), newValueSource(e).clone()
		plain.memo = nil
		if memo.memo == nil {
			t.Errorf("%s: not memoized", src)
			continue
		}
		rng := rand.New(rand.NewPCG(1, 2))
		vals := []string{"1", "2", "500", "501", "2.5", "3.0", `"x"`, `"y"`, "true", "null", `{"o":1}`, "[1]"}
		for range 1500 {
			line := fmt.Sprintf(`{"status":%s,"a":%s,"b":%s}`, vals[rng.IntN(len(vals))], vals[rng.IntN(len(vals))], vals[rng.IntN(len(vals))])
			if rng.IntN(10) == 0 {
				line = `{"c":1}` // fields absent
			}
			var want, got value
			r1, r2 := &pipeline.Record{Value: []byte(line)}, &pipeline.Record{Value: []byte(line)}
			_ = r1.SetFields().ParseJSONObject(r1.Value)
			_ = r2.SetFields().ParseJSONObject(r2.Value)
			err1 := plain.read(r1, &want)
			err2 := memo.read(r2, &got)
			if (err1 == nil) != (err2 == nil) || !reflect.DeepEqual(want.any(), got.any()) {
				t.Fatalf("%s on %s: memo %#v, %v; plain %#v, %v", src, line, got.any(), err2, want.any(), err1)
			}
		}
		if memo.memo.hits == 0 {
			t.Errorf("%s: no memo hits", src)
		}
	}
	for _, src := range []string{"now()", "len(a)", "a.b > 1", "$env.a", "a + b + c", "lower(a)", "[a][0]", "status"} {
		e, err := pipeline.CompileExpr(src, pipeline.Pos{})
		if err != nil {
			t.Fatal(err)
		}
		if newValueSource(e).clone().memo != nil {
			t.Errorf("%s: memoized", src)
		}
	}
}

// TestExprMemoTurnsOff: an expression over a field with many values stops
// caching.
func TestExprMemoTurnsOff(t *testing.T) {
	e, _ := pipeline.CompileExpr("v * 2", pipeline.Pos{})
	s := newValueSource(e).clone()
	var x value
	for i := range 2 * memoProbe {
		r := &pipeline.Record{Value: fmt.Appendf(nil, `{"v":%d}`, i)}
		_ = r.SetFields().ParseJSONObject(r.Value)
		if err := s.read(r, &x); err != nil || x.Int != int64(2*i) {
			t.Fatalf("v=%d: %v %v", i, x.any(), err)
		}
	}
	if !s.memo.off || len(s.memo.cache) != 0 {
		t.Errorf("memo still on with %d entries", len(s.memo.cache))
	}
}

func TestWindowMinHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	h := minHeap[int]{less: func(a, b int) bool { return a < b }}
	var want []int
	for round := range 50 {
		for range rng.IntN(40) {
			v := rng.IntN(100)
			h.push(v)
			want = append(want, v)
		}
		if round%7 == 0 {
			h.init() // a no-op on a valid heap
		}
		for range rng.IntN(h.len() + 1) {
			slices.Sort(want)
			if got := h.pop(); got != want[0] {
				t.Fatalf("pop %d, want %d", got, want[0])
			}
			want = want[1:]
		}
	}
}

// TestWindowConfigInGo: a configuration built in Go is checked when the
// operator is made.
func TestWindowConfigInGo(t *testing.T) {
	count, err := ParseAggregate("n", "count()", pipeline.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	p99, err := ParseAggregate("p99", "quantile(latency_ms, 0.99)", pipeline.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	good := WindowConfig{Kind: "tumbling", Size: time.Minute, Parallelism: 2, Aggregates: []*Aggregate{count, p99},
		EventTime: pipeline.MustCompileExpr("ts"), GroupBy: []GroupField{{Name: "k", Expr: pipeline.MustCompileExpr("k")}}}
	op, err := good.NewOperator(pipeline.Build{})
	if err != nil {
		t.Fatal(err)
	}
	res := run(t, op, []ev{{d: sec(1), fields: `"k":"a","latency_ms":3`}}, 1, true)
	equalLines(t, "output", res.out, []string{row(0, 60, `"k":"a","n":1,"p99":3.0001207865260024`, "on_time")})
	for _, bad := range []WindowConfig{
		{Kind: "rolling", Size: time.Minute, Aggregates: []*Aggregate{count}},
		{Kind: "hopping", Size: time.Minute, Slide: 2 * time.Minute, Aggregates: []*Aggregate{count}},
		{Kind: "session", Aggregates: []*Aggregate{count}},
		{Kind: "tumbling", Size: time.Minute},
		{Kind: "tumbling", Size: time.Minute, Aggregates: []*Aggregate{{Name: "s", Func: "sum"}}},
		{Kind: "tumbling", Size: time.Minute, Aggregates: []*Aggregate{count, count}},
		{Kind: "tumbling", Size: time.Minute, Watermark: -time.Second, Aggregates: []*Aggregate{count}},
	} {
		if _, err := bad.NewOperator(pipeline.Build{}); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestWindowWatermarkAccessor(t *testing.T) {
	op := newOperator(t, windowYAML("tumbling: 1m", "watermark: 5s", "event_time: ts", "aggregate: {n: count()}"), nil).(*Window)
	if !op.Watermark().IsZero() {
		t.Errorf("watermark before any record: %v", op.Watermark())
	}
	feed(t, op, []ev{{d: sec(30)}, {d: sec(20)}}, 10, &runResult{})
	if got, want := op.Watermark(), t0.Add(25*time.Second); !got.Equal(want) {
		t.Errorf("watermark %v, want %v", got, want)
	}
	d := newOperator(t, dedupeYAML("key: id, horizon: 1m, event_time: ts, watermark: 1s"), nil).(*Dedupe)
	feed(t, d, []ev{{d: sec(30), fields: `"id":1`}}, 10, &runResult{})
	if got, want := d.Watermark(), t0.Add(29*time.Second); !got.Equal(want) {
		t.Errorf("dedupe watermark %v, want %v", got, want)
	}
}
