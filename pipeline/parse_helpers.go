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
	// One validating pass (gjson's validator allocates nothing), then a
	// split of the top level that, on input known to be valid, only has to
	// find where each key and value ends. The split still checks every
	// bound and expected byte, so a validator gap is an error, never a
	// panic.
	if !gjson.ValidBytes(data) {
		return errBadJSON
	}
	i := jsonSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errNotObject
	}
	if err := fs.splitObject(data, i+1); err != nil {
		fs.Reset()
		return err
	}
	return nil
}

// splitObject appends the members of the valid JSON object whose first
// member (or closing brace) is at or after i.
func (fs *Fields) splitObject(data []byte, i int) error {
	var seen uint64 // a one-word Bloom filter of the names so far
	for {
		i = jsonSpace(data, i)
		if i < len(data) && data[i] == ',' {
			i = jsonSpace(data, i+1)
		}
		if i >= len(data) {
			return errBadJSON
		}
		if data[i] == '}' {
			return nil
		}
		if data[i] != '"' {
			return errBadJSON
		}
		kend, kesc := validStringEnd(data, i+1)
		if kend < 0 {
			return errBadJSON
		}
		var name string
		if kesc {
			s, err := jsonparser.ParseString(data[i+1 : kend])
			if err != nil {
				return err
			}
			name = s
		} else {
			name = bytesToString(data[i+1 : kend])
		}
		i = jsonSpace(data, kend+1)
		if i >= len(data) || data[i] != ':' {
			return errBadJSON
		}
		i = jsonSpace(data, i+1)
		if i >= len(data) {
			return errBadJSON
		}
		f := field{name: name}
		switch c := data[i]; c {
		case '"':
			end, esc := validStringEnd(data, i+1)
			if end < 0 {
				return errBadJSON
			}
			f.raw, f.kind = data[i+1:end], rawString
			if esc {
				f.kind = rawEscapedString
			}
			i = end + 1
		case '{', '[':
			end := validCompositeEnd(data, i)
			if end < 0 {
				return errBadJSON
			}
			f.raw, f.kind = data[i:end], rawObject
			if c == '[' {
				f.kind = rawArray
			}
			i = end
		case 't', 'n', 'f':
			n, kind := 4, rawBool
			if c == 'f' {
				n = 5
			} else if c == 'n' {
				kind = rawNull
			}
			if i+n > len(data) {
				return errBadJSON
			}
			f.raw, f.kind = data[i:i+n], kind
			i += n
		default:
			end := i + 1
			for end < len(data) && !isNumberEnd(data[end]) {
				end++
			}
			f.raw, f.kind = data[i:end], rawNumber
			i = end
		}
		// A repeated key keeps its first place and takes the last value,
		// as encoding/json and Set do: Fields never holds a name twice.
		bit := nameBit(name)
		if seen&bit != 0 {
			if j := fs.index(name); j >= 0 {
				fs.f[j] = f
				continue
			}
		}
		seen |= bit
		fs.f = append(fs.f, f)
	}
}

// validStringEnd returns the index of the quote that closes the string
// whose contents start at i, and whether it has escapes; -1 if none does.
// (A plain loop: log strings are short, too short for bytes.IndexByte to
// pay off.)
func validStringEnd(data []byte, i int) (end int, escaped bool) {
	for ; i < len(data); i++ {
		switch data[i] {
		case '"':
			return i, escaped
		case '\\':
			escaped = true
			i++ // the escaped byte (for \uXXXX, the hex digits are plain)
		}
	}
	return -1, escaped
}

// validCompositeEnd returns the index just past the object or array that
// opens at i; -1 if it does not close.
func validCompositeEnd(data []byte, i int) int {
	depth := 0
	for ; i < len(data); i++ {
		switch data[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		case '"':
			end, _ := validStringEnd(data, i+1)
			if end < 0 {
				return -1
			}
			i = end
		}
	}
	return -1
}

func isNumberEnd(c byte) bool {
	return c == ',' || c == '}' || c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// jsonSpace returns the index of the first byte at or after i that is not
// JSON white space.
func jsonSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
		i++
	}
	return i
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
