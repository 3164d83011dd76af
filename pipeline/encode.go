package pipeline

import (
	"encoding/base64"
	"errors"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

var errBadJSON = errors.New("invalid JSON object")

// TimeLayout is how weir writes time values: RFC 3339 in UTC with
// milliseconds, the format of window_start/window_end.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// AppendJSON appends the record as one JSON object (no newline): its fields
// when it has a structured view, otherwise its raw Value as-is. A raw line
// that operators only read (`filter: 'message contains "x"'`) is still
// written as the line; once changed, it is written as its fields.
func (r *Record) AppendJSON(dst []byte) []byte {
	if r.writesRaw() {
		return append(dst, r.Value...)
	}
	return r.fields.AppendJSON(dst)
}

// AppendJSON appends the fields as one JSON object. Fields that were never
// changed are copied from their original bytes.
func (fs *Fields) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	for i := range fs.f {
		f := &fs.f[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, f.name)
		dst = append(dst, ':')
		switch {
		case f.raw != nil && (f.kind == rawString || f.kind == rawEscapedString):
			dst = append(dst, '"')
			dst = append(dst, f.raw...)
			dst = append(dst, '"')
		case f.raw != nil:
			dst = append(dst, f.raw...)
		default:
			dst = AppendJSONValue(dst, f.val)
		}
	}
	return append(dst, '}')
}

// AppendJSONValue appends v, one of the field value types, as JSON. Values
// JSON cannot hold (NaN, ±Inf) are written as null; map keys are sorted.
func AppendJSONValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, x)
	case string:
		return AppendJSONString(dst, x)
	case int:
		return strconv.AppendInt(dst, int64(x), 10)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case int32:
		return strconv.AppendInt(dst, int64(x), 10)
	case uint64:
		return strconv.AppendUint(dst, x, 10)
	case float64:
		return appendFloat(dst, x)
	case float32:
		return appendFloat(dst, float64(x))
	case time.Time:
		dst = append(dst, '"')
		dst = x.UTC().AppendFormat(dst, TimeLayout)
		return append(dst, '"')
	case time.Duration:
		return AppendJSONString(dst, x.String())
	case []byte:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x)
		return append(dst, '"')
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONValue(dst, e)
		}
		return append(dst, ']')
	case []string:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, k)
			dst = append(dst, ':')
			dst = AppendJSONValue(dst, x[k])
		}
		return append(dst, '}')
	case *Fields:
		return x.AppendJSON(dst)
	case interface{ String() string }:
		return AppendJSONString(dst, x.String())
	}
	return append(dst, "null"...)
}

func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	// Like encoding/json: plain notation in the usual range, exponent outside.
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(dst, f, format, -1, 64)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a quoted JSON string, escaping as
// encoding/json does (but without HTML escaping). Invalid UTF-8 becomes
// U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
