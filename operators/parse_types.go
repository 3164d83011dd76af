package operators

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// parseConvKind is a `types:` target type.
type parseConvKind uint8

const (
	parseToInt parseConvKind = iota + 1
	parseToFloat
	parseToBool
	parseToString
	parseToTime
)

// parseConversion is one compiled `types:` entry.
type parseConversion struct {
	field  string
	kind   parseConvKind
	name   string // the type as written, for errors
	layout string // parseToTime: Go layout; "" means RFC 3339 or unix seconds/ms
}

func newParseConversion(field, typ string) (parseConversion, error) {
	c := parseConversion{field: field, name: typ}
	switch {
	case typ == "int":
		c.kind = parseToInt
	case typ == "float":
		c.kind = parseToFloat
	case typ == "bool":
		c.kind = parseToBool
	case typ == "string":
		c.kind = parseToString
	case typ == "time":
		c.kind = parseToTime
	case strings.HasPrefix(typ, "time:"):
		c.kind, c.layout = parseToTime, typ[len("time:"):]
		if strings.TrimSpace(c.layout) == "" {
			return c, fmt.Errorf("time: needs a Go layout after the colon, such as \"time:2006-01-02 15:04:05\"")
		}
	default:
		return c, fmt.Errorf("%q is not one of int, float, bool, string, time, time:<layout>", typ)
	}
	return c, nil
}

// apply converts v, a field value, to the conversion's type.
func (c *parseConversion) apply(v any) (any, error) {
	switch c.kind {
	case parseToInt:
		if n, ok := pipeline.ToInt64(v); ok {
			return n, nil
		}
	case parseToFloat:
		if f, ok := pipeline.ToFloat64(v); ok {
			return f, nil
		}
	case parseToBool:
		if b, ok := pipeline.ToBool(v); ok {
			return b, nil
		}
	case parseToString:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return string(pipeline.AppendText(nil, v)), nil
	case parseToTime:
		if s, ok := v.(string); ok && c.layout != "" {
			if t, err := time.Parse(c.layout, s); err == nil {
				return t, nil
			}
			break
		}
		if t, err := pipeline.ToTime(v); err == nil {
			return t, nil
		}
	}
	return nil, fmt.Errorf("field %q: %s is not a valid %s", c.field, parseDescribeValue(v), c.name)
}

// parseDescribeValue renders a value for an error message, cut short.
func parseDescribeValue(v any) string {
	if s, ok := v.(string); ok {
		if len(s) > 64 {
			s = s[:64] + "..."
		}
		return strconv.Quote(s)
	}
	b := pipeline.AppendJSONValue(nil, v)
	if len(b) > 64 {
		b = append(b[:64], "..."...)
	}
	return string(b)
}

// parseInferValue types text from an untyped format: a JSON number becomes
// an int64 (no fraction or exponent, and it fits) or a float64 (finite),
// and true/True/TRUE or false/False/FALSE a bool; ok is false when s stays
// the string it was: numbers JSON does not allow ("007", "+1", ".5",
// "NaN"), an integer too large for int64, and any other text.
func parseInferValue(s string) (v any, ok bool) {
	if s == "" {
		return nil, false
	}
	switch c := s[0]; {
	case c == '-' || (c >= '0' && c <= '9'):
		return parseInferNumber(s)
	case c == 't' || c == 'T':
		if s == "true" || s == "True" || s == "TRUE" {
			return true, true
		}
	case c == 'f' || c == 'F':
		if s == "false" || s == "False" || s == "FALSE" {
			return false, true
		}
	}
	return nil, false
}

func parseInferNumber(s string) (any, bool) {
	isInt, ok := parseJSONNumber(s)
	if !ok {
		return nil, false
	}
	if isInt {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, true
		}
		return nil, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, false
	}
	return f, true
}

// parseJSONNumber reports whether s is a number in JSON's grammar
// (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?), and whether it is an
// integer (no fraction, no exponent).
func parseJSONNumber(s string) (isInt, ok bool) {
	i := 0
	if s[i] == '-' {
		i++
	}
	if i == len(s) {
		return false, false
	}
	switch {
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false, false
	}
	isInt = true
	if i < len(s) && s[i] == '.' {
		isInt = false
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		isInt = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false, false
		}
	}
	return isInt, i == len(s)
}
