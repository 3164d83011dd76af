package sinks

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/weirhq/weir/pipeline"
)

// ColumnarFieldError is a record that does not fit a columnar schema: which
// field (a dotted path with list indexes, "http.status", "tags[2]") and
// why. Check returns it; the runtime turns it into a dead letter with
// reason "schema".
type ColumnarFieldError struct {
	Field  string
	Reason string
}

func (e *ColumnarFieldError) Error() string { return "field " + e.Field + ": " + e.Reason }

// valueRules are the per-sink limits applied to every value.
type valueRules struct {
	maxValueBytes int  // longest string accepted, in bytes
	rejectUnknown bool // a field that is not in the schema is an error (unknown_fields: reject)
}

// The path of a ColumnarFieldError is built on the way out of the
// recursion, only when there is an error: leaf checks return an error with
// an empty Field, and each enclosing struct field or list element prefixes
// its own step. (Passing a path down would make it escape to the heap on
// every value.)

func fieldErr(reason string) *ColumnarFieldError { return &ColumnarFieldError{Reason: reason} }

// under prefixes the path with a field name.
func (e *ColumnarFieldError) under(name string) *ColumnarFieldError {
	switch {
	case e.Field == "":
		e.Field = name
	case e.Field[0] == '[':
		e.Field = name + e.Field
	default:
		e.Field = name + "." + e.Field
	}
	return e
}

// at prefixes the path with a list index.
func (e *ColumnarFieldError) at(i int) *ColumnarFieldError {
	idx := "[" + strconv.Itoa(i) + "]"
	switch {
	case e.Field == "" || e.Field[0] == '[':
		e.Field = idx + e.Field
	default:
		e.Field = idx + "." + e.Field
	}
	return e
}

// describe renders a value for an error message: its type and a short
// excerpt, never the whole of a large value.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		const max = 40
		if len(x) > max {
			cut := max
			for cut > 0 && !utf8.RuneStart(x[cut]) {
				cut--
			}
			return fmt.Sprintf("string %q… (%d bytes)", x[:cut], len(x))
		}
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("bool %t", x)
	case int64, int, int32, int16, int8, uint64, uint32, uint16, uint8, uint:
		return fmt.Sprintf("integer %d", x)
	case float64:
		return "float64 " + strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return "float32 " + strconv.FormatFloat(float64(x), 'g', -1, 32)
	case time.Time:
		return "time " + x.Format(time.RFC3339Nano)
	case []any:
		return fmt.Sprintf("a list of %d", len(x))
	case map[string]any, *pipeline.Fields:
		return "an object"
	case []byte:
		return fmt.Sprintf("bytes (%d)", len(x))
	}
	return fmt.Sprintf("a %T", v)
}

// The conversion functions below are the one place that decides which
// values a column accepts and how they convert; Check and both encoders
// use them, so a record that passes Check is always writable. Each returns
// the converted value, or a non-empty reason. A top-level scalar field is
// read as a pipeline.Scalar (no boxing, no decoding into the record); any
// other value goes through the as* functions, which reduce the common Go
// types to the same Scalar rules.
//
// Conversions that keep the value exactly are accepted:
//   - an integer into float64 when the float64 holds it exactly (|n| ≤ 2^53
//     always does); a whole float64 into int64 within range;
//   - an RFC 3339 string into a timestamp column, and a time.Time; a
//     "YYYY-MM-DD" string, or a time at midnight UTC, into a date column.
//
// Everything else is refused: numbers into strings or strings into
// numbers, 1.5 into int64, a time with sub-millisecond digits into
// timestamp(ms), a time of day into a date, unix numbers into timestamps
// (convert them with `to_time` in a map operator: the unit is ambiguous).

// scalarOf returns v as a Scalar when it is one of the record value types
// that have one; ok is false for the rest (times, lists, objects, Go
// integer types other than int64).
func scalarOf(v any) (sc pipeline.Scalar, ok bool) {
	switch x := v.(type) {
	case nil:
		return pipeline.Scalar{}, true
	case string:
		return pipeline.Scalar{Kind: pipeline.ScalarString, Str: x}, true
	case int64:
		return pipeline.Scalar{Kind: pipeline.ScalarInt, Int: x, Float: float64(x)}, true
	case float64:
		return pipeline.Scalar{Kind: pipeline.ScalarFloat, Float: x}, true
	case bool:
		return pipeline.Scalar{Kind: pipeline.ScalarBool, Bool: x}, true
	}
	return pipeline.Scalar{}, false
}

