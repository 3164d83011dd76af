package sinks

// Value conversion for the postgres sink: record field values (nil, bool,
// int64, float64, string, time.Time, []any, map[string]any) become the Go
// value pgx encodes for the column's type, and a compact codec stages
// converted rows on disk under exactly_once.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// pgKind is how a column's values are converted.
type pgKind uint8

const (
	pgText    pgKind = iota // text, varchar, char, name
	pgBool                  // boolean
	pgInt                   // smallint, integer, bigint
	pgFloat                 // real, double precision
	pgNumeric               // numeric: sent as its exact decimal text
	pgTime                  // timestamptz, timestamp, date: from time, RFC 3339 text, unix s/ms
	pgJSON                  // json, jsonb: the value encoded as JSON
	pgBytes                 // bytea: text as bytes
	pgOther                 // anything else (uuid, inet, interval, enums...): sent as text for Postgres to parse
)

// Type OIDs of the built-in types the sink converts for.
const (
	oidBool        = 16
	oidBytea       = 17
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

func pgKindOf(oid uint32) pgKind {
	switch oid {
	case oidText, oidVarchar, oidBpchar, oidName:
		return pgText
	case oidBool:
		return pgBool
	case oidInt2, oidInt4, oidInt8:
		return pgInt
	case oidFloat4, oidFloat8:
		return pgFloat
	case oidNumeric:
		return pgNumeric
	case oidTimestamptz, oidTimestamp, oidDate:
		return pgTime
	case oidJSON, oidJSONB:
		return pgJSON
	case oidBytea:
		return pgBytes
	}
	return pgOther
}

// pgConvert converts a field value for a column of kind k. The result is
// one of nil, bool, int64, float64, string, time.Time (UTC) or []byte.
// A value that does not fit is an error naming what was wrong, never a
// panic.
func pgConvert(v any, k pgKind) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch k {
	case pgText, pgOther:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return string(pipeline.AppendText(nil, v)), nil
	case pgBool:
		if x, ok := v.(string); ok {
			v = strings.TrimSpace(x)
		}
		if b, ok := pipeline.ToBool(v); ok {
			return b, nil
		}
		if _, ok := v.(string); ok {
			return nil, fmt.Errorf("%q is not a boolean", v)
		}
	case pgInt:
		if x, ok := v.(string); ok {
			v = strings.TrimSpace(x)
		}
		if n, ok := pipeline.ToInt64(v); ok {
			return n, nil
		}
		switch v.(type) {
		case float64:
			return nil, fmt.Errorf("%v is not a whole number", v)
		case string:
			return nil, fmt.Errorf("%q is not a whole number", v)
		}
	case pgFloat:
		// Not pipeline.ToFloat64: float8 takes NaN and Infinity, which a
		// JSON field cannot hold.
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		case int:
			return float64(x), nil
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not a number", x)
			}
			return f, nil
		}
	case pgNumeric:
		switch x := v.(type) {
		case int64:
			return strconv.FormatInt(x, 10), nil
		case int:
			return strconv.Itoa(x), nil
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("%v is not a finite number", x)
			}
			return strconv.FormatFloat(x, 'f', -1, 64), nil
		case string:
			s := strings.TrimSpace(x)
			if _, err := strconv.ParseFloat(s, 64); err != nil {
				return nil, fmt.Errorf("%q is not a number", x)
			}
			return s, nil
		}
	case pgTime:
		t, err := pipeline.ToTime(v)
		if err != nil {
			return nil, err
		}
		return t.UTC(), nil
	case pgJSON:
		return pipeline.AppendJSONValue(nil, v), nil
	case pgBytes:
		if s, ok := v.(string); ok {
			return []byte(s), nil
		}
		return pipeline.AppendText(nil, v), nil
	}
	return nil, fmt.Errorf("a %s cannot be stored in a %s column", pgTypeName(v), pgKindName(k))
}

