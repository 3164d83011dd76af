package pipeline

import (
	"math"
	"testing"
)

func TestConversions(t *testing.T) {
	for _, tc := range []struct {
		in     any
		i      int64
		iok    bool
		f      float64
		fok    bool
		b, bok bool
	}{
		{in: int64(7), i: 7, iok: true, f: 7, fok: true},
		{in: 3, i: 3, iok: true, f: 3, fok: true},
		{in: 2.0, i: 2, iok: true, f: 2, fok: true},
		{in: 2.5, f: 2.5, fok: true},
		{in: 1e19, f: 1e19, fok: true}, // beyond int64
		{in: -9.223372036854775808e18, i: math.MinInt64, iok: true, f: -9.223372036854775808e18, fok: true},
		{in: "42", i: 42, iok: true, f: 42, fok: true},
		{in: " 42"}, // no trimming: the caller decides
		{in: "1.5", f: 1.5, fok: true},
		{in: "NaN"}, // not finite: not a JSON number
		{in: "true", b: true, bok: true},
		{in: "0", i: 0, iok: true, f: 0, fok: true, b: false, bok: true},
		{in: true, b: true, bok: true},
		{in: nil},
		{in: []any{1}},
	} {
		i, iok := ToInt64(tc.in)
		f, fok := ToFloat64(tc.in)
		b, bok := ToBool(tc.in)
		if i != tc.i || iok != tc.iok || f != tc.f || fok != tc.fok || b != tc.b || bok != tc.bok {
			t.Errorf("%#v: int (%d, %v) float (%v, %v) bool (%v, %v); want (%d, %v) (%v, %v) (%v, %v)",
				tc.in, i, iok, f, fok, b, bok, tc.i, tc.iok, tc.f, tc.fok, tc.b, tc.bok)
		}
	}
}
