package pipeline

import (
	"encoding/json"
	"strings"
	"testing"
	"unsafe"

	"github.com/buger/jsonparser"
	"github.com/tidwall/gjson"
)

// parseJSONObjectLibraries is how ParseJSONObject worked before
// jsonScanner: gjson validated, then jsonparser split the top level. The
// fuzz targets hold the scanner to it.
func parseJSONObjectLibraries(fs *Fields, data []byte) error {
	fs.Reset()
	if !gjson.ValidBytes(data) {
		return errBadJSON
	}
	if i := skipSpace(data, 0); i >= len(data) || data[i] != '{' {
		return errNotObject
	}
	err := jsonparser.ObjectEach(data, func(key, value []byte, t jsonparser.ValueType, _ int) error {
		if t == jsonparser.NotExist || t == jsonparser.Unknown {
			return errBadJSON
		}
		var name string
		if subslice(data, key) {
			name = bytesToString(key)
		} else {
			name = string(key)
		}
		f := field{name: name, raw: value, kind: libraryKind(t, value)}
		if j := fs.index(name); j >= 0 {
			fs.f[j] = f
			return nil
		}
		fs.f = append(fs.f, f)
		return nil
	})
	if err != nil {
		fs.Reset()
	}
	return err
}

func libraryKind(t jsonparser.ValueType, value []byte) rawKind {
	switch t {
	case jsonparser.String:
		if strings.IndexByte(bytesToString(value), '\\') >= 0 {
			return rawEscapedString
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

func subslice(data, b []byte) bool {
	if len(b) == 0 || len(data) == 0 {
		return len(b) == 0
	}
	start, p := uintptr(unsafe.Pointer(&data[0])), uintptr(unsafe.Pointer(&b[0]))
	return p >= start && p+uintptr(len(b)) <= start+uintptr(len(data))
}

// TestJSONScannerGrammar: the scanner accepts exactly what encoding/json
// accepts, on the corners of the grammar, at every split of the eight-byte
// string search.
func TestJSONScannerGrammar(t *testing.T) {
	cases := []string{
		`{}`, ` {} `, "\t{\r\n}\n", `{"a":""}`, `{"":1}`, `{"a":-0}`, `{"a":-0.0e+0}`, `{"a":1E-5}`, `{"a":0.5}`,
		`{"a":true,"b":false,"c":null}`, `{"a":[],"b":{},"c":[[]],"d":[{}]}`, `{"a":"\u00e9\uD83D\uDE00\/\b\f\n\r\t\"\\"}`,
		`{"a":"\ud800"}`, "{\"a\":\"\xff\xfe\"}", "{\"\xff\":1}", `{"a":1}x`, `{"a":1}}`, `{"a":1,}`, `{,}`, `{"a"}`,
		`{"a":}`, `{"a" 1}`, `{"a":1 "b":2}`, `{a:1}`, `{'a':1}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":+1}`,
		`{"a":-}`, `{"a":1e}`, `{"a":1e+}`, `{"a":0x1}`, `{"a":NaN}`, `{"a":Infinity}`, `{"a":tru}`, `{"a":nul}`,
		`{"a":True}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, "{\"a\":\"\x1f\"}", "{\"a\":\"\x7f\"}",
		`{"a":[1,]}`, `{"a":[1 2]}`, `{"a":[,1]}`, `{"a":{"b"}}`, `{"a":{"b":1,}}`, `{"a":{1:2}}`, `{"a":"}`, `{"a`,
		`{`, `[`, `"`, ``, ` `, `1`, `"x"`, `[1]`, `null`, `true`, `{"a":1}` + "\x00", "\v{}", `{"a":"b"}{}`,
		`{"a":"0123456","b":"01234567","c":"012345678","d":"0123456\"","e":"01234567\\"}`,
	}
	for n := 0; n < 20; n++ {
		pad := strings.Repeat("x", n)
		cases = append(cases, `{"`+pad+`":"`+pad+`"}`, `{"`+pad+`\n":1}`, `{"a":"`+pad+"\x01"+`"}`, `{"a":"`+pad+`\`, `{"a":"`+pad)
	}
	for _, in := range cases {
		var fs Fields
		err := fs.ParseJSONObject([]byte(in))
		var m map[string]json.RawMessage
		stdErr := json.Unmarshal([]byte(in), &m)
		if want := stdErr == nil && m != nil; (err == nil) != want {
			t.Errorf("%q: err %v, encoding/json err %v", in, err, stdErr)
		}
		var lib Fields
		libErr := parseJSONObjectLibraries(&lib, []byte(in))
		if err == nil && libErr == nil && string(fs.AppendJSON(nil)) != string(lib.AppendJSON(nil)) {
			t.Errorf("%q: %s, the libraries gave %s", in, fs.AppendJSON(nil), lib.AppendJSON(nil))
		}
		if err != nil && fs.Len() != 0 {
			t.Errorf("%q: %d fields after an error", in, fs.Len())
		}
	}
}

// TestJSONScannerDepth: nesting is limited as encoding/json limits it.
func TestJSONScannerDepth(t *testing.T) {
	for _, depth := range []int{2, 100, jsonMaxDepth - 1, jsonMaxDepth, jsonMaxDepth + 1} {
		in := `{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
		var fs Fields
		err := fs.ParseJSONObject([]byte(in))
		stdErr := json.Unmarshal([]byte(in), new(map[string]json.RawMessage))
		if (err == nil) != (stdErr == nil) {
			t.Errorf("depth %d: err %v, encoding/json err %v", depth, err, stdErr)
		}
	}
}

// TestJSONScannerNotObject: a valid document that is not an object is
// told apart from invalid input.
func TestJSONScannerNotObject(t *testing.T) {
	for in, want := range map[string]error{`[1]`: errNotObject, ` "x" `: errNotObject, `1`: errNotObject, `null`: errNotObject,
		`[1,]`: errBadJSON, `1 2`: errBadJSON, `{"a":1`: errBadJSON, ``: errBadJSON} {
		var fs Fields
		if err := fs.ParseJSONObject([]byte(in)); err != want {
			t.Errorf("%q: err %v, want %v", in, err, want)
		}
	}
}
