package pipeline

// Scalar: a field's value read without allocating, for the keyed
// operators (windows, dedupe) and the columnar sinks. These live beside
// Fields because they read its unexported layout.

import "strconv"

// ScalarKind says what a Scalar holds.
type ScalarKind uint8

// The kinds of Scalar.
const (
	ScalarNull   ScalarKind = iota // the field is absent or null
	ScalarString                   // Str
	ScalarInt                      // Int, and Float = float64(Int)
	ScalarFloat                    // Float
	ScalarBool                     // Bool
	ScalarOther                    // anything else: read it with Get
)

// Scalar is a field value read without boxing it in an interface.
type Scalar struct {
	Kind  ScalarKind
	Str   string
	Int   int64
	Float float64
	Bool  bool
}

// Scalar returns the named field (the first of that name, as Get does) as
// a Scalar, without allocating and without storing a decoded value in fs:
// a string still held as raw JSON aliases the record's bytes (valid as long
// as they are), a number is parsed on each call (an int64 when it is
// written without a fraction or exponent and fits, else a float64, as Get
// decodes it). Strings with escapes, objects, arrays, times and values of
// other Go types are ScalarOther; read those with Get.
//
// It is meant for operators that read a few fields of each record once
// (window aggregates), for which Get's boxing of every value in an
// interface is the main cost.
func (fs *Fields) Scalar(name string) Scalar {
	i := fs.index(name)
	if i < 0 {
		return Scalar{}
	}
	return fs.ScalarAt(i)
}

// scalarNumber is parseNumber without the interface.
func scalarNumber(raw []byte) Scalar {
	s := bytesToString(raw)
	isInt := true
	for _, c := range raw {
		if c == '.' || c == 'e' || c == 'E' {
			isInt = false
			break
		}
	}
	if isInt {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return Scalar{Kind: ScalarInt, Int: n, Float: float64(n)}
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return Scalar{}
	}
	return Scalar{Kind: ScalarFloat, Float: f}
}

// ScalarAt is Scalar for the i-th field (0 ≤ i < Len()), for readers that
// know where a field is — the columnar sinks remember each column's
// position in the last record, since the records of one stream usually
// carry their fields in the same order. The rules are Scalar's: no
// allocation, nothing stored in fs, ScalarOther for what Get must read.
func (fs *Fields) ScalarAt(i int) Scalar {
	f := &fs.f[i]
	if f.raw == nil || f.decoded {
		switch v := f.val.(type) {
		case nil:
			return Scalar{}
		case string:
			return Scalar{Kind: ScalarString, Str: v}
		case int64:
			return Scalar{Kind: ScalarInt, Int: v, Float: float64(v)}
		case float64:
			return Scalar{Kind: ScalarFloat, Float: v}
		case bool:
			return Scalar{Kind: ScalarBool, Bool: v}
		}
		return Scalar{Kind: ScalarOther}
	}
	switch f.kind {
	case rawString:
		return Scalar{Kind: ScalarString, Str: bytesToString(f.raw)}
	case rawNumber:
		return scalarNumber(f.raw)
	case rawBool:
		return Scalar{Kind: ScalarBool, Bool: len(f.raw) == 4} // "true"
	case rawNull:
		return Scalar{}
	}
	return Scalar{Kind: ScalarOther}
}
