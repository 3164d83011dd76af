package operators

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

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