// describeScalar renders a scalar as describe renders the same value.
func describeScalar(sc *pipeline.Scalar) string {
	switch sc.Kind {
	case pipeline.ScalarString:
		return describe(sc.Str)
	case pipeline.ScalarInt:
		return describe(sc.Int)
	case pipeline.ScalarFloat:
		return describe(sc.Float)
	case pipeline.ScalarBool:
		return describe(sc.Bool)
	}
	return "null"
}

// isScalarKind reports whether a column of kind k reads top-level fields
// as Scalars.
func isScalarKind(k ColumnarKind) bool { return k != KindList && k != KindStruct }

func checkString(s string, rules *valueRules) (string, string) {
	if len(s) > rules.maxValueBytes {
		return "", fmt.Sprintf("string of %d bytes is over max_value_bytes (%d)", len(s), rules.maxValueBytes)
	}
	if !utf8.ValidString(s) {
		return "", "string is not valid UTF-8"
	}
	return s, ""
}

func stringOf(sc *pipeline.Scalar, rules *valueRules) (string, string) {
	if sc.Kind != pipeline.ScalarString {
		return "", "want string, got " + describeScalar(sc)
	}
	return checkString(sc.Str, rules)
}

func asString(v any, rules *valueRules) (string, string) {
	s, ok := v.(string)
	if !ok {
		return "", "want string, got " + describe(v)
	}
	return checkString(s, rules)
}

const (
	twoTo63 = 9223372036854775808.0 // 2^63, the first float64 above math.MaxInt64
)

func int64Of(sc *pipeline.Scalar) (int64, string) {
	switch sc.Kind {
	case pipeline.ScalarInt:
		return sc.Int, ""
	case pipeline.ScalarFloat:
		return floatToInt64(sc.Float)
	}
	return 0, "want int64, got " + describeScalar(sc)
}

func asInt64(v any) (int64, string) {
	if sc, ok := scalarOf(v); ok {
		return int64Of(&sc)
	}
	switch x := v.(type) {
	case int:
		return int64(x), ""
	case int32:
		return int64(x), ""
	case int16:
		return int64(x), ""
	case int8:
		return int64(x), ""
	case uint8:
		return int64(x), ""
	case uint16:
		return int64(x), ""
	case uint32:
		return int64(x), ""
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Sprintf("%d is out of int64 range", x)
		}
		return int64(x), ""
	case uint:
		if uint64(x) > math.MaxInt64 {
			return 0, fmt.Sprintf("%d is out of int64 range", x)
		}
		return int64(x), ""
	case float32:
		return floatToInt64(float64(x))
	}
	return 0, "want int64, got " + describe(v)
}

func floatToInt64(f float64) (int64, string) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return 0, "want int64, got float64 " + strconv.FormatFloat(f, 'g', -1, 64)
	case f != math.Trunc(f):
		return 0, "want int64, got float64 " + strconv.FormatFloat(f, 'g', -1, 64) + " (not a whole number)"
	case f < -twoTo63 || f >= twoTo63:
		return 0, "float64 " + strconv.FormatFloat(f, 'g', -1, 64) + " is out of int64 range"
	}
	return int64(f), ""
}

func float64Of(sc *pipeline.Scalar) (float64, string) {
	switch sc.Kind {
	case pipeline.ScalarFloat:
		return sc.Float, ""
	case pipeline.ScalarInt:
		return intToFloat64(sc.Int)
	}
	return 0, "want float64, got " + describeScalar(sc)
}

