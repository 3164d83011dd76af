package pipeline

import (
	"math"
	"strconv"
)

// The value conversions that components apply to a field when it must be
// of one type: the parse operator's `types:` and the PostgreSQL sink's
// columns. (The columnar sinks are stricter on purpose: a Parquet int64
// column takes numbers only, never text; see sinks/columnar_values.go.)
// Each reports ok false when v cannot be read as the type; the caller
// words the error.

// ToInt64 reads v as a whole number: an integer, a float with no fraction
// within int64's range, or a string in base 10.
func ToInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		if x == math.Trunc(x) && x >= -(1<<63) && x < 1<<63 {
			return int64(x), true
		}
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return n, true
		}
	}
	return 0, false
}

// ToFloat64 reads v as a number: a float, an integer, or a string holding
// a finite number.
func ToFloat64(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	case string:
		if f, err := strconv.ParseFloat(x, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f, true
		}
	}
	return 0, false
}

// ToBool reads v as a boolean: a bool, or a string strconv.ParseBool
// accepts (true, false, 1, 0, t, f, TRUE, ...).
func ToBool(v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		if b, err := strconv.ParseBool(x); err == nil {
			return b, true
		}
	}
	return false, false
}
