package pipeline

// Helpers for the window and dedupe operators (operators/window*.go,
// operators/dedupe.go). They live here because they need the unexported
// layout of Fields.

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