func asFloat64(v any) (float64, string) {
	if sc, ok := scalarOf(v); ok {
		return float64Of(&sc)
	}
	switch x := v.(type) {
	case float32:
		return float64(x), ""
	case int:
		return intToFloat64(int64(x))
	case int32:
		return float64(x), ""
	case int16:
		return float64(x), ""
	case int8:
		return float64(x), ""
	case uint8:
		return float64(x), ""
	case uint16:
		return float64(x), ""
	case uint32:
		return float64(x), ""
	case uint64:
		f := float64(x)
		if f >= 2*twoTo63 || uint64(f) != x {
			return 0, fmt.Sprintf("integer %d cannot be held exactly by float64", x)
		}
		return f, ""
	}
	return 0, "want float64, got " + describe(v)
}

func intToFloat64(n int64) (float64, string) {
	f := float64(n)
	if f >= twoTo63 || int64(f) != n {
		return 0, fmt.Sprintf("integer %d cannot be held exactly by float64", n)
	}
	return f, ""
}

func boolOf(sc *pipeline.Scalar) (bool, string) {
	if sc.Kind != pipeline.ScalarBool {
		return false, "want bool, got " + describeScalar(sc)
	}
	return sc.Bool, ""
}

func asBool(v any) (bool, string) {
	b, ok := v.(bool)
	if !ok {
		return false, "want bool, got " + describe(v)
	}
	return b, ""
}

// timeFromString parses an RFC 3339 time; want names the column type for
// the error (a function, so that the common case builds no string).
func timeFromString(s string, want func() string) (time.Time, string) {
	if t, ok := parseRFC3339(s); ok {
		return t, ""
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Sprintf("want %s, got %s: not an RFC 3339 time", want(), describe(s))
	}
	return t, ""
}

func notATime(want, got string) string {
	return fmt.Sprintf("want %s (a time or an RFC 3339 string), got %s", want, got)
}

// parseRFC3339 is a fast path for the common shape of RFC 3339 times,
// "2006-01-02T15:04:05[.fraction](Z|±hh:mm)" with at most 9 fraction
// digits. It reports false for anything else — including values out of
// range — and the caller then asks time.Parse, whose verdict stands; when
// it reports true the instant is the one time.Parse gives (checked by
// FuzzParseRFC3339).
func parseRFC3339(s string) (time.Time, bool) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	if year < 0 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	i, nsec := 19, 0
	if s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		digits := i - start
		if digits == 0 || digits > 9 {
			return time.Time{}, false
		}
		nsec = num(start, digits)
		for ; digits < 9; digits++ {
			nsec *= 10
		}
	}
	offset := 0
	switch {
	case i == len(s)-1 && s[i] == 'Z':
	case i == len(s)-6 && (s[i] == '+' || s[i] == '-') && s[i+3] == ':':
		oh, om := num(i+1, 2), num(i+4, 2)
		if oh < 0 || oh > 23 || om < 0 || om > 59 {
			return time.Time{}, false
		}
		offset = (oh*60 + om) * 60
		if s[i] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day { // February 30th and the like
		return time.Time{}, false
	}
	return t.Add(-time.Duration(offset) * time.Second), true
}

// Unix-second bounds inside which UnixMilli and UnixMicro do not overflow.
const (
	maxUnixForMicro = math.MaxInt64/1_000_000 - 1
	maxUnixForMilli = math.MaxInt64/1_000 - 1
)

// timestampOf returns the value in the column's unit since the Unix epoch.
func timestampOf(sc *pipeline.Scalar, k ColumnarKind) (int64, string) {
	if sc.Kind != pipeline.ScalarString {
		return 0, notATime(k.String(), describeScalar(sc))
	}
	t, reason := timeFromString(sc.Str, k.String)
	if reason != "" {
		return 0, reason
	}
	return timestampFromTime(t, k)
}

func asTimestamp(v any, k ColumnarKind) (int64, string) {
	switch x := v.(type) {
	case time.Time:
		return timestampFromTime(x, k)
	case string:
		return timestampOf(&pipeline.Scalar{Kind: pipeline.ScalarString, Str: x}, k)
	}
	return 0, notATime(k.String(), describe(v))
}