func pgTypeName(v any) string {
	switch v.(type) {
	case bool:
		return "boolean"
	case int64, int, float64:
		return "number"
	case string:
		return "string"
	case time.Time:
		return "time"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func pgKindName(k pgKind) string {
	return [...]string{"text", "boolean", "integer", "floating-point", "numeric", "time", "json", "bytea", "other"}[k]
}

// pgInferType picks a column type for create_table from a first value.
func pgInferType(v any) string {
	switch x := v.(type) {
	case bool:
		return "boolean"
	case int64, int:
		return "bigint"
	case float64:
		return "double precision"
	case time.Time:
		return "timestamptz"
	case string:
		if len(x) >= 20 && x[4] == '-' && x[10] == 'T' {
			if _, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return "timestamptz"
			}
		}
		return "text"
	case []any, map[string]any:
		return "jsonb"
	}
	return "text"
}

// Staged row codec: per value a tag byte, then
//
//	0 null | 1 false | 2 true | 3 int64 (zigzag varint) | 4 float64 (8 bytes)
//	5 string (uvarint length, bytes) | 6 time (unix seconds varint, nanos uvarint)
//	7 bytes (uvarint length, bytes)
//
// It carries exactly what pgConvert returns.
const (
	tagNull = iota
	tagFalse
	tagTrue
	tagInt
	tagFloat
	tagString
	tagTime
	tagBytes
)

func pgAppendValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, tagNull)
	case bool:
		if x {
			return append(dst, tagTrue)
		}
		return append(dst, tagFalse)
	case int64:
		return binary.AppendVarint(append(dst, tagInt), x)
	case float64:
		return binary.LittleEndian.AppendUint64(append(dst, tagFloat), math.Float64bits(x))
	case string:
		dst = binary.AppendUvarint(append(dst, tagString), uint64(len(x)))
		return append(dst, x...)
	case time.Time:
		dst = binary.AppendVarint(append(dst, tagTime), x.Unix())
		return binary.AppendUvarint(dst, uint64(x.Nanosecond()))
	case []byte:
		dst = binary.AppendUvarint(append(dst, tagBytes), uint64(len(x)))
		return append(dst, x...)
	}
	// pgConvert returns none of these; keep the text rather than fail.
	return pgAppendValue(dst, string(pipeline.AppendText(nil, v)))
}

var errBadStagedRow = errors.New("damaged staged row")

// pgDecodeValues decodes a staged row into dst (reusing it). Strings and
// byte slices are copied: src is reused by the reader.
func pgDecodeValues(src []byte, dst []any) ([]any, error) {
	dst = dst[:0]
	for len(src) > 0 {
		tag := src[0]
		src = src[1:]
		switch tag {
		case tagNull:
			dst = append(dst, nil)
		case tagFalse, tagTrue:
			dst = append(dst, tag == tagTrue)
		case tagInt:
			n, k := binary.Varint(src)
			if k <= 0 {
				return nil, errBadStagedRow
			}
			dst, src = append(dst, n), src[k:]
		case tagFloat:
			if len(src) < 8 {
				return nil, errBadStagedRow
			}
			dst, src = append(dst, math.Float64frombits(binary.LittleEndian.Uint64(src))), src[8:]
		case tagString, tagBytes:
			l, k := binary.Uvarint(src)
			if k <= 0 || uint64(len(src)-k) < l {
				return nil, errBadStagedRow
			}
			b := src[k : k+int(l)]
			if tag == tagString {
				dst = append(dst, string(b))
			} else {
				dst = append(dst, append([]byte{}, b...)) // empty, not nil: nil would be NULL
			}
			src = src[k+int(l):]
		case tagTime:
			sec, k := binary.Varint(src)
			if k <= 0 {
				return nil, errBadStagedRow
			}
			ns, k2 := binary.Uvarint(src[k:])
			if k2 <= 0 || ns >= 1e9 {
				return nil, errBadStagedRow
			}
			dst, src = append(dst, time.Unix(sec, int64(ns)).UTC()), src[k+k2:]
		default:
			return nil, errBadStagedRow
		}
	}
	return dst, nil
}
