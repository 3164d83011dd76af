package sources

// Column values of the postgres_cdc source: pgoutput sends each column in
// PostgreSQL's text form, with the column's type OID from the Relation
// message; the initial snapshot reads rows in text form too, so both give
// the same values. They become record values (nil, bool, int64, float64,
// string, time.Time, []any, map[string]any).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// cdcDecoder turns a column's text into a record value. It is used from
// one goroutine.
type cdcDecoder struct {
	types *pgtype.Map
}

func newCDCDecoder() *cdcDecoder { return &cdcDecoder{types: pgtype.NewMap()} }

// Type OIDs the decoder converts itself (the others go through pgtype or
// stay text).
const (
	cdcOIDBool        = 16
	cdcOIDInt8        = 20
	cdcOIDInt2        = 21
	cdcOIDInt4        = 23
	cdcOIDOID         = 26
	cdcOIDJSON        = 114
	cdcOIDFloat4      = 700
	cdcOIDFloat8      = 701
	cdcOIDDate        = 1082
	cdcOIDTimestamp   = 1114
	cdcOIDTimestamptz = 1184
	cdcOIDNumeric     = 1700
	cdcOIDJSONB       = 3802
)

// decode converts the text form of a value of type oid. Types weir has no
// value for (numeric, which must stay exact; uuid, inet, interval, bytea's
// hex, enums, ranges, ...) stay as PostgreSQL's text. A text that does not
// parse as its type (which PostgreSQL never sends) is kept as text too,
// rather than lost: the record still says what the database holds.
func (d *cdcDecoder) decode(oid uint32, text []byte) any {
	s := string(text)
	switch oid {
	case cdcOIDBool:
		switch s {
		case "t":
			return true
		case "f":
			return false
		}
	case cdcOIDInt2, cdcOIDInt4, cdcOIDInt8, cdcOIDOID:
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	case cdcOIDFloat4, cdcOIDFloat8:
		switch s {
		case "NaN":
			return math.NaN()
		case "Infinity":
			return math.Inf(1)
		case "-Infinity":
			return math.Inf(-1)
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	case cdcOIDNumeric:
		return s
	case cdcOIDJSON, cdcOIDJSONB:
		if v, err := cdcJSONValue(text); err == nil {
			return v
		}
	case cdcOIDTimestamptz, cdcOIDTimestamp, cdcOIDDate:
		v, err := d.value(oid, text)
		if err == nil {
			if t, ok := v.(time.Time); ok {
				return t.UTC()
			}
		}
		return s // infinity, or a date out of Go's range
	default:
		if t, ok := d.types.TypeForOID(oid); ok {
			if _, isArray := t.Codec.(*pgtype.ArrayCodec); isArray {
				if v, err := t.Codec.DecodeValue(d.types, oid, pgtype.TextFormatCode, text); err == nil {
					if a, ok := v.([]any); ok {
						return cdcArray(a)
					}
				}
			}
		}
	}
	return s
}

// value decodes text with pgtype's codec for oid.
func (d *cdcDecoder) value(oid uint32, text []byte) (any, error) {
	t, ok := d.types.TypeForOID(oid)
	if !ok {
		return nil, fmt.Errorf("unknown type %d", oid)
	}
	return t.Codec.DecodeValue(d.types, oid, pgtype.TextFormatCode, text)
}

// cdcArray converts the elements pgtype decoded for an array column.
func cdcArray(a []any) []any {
	out := make([]any, len(a))
	for i, v := range a {
		out[i] = cdcGoValue(v)
	}
	return out
}

// cdcGoValue converts a value pgtype decoded into a record value.
func cdcGoValue(v any) any {
	switch x := v.(type) {
	case nil, bool, int64, float64, string:
		return x
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint32:
		return int64(x)
	case float32:
		return float64(x)
	case time.Time:
		return x.UTC()
	case []any:
		return cdcArray(x)
	case map[string]any:
		return x
	case []byte:
		return string(x)
	case fmt.Stringer:
		return x.String()
	case pgtype.Numeric:
		if b, err := x.MarshalJSON(); err == nil {
			return string(b)
		}
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}

// cdcJSONValue decodes a json or jsonb value; integers stay int64.
func cdcJSONValue(text []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return cdcJSONNumbers(v), nil
}

func cdcJSONNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case []any:
		for i := range x {
			x[i] = cdcJSONNumbers(x[i])
		}
	case map[string]any:
		for k, e := range x {
			x[k] = cdcJSONNumbers(e)
		}
	}
	return v
}
