package pipeline

import (
	"errors"
	"strconv"
	"unsafe"

	"github.com/buger/jsonparser"
)

// rawKind says how a field's raw JSON bytes are to be decoded.
type rawKind uint8

const (
	noRaw rawKind = iota // set by Set: val is the value, there is no encoding
	rawString
	rawEscapedString
	rawNumber
	rawBool
	rawNull
	rawObject
	rawArray
)

type field struct {
	name    string
	val     any
	raw     []byte  // JSON encoding of the value as parsed (strings without quotes); nil once the field is set
	kind    rawKind // how raw is encoded; kept after decoding, for output
	decoded bool    // val holds raw decoded
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
	if f.raw == nil || f.decoded {
		return f.val
	}
	f.val = decodeRaw(f.raw, f.kind)
	f.decoded = true
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

// Rename gives the field old the name new, in its place and with its
// value (and original encoding) unchanged; a field already named new is
// replaced. It reports whether old existed.
func (fs *Fields) Rename(old, new string) bool {
	i := fs.index(old)
	if i < 0 {
		return false
	}
	if old == new {
		return true
	}
	if j := fs.index(new); j >= 0 {
		fs.f = append(fs.f[:j], fs.f[j+1:]...)
		if j < i {
			i--
		}
	}
	fs.f[i].name = new
	return true
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
// lazy decoding. data must be exactly one valid JSON document (RFC 8259;
// white space around it allowed) whose value is an object; otherwise fs is
// left empty and an error is returned, so a malformed value can never
// decode to nil later. A key that appears twice is one field: it keeps its
// first position and takes its last value (encoding/json's rule). data must
// stay unchanged for as long as fs is used (it is normally the record's
// Value).
//
// One pass (jsonScanner) validates the document and splits the top level
// into raw key and value slices; it allocates nothing but the field slice
// of a set that has none. Nothing is decoded here.
func (fs *Fields) ParseJSONObject(data []byte) error {
	fs.Reset()
	if cap(fs.f) == 0 {
		fs.f = make([]field, 0, 8)
	}
	if err := fs.scanObject(data); err != nil {
		clear(fs.f)
		fs.Reset()
		return err
	}
	return nil
}

// AppendEncoded appends a field given by its JSON encoding, for sources
// that write their records' JSON themselves and so need no parser (the
// nexmark generator): raw is a number's text when str is false, or a
// string's content without the quotes when str is true. Nothing is checked:
// the caller guarantees that raw is a valid JSON number or string content
// with no character that needs escaping, and that name is not in fs yet.
// raw must stay unchanged for as long as fs is used (it is normally part of
// the record's Value). The value is decoded on first read, as a parsed
// field's is.
func (fs *Fields) AppendEncoded(name string, raw []byte, str bool) {
	k := rawNumber
	if str {
		k = rawString
		if raw == nil {
			raw = emptyRaw // an empty string, not "no encoding"
		}
	}
	fs.f = append(fs.f, field{name: name, raw: raw, kind: k})
}

// emptyRaw is the encoding of an empty string: empty, but not nil (a nil
// raw means the field has no encoding).
var emptyRaw = []byte{}

// nameBit hashes a field name to one of 64 bits.
func nameBit(name string) uint64 {
	h := uint(len(name))
	if len(name) > 0 {
		h = h*31 + uint(name[0])
		h = h*31 + uint(name[len(name)-1])
	}
	return 1 << (h & 63)
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
		i++
	}
	return i
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
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil
	}
	return f // out of range: ±Inf (or 0 for an underflow), which expressions refuse
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

// errNotObject is returned by ParseJSONObject for valid JSON that is not an
// object; callers describe the error themselves.
var errNotObject = errors.New("JSON value is not an object")

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
