package operators

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// This file holds what the window and dedupe operators share for reading
// records: per-record value sources, event time, group keys and retained
// copies of values.

// valueSource reads one value per record: a top-level field directly when
// the expression is a bare field name (the common case, and several times
// faster than running the expression), otherwise the compiled expression.
// Like pipeline.Expr it is not safe for concurrent use; clone it.
type valueSource struct {
	text  string         // the expression text, as written
	field string         // set when the expression is a bare field name
	expr  *pipeline.Expr // always compiled, for positions and the general case
	memo  *exprMemo      // results by field values, for pure expressions; nil: none
}

func newValueSource(e *pipeline.Expr) valueSource {
	s := valueSource{text: strings.TrimSpace(e.Source), expr: e}
	if isFieldName(s.text) {
		s.field = s.text
	}
	return s
}

// clone returns an independent copy (with its own memo).
func (s valueSource) clone() valueSource {
	s.expr = s.expr.Clone()
	if s.field == "" {
		s.memo = newExprMemo(s.expr)
	}
	return s
}

// read reads the value for r into x. A bare field name is read with
// Fields.Scalar, which does not allocate for strings, numbers, booleans and
// nulls.
func (s *valueSource) read(r *pipeline.Record, x *value) error {
	if s.field != "" {
		fs := r.Fields()
		x.Scalar, x.v = fs.Scalar(s.field), nil
		if x.Kind == pipeline.ScalarOther {
			x.set(fs.Get(s.field))
		}
		return nil
	}
	var v any
	var err error
	if s.memo != nil && !s.memo.off {
		v, err = s.memo.eval(s.expr, r)
	} else {
		v, err = s.expr.Eval(r)
	}
	x.set(v)
	return err
}

// value is one per-record value: a scalar held without an interface (so
// reading it allocates nothing), or any other value in v (Kind
// ScalarOther).
type value struct {
	pipeline.Scalar
	v any
}

// set makes x hold v; numbers of every Go integer type become ScalarInt.
func (x *value) set(v any) {
	x.v = nil
	switch t := v.(type) {
	case nil:
		x.Scalar = pipeline.Scalar{}
	case string:
		x.Scalar = pipeline.Scalar{Kind: pipeline.ScalarString, Str: t}
	case bool:
		x.Scalar = pipeline.Scalar{Kind: pipeline.ScalarBool, Bool: t}
	case float64:
		x.Scalar = pipeline.Scalar{Kind: pipeline.ScalarFloat, Float: t}
	default:
		f, i, isInt, ok := toNumber(v)
		switch {
		case ok && isInt:
			x.Scalar = pipeline.Scalar{Kind: pipeline.ScalarInt, Int: i, Float: f}
		case ok:
			x.Scalar = pipeline.Scalar{Kind: pipeline.ScalarFloat, Float: f}
		default:
			x.Scalar, x.v = pipeline.Scalar{Kind: pipeline.ScalarOther}, v
		}
	}
}

func (x *value) null() bool { return x.Kind == pipeline.ScalarNull }

// number returns x as a number when it is one.
func (x *value) number() (f float64, i int64, isInt, ok bool) {
	switch x.Kind {
	case pipeline.ScalarInt:
		return x.Float, x.Int, true, true
	case pipeline.ScalarFloat:
		return x.Float, 0, false, true
	}
	return 0, 0, false, false
}

// any returns x as a field value (allocating for numbers and strings).
func (x *value) any() any {
	switch x.Kind {
	case pipeline.ScalarString:
		return x.Str
	case pipeline.ScalarInt:
		return x.Int
	case pipeline.ScalarFloat:
		return x.Float
	case pipeline.ScalarBool:
		return x.Bool
	case pipeline.ScalarOther:
		return x.v
	}
	return nil
}

// appendKeyValue is appendKey(dst, x.any()) without the allocation.
func appendKeyValue(dst []byte, x *value) []byte {
	switch x.Kind {
	case pipeline.ScalarNull:
		return append(dst, keyNull)
	case pipeline.ScalarString:
		return appendKeyString(append(dst, keyString), x.Str)
	case pipeline.ScalarInt:
		return appendKeyNumber(dst, x.Float, x.Int, true)
	case pipeline.ScalarFloat:
		return appendKeyNumber(dst, x.Float, 0, false)
	case pipeline.ScalarBool:
		if x.Bool {
			return append(dst, keyTrue)
		}
		return append(dst, keyFalse)
	}
	return appendKey(dst, x.v)
}

