package pipeline

// Helpers for the parse operator (operators/parse*.go). They live here
// because they need the unexported layout of Fields.

import "errors"

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