func timestampFromTime(t time.Time, k ColumnarKind) (int64, string) {
	sec := t.Unix()
	switch k {
	case KindTimestampMS:
		if t.Nanosecond()%1_000_000 != 0 {
			return 0, fmt.Sprintf("time %s has sub-millisecond digits that timestamp(ms) would lose (use timestamp(us))", t.Format(time.RFC3339Nano))
		}
		if sec > maxUnixForMilli || sec < -maxUnixForMilli {
			return 0, fmt.Sprintf("time %s is out of range for timestamp(ms)", t.Format(time.RFC3339Nano))
		}
		return t.UnixMilli(), ""
	default:
		if t.Nanosecond()%1_000 != 0 {
			return 0, fmt.Sprintf("time %s has sub-microsecond digits that timestamp(us) would lose", t.Format(time.RFC3339Nano))
		}
		if sec > maxUnixForMicro || sec < -maxUnixForMicro {
			return 0, fmt.Sprintf("time %s is out of range for timestamp(us)", t.Format(time.RFC3339Nano))
		}
		return t.UnixMicro(), ""
	}
}

// dateOf returns days since 1970-01-01.
func dateOf(sc *pipeline.Scalar) (int32, string) {
	if sc.Kind != pipeline.ScalarString {
		return 0, notATime("date", describeScalar(sc))
	}
	s := sc.Str
	if len(s) == len("2006-01-02") {
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			return 0, fmt.Sprintf("want date, got %s: not a YYYY-MM-DD date", describe(s))
		}
		return dateFromTime(d)
	}
	t, reason := timeFromString(s, func() string { return "date (YYYY-MM-DD)" })
	if reason != "" {
		return 0, reason
	}
	return dateFromTime(t)
}

func asDate(v any) (int32, string) {
	switch x := v.(type) {
	case time.Time:
		return dateFromTime(x)
	case string:
		return dateOf(&pipeline.Scalar{Kind: pipeline.ScalarString, Str: x})
	}
	return 0, notATime("date", describe(v))
}

func dateFromTime(t time.Time) (int32, string) {
	sec := t.Unix()
	if sec%86400 != 0 || t.Nanosecond() != 0 {
		return 0, fmt.Sprintf("time %s is not midnight UTC; a date column would lose its time of day", t.Format(time.RFC3339Nano))
	}
	days := sec / 86400
	if days > math.MaxInt32 || days < math.MinInt32 {
		return 0, fmt.Sprintf("time %s is out of range for date", t.Format(time.RFC3339Nano))
	}
	return int32(days), ""
}

// checkScalar checks a top-level scalar column's value.
func checkScalar(t *ColumnarType, sc *pipeline.Scalar, rules *valueRules) *ColumnarFieldError {
	var reason string
	switch t.Kind {
	case KindString:
		_, reason = stringOf(sc, rules)
	case KindInt64:
		_, reason = int64Of(sc)
	case KindFloat64:
		_, reason = float64Of(sc)
	case KindBool:
		_, reason = boolOf(sc)
	case KindTimestampMS, KindTimestampUS:
		_, reason = timestampOf(sc, t.Kind)
	case KindDate:
		_, reason = dateOf(sc)
	}
	if reason != "" {
		return fieldErr(reason)
	}
	return nil
}

func nullErr(t *ColumnarType) *ColumnarFieldError {
	return fieldErr("null or missing, but the column is not null (" + t.String() + ")")
}

func asList(v any) ([]any, string) {
	l, ok := v.([]any)
	if !ok {
		return nil, "want a list, got " + describe(v)
	}
	return l, ""
}

// structValue is a nested object: a map (from JSON) or a field set (a
// record embedded by an operator).
type structValue struct {
	m map[string]any
	f *pipeline.Fields
}

func asStruct(v any) (structValue, string) {
	switch x := v.(type) {
	case map[string]any:
		return structValue{m: x}, ""
	case *pipeline.Fields:
		return structValue{f: x}, ""
	}
	return structValue{}, "want an object, got " + describe(v)
}

func (s structValue) get(name string) (any, bool) {
	if s.f != nil {
		if !s.f.Has(name) {
			return nil, false
		}
		return s.f.Get(name), true
	}
	v, ok := s.m[name]
	return v, ok
}

// unknown returns the first key of s that is not a field of t, or "".
func (s structValue) unknown(t *ColumnarType) string {
	known := func(k string) bool {
		for i := range t.Fields {
			if t.Fields[i].Name == k {
				return true
			}
		}
		return false
	}
	if s.f != nil {
		for i := 0; i < s.f.Len(); i++ {
			if !known(s.f.Name(i)) {
				return s.f.Name(i)
			}
		}
		return ""
	}
	first := ""
	for k := range s.m {
		if !known(k) && (first == "" || k < first) {
			first = k
		}
	}
	return first
}