// isFieldName reports whether s is a bare identifier that expr-lang reads as
// a variable (so evaluating it is the same as reading the field).
func isFieldName(s string) bool {
	if s == "" || s == "true" || s == "false" || s == "nil" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// Event times are kept as int64 unix nanoseconds. They must lie in
// [minEventTime, maxEventTime) so that window arithmetic (adding sizes,
// lateness and watermark delays of at most maxDuration) cannot overflow.
var (
	minEventTime = time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC)
	maxEventTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

var errNoRecordTime = errors.New("record has no time (set event_time to an expression over its fields)")

// eventTimeSource computes a record's event time: from an expression
// (pipeline.ToTime: a time, an RFC 3339 string, unix seconds or
// milliseconds) or, when src is nil, the record's Time.
type eventTimeSource struct {
	src *valueSource
}

func (e eventTimeSource) clone() eventTimeSource {
	if e.src != nil {
		c := e.src.clone()
		e.src = &c
	}
	return e
}

// of returns r's event time in unix nanoseconds; x is scratch space.
func (e eventTimeSource) of(r *pipeline.Record, x *value) (int64, error) {
	var t time.Time
	if e.src == nil {
		t = r.Time
		if t.IsZero() {
			return 0, errNoRecordTime
		}
	} else {
		if err := e.src.read(r, x); err != nil {
			return 0, err
		}
		if x.Kind == pipeline.ScalarString {
			if ns, ok := parseRFC3339(x.Str); ok {
				if ns < minEventNs || ns >= maxEventNs {
					return 0, errEventTimeRange(time.Unix(0, ns))
				}
				return ns, nil
			}
		}
		var err error
		if t, err = pipeline.ToTime(x.any()); err != nil {
			return 0, fmt.Errorf("event_time %q: %w", e.src.text, err)
		}
	}
	if t.Before(minEventTime) || !t.Before(maxEventTime) {
		return 0, errEventTimeRange(t)
	}
	return t.UnixNano(), nil
}

func errEventTimeRange(t time.Time) error {
	return fmt.Errorf("event time %s is outside the supported years 1800 to 2199", t.UTC().Format(pipeline.TimeLayout))
}

var minEventNs, maxEventNs = minEventTime.UnixNano(), maxEventTime.UnixNano()

// parseRFC3339 parses the common shape of RFC 3339 times,
// 2006-01-02T15:04:05[.fraction](Z|±hh:mm), to unix nanoseconds, giving
// exactly what time.Parse(time.RFC3339Nano, s) gives. ok is false for
// anything else, which callers hand to pipeline.ToTime.
func parseRFC3339(s string) (ns int64, ok bool) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	year, ok1 := digits(s[0:4])
	if year < 1800 || year >= 2200 {
		return 0, false // outside the supported range: ToTime and the range check say why
	}
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	second, ok6 := digits(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(month, year) || hour > 23 || minute > 59 || second > 59 {
		return 0, false
	}
	rest := s[19:]
	var frac int64
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return 0, false
		}
		for i := 1; i < 10; i++ {
			frac *= 10
			if i < n {
				frac += int64(rest[i] - '0')
			}
		}
		rest = rest[n:]
	}
	var offset int64
	switch {
	case rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, okh := digits(rest[1:3])
		om, okm := digits(rest[4:6])
		if !okh || !okm || oh > 23 || om > 59 {
			return 0, false
		}
		offset = int64(oh*3600 + om*60)
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}
	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+second) - offset
	return secs*1e9 + frac, true
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is the number of days from 1970-01-01 to a date of the
// proleptic Gregorian calendar (H. Hinnant's algorithm), for years ≥ 1.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*146097 + doe - 719468)
}

// formatTime renders unix nanoseconds in pipeline.TimeLayout.
func formatTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format(pipeline.TimeLayout)
}

// Group keys are encoded as bytes that compare like the values: a type tag,
// then an order-preserving body. Numbers of any Go type compare by value
// and equal numbers are the same key, so 3 and 3.0 are one group. The
// encoding is used as a map key (looked up with string(b), which does not
// allocate) and as the sort key that makes firing order deterministic.
const (
	keyNull   = 0x01
	keyFalse  = 0x02
	keyTrue   = 0x03
	keyNumber = 0x04
	keyString = 0x06
	keyTime   = 0x07
	keyOther  = 0x08
)

