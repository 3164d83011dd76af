package pipeline

// Helpers for the parse operator (operators/parse*.go). They live here
// because they need the unexported layout of Fields.

import (
	"errors"

	"github.com/buger/jsonparser"
	"github.com/tidwall/gjson"
)

// errNotObject is returned by ParseJSONObjectStrict for valid JSON that is
// not an object; callers describe the error themselves.
var errNotObject = errors.New("JSON value is not an object")

// ParseJSONObjectStrict is ParseJSONObject for untrusted input: data must be
// exactly one valid JSON document (RFC 8259; white space around it
// allowed) whose value is an object, or fs is left empty and an error is
// returned. ParseJSONObject alone accepts some malformed input (a trailing
// comma, `01`, a bare `-`, invalid escapes, control characters in strings)
// whose bad values would later decode to nil; this function refuses it.
//
// Values are kept as raw bytes and decoded lazily, exactly as with
// ParseJSONObject, and data must stay unchanged for as long as fs is used.
// Unlike ParseJSONObject, a key that appears twice is one field: it keeps
// its first position and takes its last value (encoding/json's rule).
// The returned error says only that the input is invalid; encoding/json
// can be used on the failure path to say where.
func (fs *Fields) ParseJSONObjectStrict(data []byte) error {
	fs.Reset()
	// One validating pass (gjson's validator allocates nothing), then the
	// lazy field split. The validation makes ParseJSONObject's own
	// trailing-junk scan unnecessary, which pays for most of its cost.
	if !gjson.ValidBytes(data) {
		return errBadJSON
	}
	if firstNonSpace(data) != '{' {
		return errNotObject
	}
	var seen uint64
	err := jsonparser.ObjectEach(data, func(key, value []byte, t jsonparser.ValueType, _ int) error {
		k := kindOf(t, value)
		// jsonparser hands a key with escapes back unescaped, in a buffer
		// of its own: copy that one; alias data otherwise.
		var name string
		if within(data, key) {
			name = bytesToString(key)
		} else {
			name = string(key)
		}
		// A repeated key keeps its first place and takes the last value,
		// as encoding/json and Set do: Fields never holds a name twice.
		// seen is a one-word Bloom filter of the names so far, so the
		// search runs only when a name may be a repeat.
		bit := nameBit(name)
		if seen&bit != 0 {
			if i := fs.index(name); i >= 0 {
				fs.f[i] = field{name: name, raw: value, kind: k}
				return nil
			}
		}
		seen |= bit
		fs.f = append(fs.f, field{name: name, raw: value, kind: k})
		return nil
	})
	if err != nil {
		fs.Reset()
		return err
	}
	return nil
}

// nameBit hashes a field name to one of 64 bits.
func nameBit(name string) uint64 {
	h := uint(len(name))
	if len(name) > 0 {
		h = h*31 + uint(name[0])
		h = h*31 + uint(name[len(name)-1])
	}
	return 1 << (h & 63)
}

func firstNonSpace(data []byte) byte {
	for _, c := range data {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c
		}
	}
	return 0
}

// Merge sets every field of src on fs, in src's order, as Set does: a field
// whose name fs already has is replaced where it stands, a new one is
// appended. Values src holds undecoded stay undecoded (their raw bytes are
// shared, so they must stay unchanged as long as fs is used).
func (fs *Fields) Merge(src *Fields) {
	for _, f := range src.f {
		if i := fs.index(f.name); i >= 0 {
			fs.f[i] = f
			continue
		}
		fs.f = append(fs.f, f)
	}
}
