package pipeline

import (
	"strconv"
	"unsafe"

	"github.com/buger/jsonparser"
)

// rawKind says how a field's raw JSON bytes are to be decoded.
type rawKind uint8

const (
	decoded rawKind = iota // val holds the value; raw, if set, is its unchanged encoding
	rawString
	rawEscapedString
	rawNumber
	rawBool
	rawNull
	rawObject
	rawArray
)

type field struct {
	name string
	val  any
	raw  []byte // JSON encoding of the value as parsed; nil once the field is set
	kind rawKind
}

// Fields is the ordered structured view of a record: top-level names in
// first-seen order, values decoded lazily.
//
// Values are Go values of these types: nil, bool, int64, float64, string,
// time.Time, []any and map[string]any (nested objects). Values parsed from
// JSON are decoded only when read, and a field that is never changed is
// written back out as its original bytes, so an operator chain that reads
// two fields of a 20-field record pays for two.
//
// Strings decoded from a record's Value alias its bytes (no copy); that is
// safe because Value is immutable by contract.
type Fields struct {
	f []field
}

// Reset empties the set, keeping its capacity.
func (fs *Fields) Reset() { fs.f = fs.f[:0] }

// Len returns the number of fields.
func (fs *Fields) Len() int { return len(fs.f) }

func (fs *Fields) index(name string) int {
	for i := range fs.f {
		if fs.f[i].name == name {
			return i
		}
	}
	return -1
}

// Has reports whether the named field exists (it may hold nil).
func (fs *Fields) Has(name string) bool { return fs.index(name) >= 0 }

// Get returns the named field's value, or nil when absent.
func (fs *Fields) Get(name string) any {
	i := fs.index(name)
	if i < 0 {
		return nil
	}
	return fs.value(i)
}

// Name returns the name of the i-th field.
func (fs *Fields) Name(i int) string { return fs.f[i].name }

// Value returns the value of the i-th field, decoding it on first use.
func (fs *Fields) Value(i int) any { return fs.value(i) }

func (fs *Fields) value(i int) any {
	f := &fs.f[i]
	if f.kind == decoded {
		return f.val
	}
	f.val = decodeRaw(f.raw, f.kind)
	f.kind = decoded
	return f.val
}

// Set sets the named field to v, appending it when new. Setting a field
// drops its original encoding; it is re-encoded from v on output.
func (fs *Fields) Set(name string, v any) {
	if i := fs.index(name); i >= 0 {
		fs.f[i] = field{name: name, val: v}
		return
	}
	fs.f = append(fs.f, field{name: name, val: v})
}

// Delete removes the named field, keeping the order of the rest.
func (fs *Fields) Delete(name string) {
	if i := fs.index(name); i >= 0 {
		fs.f = append(fs.f[:i], fs.f[i+1:]...)
	}
}

// Keep removes every field whose name is not in names.
func (fs *Fields) Keep(names map[string]struct{}) {
	out := fs.f[:0]
	for _, f := range fs.f {
		if _, ok := names[f.name]; ok {
			out = append(out, f)
		}
	}
	clear(fs.f[len(out):])
	fs.f = out
}

// Clone returns an independent copy of the set (values are shared; they are
// treated as immutable).
func (fs *Fields) Clone() Fields {
	return Fields{f: append([]field(nil), fs.f...)}
}

// Map returns the fields as a new map (decoding every value). It is meant for
// tests and slow paths.
func (fs *Fields) Map() map[string]any {
	m := make(map[string]any, len(fs.f))
	for i := range fs.f {
		m[fs.f[i].name] = fs.value(i)
	}
	return m
}

// ParseJSONObject fills fs from one JSON object, keeping raw value bytes for
// lazy decoding. data must stay unchanged for as long as fs is used (it is
// normally the record's Value).
func (fs *Fields) ParseJSONObject(data []byte) error {
	fs.Reset()
	// jsonparser reports strings without their quotes; kindOf notes whether
	// one has escapes, to decode it later.
	err := jsonparser.ObjectEach(data, func(key, value []byte, t jsonparser.ValueType, _ int) error {
		if t == jsonparser.NotExist || t == jsonparser.Unknown {
			return errBadJSON
		}
		k := kindOf(t, value)
		name := bytesToString(key)
		for _, c := range key {
			if c == '\\' {
				s, err := jsonparser.ParseString(key)
				if err != nil {
					return err
				}
				name = s
				break
			}
		}
		fs.f = append(fs.f, field{name: name, raw: value, kind: k})
		return nil
	})
	if err != nil {
		fs.Reset()
		return err
	}
	if !trailingSpaceOnly(data) {
		fs.Reset()
		return errBadJSON
	}
	return nil
}

// trailingSpaceOnly checks that nothing but white space follows the object.
// jsonparser stops at the closing brace and would accept `{} junk`.
func trailingSpaceOnly(data []byte) bool {
	depth, inStr, esc := 0, false, false
	for i, c := range data {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				for _, t := range data[i+1:] {
					if t != ' ' && t != '\t' && t != '\r' && t != '\n' {
						return false
					}
				}
				return true
			}
		}
	}
	return false
}

func decodeRaw(raw []byte, k rawKind) any {
	switch k {
	case rawString:
		return bytesToString(raw)
	case rawEscapedString:
		s, err := jsonparser.ParseString(raw)
		if err != nil {
			return bytesToString(raw)
		}
		return s
	case rawNumber:
		return parseNumber(raw)
	case rawBool:
		return len(raw) == 4 // "true"
	case rawNull:
		return nil
	case rawObject:
		return decodeObject(raw)
	case rawArray:
		return decodeArray(raw)
	}
	return nil
}

func parseNumber(raw []byte) any {
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
			return n
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil
	}
	return f
}

func kindOf(t jsonparser.ValueType, value []byte) rawKind {
	switch t {
	case jsonparser.String:
		for _, c := range value {
			if c == '\\' {
				return rawEscapedString
			}
		}
		return rawString
	case jsonparser.Number:
		return rawNumber
	case jsonparser.Boolean:
		return rawBool
	case jsonparser.Object:
		return rawObject
	case jsonparser.Array:
		return rawArray
	}
	return rawNull
}

func decodeObject(raw []byte) any {
	m := map[string]any{}
	_ = jsonparser.ObjectEach(raw, func(key, value []byte, t jsonparser.ValueType, _ int) error {
		name, err := jsonparser.ParseString(key)
		if err != nil {
			name = string(key)
		}
		m[name] = decodeRaw(value, kindOf(t, value))
		return nil
	})
	return m
}

func decodeArray(raw []byte) any {
	out := []any{}
	_, _ = jsonparser.ArrayEach(raw, func(value []byte, t jsonparser.ValueType, _ int, _ error) {
		out = append(out, decodeRaw(value, kindOf(t, value)))
	})
	return out
}

// bytesToString returns a string that shares b's memory. b must not change
// afterwards.
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// DecodeAll decodes every lazily held value now. Afterwards reads do not
// write, so several goroutines may read the fields at once (the runtime does
// this before fanning a record out to more than one sink).
func (fs *Fields) DecodeAll() {
	for i := range fs.f {
		fs.value(i)
	}
}