// fieldLookup finds a record's top-level fields by name. Records of one
// stream usually carry their fields in the same order, so it remembers
// where each column was last found and looks there first. It is not safe
// for concurrent use.
type fieldLookup struct {
	hints []int
}

// index returns the position of column col (named name) in fs, or -1.
func (l *fieldLookup) index(fs *pipeline.Fields, col int, name string) int {
	if col >= len(l.hints) {
		l.hints = append(l.hints, make([]int, col+1-len(l.hints))...)
	}
	if h := l.hints[col]; h < fs.Len() && fs.Name(h) == name {
		return h
	}
	for i := 0; i < fs.Len(); i++ {
		if fs.Name(i) == name {
			l.hints[col] = i
			return i
		}
	}
	return -1
}

// checkRecord reports whether r fits s. It converts every value exactly as
// the encoders do, so a record it accepts is always writable. It does not
// change r: top-level scalars are read with Fields.Scalar, which does not
// store decoded values. lk must be the caller's own.
func (s *ColumnarSchema) checkRecord(r *pipeline.Record, lk *fieldLookup, rules *valueRules, known map[string]struct{}) *ColumnarFieldError {
	fs := r.Fields()
	for i := range s.Fields {
		f := &s.Fields[i]
		var err *ColumnarFieldError
		switch j := lk.index(fs, i, f.Name); {
		case j < 0:
			if !f.Type.Nullable {
				err = nullErr(f.Type)
			}
		case isScalarKind(f.Type.Kind):
			if sc := fs.ScalarAt(j); sc.Kind == pipeline.ScalarNull {
				if !f.Type.Nullable {
					err = nullErr(f.Type)
				}
			} else if sc.Kind != pipeline.ScalarOther {
				err = checkScalar(f.Type, &sc, rules)
			} else {
				err = checkValue(f.Type, fs.Value(j), rules)
			}
		default:
			err = checkValue(f.Type, fs.Value(j), rules)
		}
		if err != nil {
			return err.under(f.Name)
		}
	}
	if rules.rejectUnknown {
		for i := 0; i < fs.Len(); i++ {
			if _, ok := known[fs.Name(i)]; !ok {
				return &ColumnarFieldError{Field: fs.Name(i), Reason: "not in the schema (unknown_fields: reject)"}
			}
		}
	}
	return nil
}

func checkValue(t *ColumnarType, v any, rules *valueRules) *ColumnarFieldError {
	if v == nil {
		if !t.Nullable {
			return nullErr(t)
		}
		return nil
	}
	var reason string
	switch t.Kind {
	case KindString:
		_, reason = asString(v, rules)
	case KindInt64:
		_, reason = asInt64(v)
	case KindFloat64:
		_, reason = asFloat64(v)
	case KindBool:
		_, reason = asBool(v)
	case KindTimestampMS, KindTimestampUS:
		_, reason = asTimestamp(v, t.Kind)
	case KindDate:
		_, reason = asDate(v)
	case KindList:
		var l []any
		if l, reason = asList(v); reason == "" {
			for i, e := range l {
				if err := checkValue(t.Elem, e, rules); err != nil {
					return err.at(i)
				}
			}
		}
	case KindStruct:
		var sv structValue
		if sv, reason = asStruct(v); reason == "" {
			for i := range t.Fields {
				f := &t.Fields[i]
				fv, _ := sv.get(f.Name)
				if err := checkValue(f.Type, fv, rules); err != nil {
					return err.under(f.Name)
				}
			}
			if rules.rejectUnknown {
				if k := sv.unknown(t); k != "" {
					return fieldErr("not in the schema (unknown_fields: reject)").under(k)
				}
			}
		}
	default:
		reason = "unsupported column kind " + t.Kind.String()
	}
	if reason != "" {
		return fieldErr(reason)
	}
	return nil
}

func jsonUnquote(s string, out *string) error { return json.Unmarshal([]byte(s), out) }
