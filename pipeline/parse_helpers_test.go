package pipeline

import (
	"reflect"
	"testing"
)

func TestParseJSONObjectStrict(t *testing.T) {
	for _, tc := range []struct {
		in    string
		names []string
		vals  []any
		ok    bool
	}{
		{`{"a":1,"b":"x","c":[true,null],"d":{"e":1.5}}`, []string{"a", "b", "c", "d"},
			[]any{int64(1), "x", []any{true, nil}, map[string]any{"e": 1.5}}, true},
		{" {\"a\\u0062\" : \"\\u00e9\" }\n", []string{"ab"}, []any{"é"}, true},
		{`{"a":1,"b":2,"a":3}`, []string{"a", "b"}, []any{int64(3), int64(2)}, true},
		{`{}`, []string{}, []any{}, true},
		// Input ParseJSONObject lets through.
		{`{"a":1,}`, nil, nil, false},
		{`{"a":01}`, nil, nil, false},
		{`{"a":-}`, nil, nil, false},
		{`{"a":"\x"}`, nil, nil, false},
		{"{\"a\":\"\x01\"}", nil, nil, false},
		{`{"a":{"b"}}`, nil, nil, false},
		{`{"a":[1 2]}`, nil, nil, false},
		{`{"a":1e}`, nil, nil, false},
		// And input it refuses.
		{`{"a":1} x`, nil, nil, false},
		{`[1]`, nil, nil, false},
		{`"x"`, nil, nil, false},
		{``, nil, nil, false},
	} {
		var fs Fields
		fs.Set("stale", 1)
		err := fs.ParseJSONObjectStrict([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if !tc.ok {
			if fs.Len() != 0 {
				t.Errorf("%q: %d fields left after an error", tc.in, fs.Len())
			}
			continue
		}
		names, vals := []string{}, []any{}
		for i := 0; i < fs.Len(); i++ {
			names = append(names, fs.Name(i))
			vals = append(vals, fs.Value(i))
		}
		if !reflect.DeepEqual(names, tc.names) || !reflect.DeepEqual(vals, tc.vals) {
			t.Errorf("%q: got %v %#v, want %v %#v", tc.in, names, vals, tc.names, tc.vals)
		}
	}
}

func TestFieldsMerge(t *testing.T) {
	var dst, src Fields
	dst.Set("a", "old")
	dst.Set("keep", true)
	if err := src.ParseJSONObjectStrict([]byte(`{"b":1.50,"a":"new"}`)); err != nil {
		t.Fatal(err)
	}
	dst.Merge(&src)
	src.Reset() // dst must not depend on src's slice
	if got, want := string(dst.AppendJSON(nil)), `{"a":"new","keep":true,"b":1.50}`; got != want {
		t.Errorf("merged %s, want %s (raw bytes kept)", got, want)
	}
}

var parseHelpersLine = []byte(`{"ts":"2026-11-24T22:33:58.123Z","level":"error","service":"checkout","msg":"payment declined","status":502,"latency_ms":123.4,"user":{"id":42}}`)

// BenchmarkParseJSONObject compares the lazy parsers on a 147-byte line.
func BenchmarkParseJSONObject(b *testing.B) {
	b.Run("lenient", func(b *testing.B) {
		var fs Fields
		b.SetBytes(int64(len(parseHelpersLine)))
		b.ReportAllocs()
		for b.Loop() {
			if err := fs.ParseJSONObject(parseHelpersLine); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("strict", func(b *testing.B) {
		var fs Fields
		b.SetBytes(int64(len(parseHelpersLine)))
		b.ReportAllocs()
		for b.Loop() {
			if err := fs.ParseJSONObjectStrict(parseHelpersLine); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestParseJSONObjectStrictKeys: escaped keys are unescaped once, and each
// keeps its own name (jsonparser unescapes keys into a buffer of its own).
func TestParseJSONObjectStrictKeys(t *testing.T) {
	var fs Fields
	if err := fs.ParseJSONObjectStrict([]byte(`{"a\\nb":1,"c\"d":2,"\u00e9\u00e8":3,"plain":4}`)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 0; i < fs.Len(); i++ {
		names = append(names, fs.Name(i))
	}
	if want := []string{`a\nb`, `c"d`, "éè", "plain"}; !reflect.DeepEqual(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
}