// appendKey appends the encoding of one value to dst.
func appendKey(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, keyNull)
	case bool:
		if x {
			return append(dst, keyTrue)
		}
		return append(dst, keyFalse)
	case string:
		return appendKeyString(append(dst, keyString), x)
	case int64:
		return appendKeyNumber(dst, 0, x, true)
	case float64:
		return appendKeyNumber(dst, x, 0, false)
	case time.Time:
		dst = append(dst, keyTime)
		dst = appendUint64(dst, uint64(x.Unix())^(1<<63))
		n := uint32(x.Nanosecond())
		return append(dst, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	if f, i, isInt, ok := toNumber(v); ok {
		return appendKeyNumber(dst, f, i, isInt)
	}
	return appendKeyString(append(dst, keyOther), string(pipeline.AppendJSONValue(nil, v)))
}

// appendKeyNumber encodes a number as its float64 value in order-preserving
// bits, then, for integers, the exact value (integers beyond 2^53 can share
// a float64); a float with an integral value in int64 range counts as that
// integer.
func appendKeyNumber(dst []byte, f float64, i int64, isInt bool) []byte {
	if !isInt && f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
		i, isInt = int64(f), true
	}
	if isInt {
		f = float64(i)
	}
	b := math.Float64bits(f)
	if b>>63 == 1 {
		b = ^b
	} else {
		b |= 1 << 63
	}
	dst = appendUint64(append(dst, keyNumber), b)
	if isInt {
		return appendUint64(dst, uint64(i)^(1<<63))
	}
	return appendUint64(dst, 0)
}

// appendKeyString escapes 0x00 as 00 FF and terminates with 00 01, which
// keeps byte order equal to string order and the encoding unambiguous.
func appendKeyString(dst []byte, s string) []byte {
	for {
		i := strings.IndexByte(s, 0)
		if i < 0 {
			break
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, 0x00, 0xFF)
		s = s[i+1:]
	}
	dst = append(dst, s...)
	return append(dst, 0x00, 0x01)
}

func appendUint64(dst []byte, u uint64) []byte {
	return append(dst, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32), byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
}

// toNumber converts any Go number to float64, and to int64 when it is an
// integer type whose value fits.
func toNumber(v any) (f float64, i int64, isInt bool, ok bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), x, true, true
	case float64:
		return x, 0, false, true
	case int:
		return float64(x), int64(x), true, true
	case int32:
		return float64(x), int64(x), true, true
	case int16:
		return float64(x), int64(x), true, true
	case int8:
		return float64(x), int64(x), true, true
	case uint8:
		return float64(x), int64(x), true, true
	case uint16:
		return float64(x), int64(x), true, true
	case uint32:
		return float64(x), int64(x), true, true
	case uint:
		if uint64(x) <= math.MaxInt64 {
			return float64(x), int64(x), true, true
		}
		return float64(x), 0, false, true
	case uint64:
		if x <= math.MaxInt64 {
			return float64(x), int64(x), true, true
		}
		return float64(x), 0, false, true
	case float32:
		return float64(x), 0, false, true
	}
	return 0, 0, false, false
}

// retain returns a copy of v that shares no memory with a record (strings
// decoded from a record alias its Value, which would otherwise stay alive
// with the window), normalised to the field value types: integers become
// int64, float32 float64, *pipeline.Fields a map. Values of other types are
// kept as their JSON text, so that state survives a snapshot unchanged.
func retain(v any) any {
	switch x := v.(type) {
	case nil, bool, int64, float64:
		return v
	case string:
		return strings.Clone(x)
	case time.Time:
		return x
	case []byte:
		return bytes.Clone(x)
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = retain(e)
		}
		return c
	case []string:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = strings.Clone(e)
		}
		return c
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, e := range x {
			c[strings.Clone(k)] = retain(e)
		}
		return c
	case *pipeline.Fields:
		return retain(x.Map())
	}
	if f, i, isInt, ok := toNumber(v); ok {
		if isInt {
			return i
		}
		return f
	}
	return string(pipeline.AppendText(nil, v))
}
