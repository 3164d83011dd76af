package operators

import (
	"context"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

func TestParseJSON(t *testing.T) {
	parseTestTable(t, `- parse: {format: json}`, []parseTestCase{
		{name: "scalars", line: `{"ts":"2026-11-24T22:33:58Z","level":"error","status":502,"latency":12.5,"ok":false,"trace":null}`,
			want: []parseTestKV{{"ts", "2026-11-24T22:33:58Z"}, {"level", "error"}, {"status", int64(502)}, {"latency", 12.5}, {"ok", false}, {"trace", nil}}},
		{name: "escapes", line: `{"msg":"line\nbreak \"q\" back\\slash tab\t \u00e9 \ud83d\ude00 \/"}`,
			want: []parseTestKV{{"msg", "line\nbreak \"q\" back\\slash tab\t é 😀 /"}}},
		{name: "escaped key", line: `{"a\"b":1,"c\u0064":2}`,
			want: []parseTestKV{{`a"b`, int64(1)}, {"cd", int64(2)}}},
		{name: "nested", line: `{"user":{"id":42,"tags":["a","b"],"geo":{"lat":1.5}},"list":[1,"x",null,true,{"k":[]}]}`,
			want: []parseTestKV{
				{"user", map[string]any{"id": int64(42), "tags": []any{"a", "b"}, "geo": map[string]any{"lat": 1.5}}},
				{"list", []any{int64(1), "x", nil, true, map[string]any{"k": []any{}}}},
			}},
		{name: "unicode", line: `{"city":"Zürich","名前":"太郎","emoji":"🎉"}`,
			want: []parseTestKV{{"city", "Zürich"}, {"名前", "太郎"}, {"emoji", "🎉"}}},
		{name: "white space and line break", line: " \t{ \"a\" : 1 , \"b\" : [ ] }\r\n",
			want: []parseTestKV{{"a", int64(1)}, {"b", []any{}}}},
		{name: "empty object", line: `{}`, want: []parseTestKV{}},
		{name: "repeated key: first place, last value", line: `{"a":1,"b":2,"a":3}`,
			want: []parseTestKV{{"a", int64(3)}, {"b", int64(2)}}},
		{name: "big numbers", line: `{"i":9223372036854775807,"f":1e300,"neg":-0.5}`,
			want: []parseTestKV{{"i", int64(9223372036854775807)}, {"f", 1e300}, {"neg", -0.5}}},

		{name: "array", line: `[1,2]`, wantErr: "parse: json: value is an array, not an object"},
		{name: "string", line: `"x"`, wantErr: "parse: json: value is a string, not an object"},
		{name: "number", line: `42`, wantErr: "parse: json: value is a number, not an object"},
		{name: "null", line: `null`, wantErr: "parse: json: value is null, not an object"},
		{name: "garbage", line: `hello`, wantErr: "parse: json: invalid character 'h' looking for beginning of value at offset 0"},
		{name: "bad value", line: `{"level":"info","n":x}`, wantErr: "parse: json: invalid character 'x' looking for beginning of value at offset 20"},
		{name: "trailing junk", line: `{"a":1} junk`, wantErr: "parse: json: invalid character 'j' after top-level value at offset 8"},
		{name: "two objects", line: `{"a":1}{"b":2}`, wantErr: "parse: json: invalid character '{' after top-level value at offset 7"},
		{name: "trailing comma", line: `{"a":1,}`, wantErr: "parse: json: invalid character '}' looking for beginning of object key string at offset 7"},
		{name: "leading zero", line: `{"a":01}`, wantErr: "parse: json: invalid character '1' after object key:value pair at offset 6"},
		{name: "bad escape", line: `{"a":"\x"}`, wantErr: "parse: json: invalid character 'x' in string escape code at offset 7"},
		{name: "control character", line: "{\"a\":\"\x01\"}", wantErr: `parse: json: invalid character '\x01' in string literal at offset 6`},
		{name: "unclosed", line: `{"a":[1,2}`, wantErr: "parse: json: invalid character '}' after array element at offset 9"},
		{name: "truncated", line: `{"a":1`, wantErr: "parse: json: unexpected end of JSON input at offset 6"},
		{name: "empty", line: ``, wantErr: "parse: json: empty line"},
		{name: "blank", line: "  \n", wantErr: "parse: json: empty line"},
	})
}

// TestParseJSONLazy checks that the JSON path keeps raw bytes: a record
// whose fields are not changed is written back byte for byte.
func TestParseJSONLazy(t *testing.T) {
	o := parseTestOp(t, `- parse: {format: json}`)
	line := `{"a": 1.50, "b" :"\u00e9", "c":[1, 2]}`
	r, d := parseTestRun(t, o, parseTestRecord(line))
	if d != nil {
		t.Fatal(d.Error)
	}
	if got, want := string(r.AppendJSON(nil)), `{"a":1.50,"b":"\u00e9","c":[1, 2]}`; got != want {
		t.Errorf("re-encoded %s, want %s", got, want)
	}
}

// TestParseJSONField parses a field's string and merges the result into
// the record: an existing field of the same name is replaced where it is.
func TestParseJSONField(t *testing.T) {
	o := parseTestOp(t, `- parse: {format: json, field: msg}`)
	r := &pipeline.Record{}
	fs := r.SetFields()
	fs.Set("host", "h1")
	fs.Set("msg", `{"level":"warn","host":"h2","n":3}`)
	got, d := parseTestRun(t, o, r)
	if d != nil {
		t.Fatal(d.Error)
	}
	parseTestCheck(t, got, []parseTestKV{{"host", "h2"}, {"msg", `{"level":"warn","host":"h2","n":3}`}, {"level", "warn"}, {"n", int64(3)}})

	// A raw record has one field, message, holding its line.
	got, d = parseTestRun(t, parseTestOp(t, `- parse: {format: json, field: message}`), parseTestRecord(`{"x":true}`))
	if d != nil {
		t.Fatal(d.Error)
	}
	parseTestCheck(t, got, []parseTestKV{{"message", `{"x":true}`}, {"x", true}})
}

func TestParseJSONFieldErrors(t *testing.T) {
	o := parseTestOp(t, `- parse: {format: json, field: msg}`)
	for _, tc := range []struct {
		name    string
		val     any
		set     bool
		wantErr string
	}{
		{"missing", nil, false, `parse: field "msg" is missing`},
		{"null", nil, true, `parse: field "msg" holds null, not a string`},
		{"number", int64(3), true, `parse: field "msg" holds a number, not a string`},
		{"object", map[string]any{}, true, `parse: field "msg" holds an object, not a string`},
		{"bad json", `{"a":}`, true, `parse: json: field "msg": invalid character '}' looking for beginning of value at offset 5`},
		{"array", `[]`, true, `parse: json: field "msg": value is an array, not an object`},
		{"empty", ``, true, `parse: json: field "msg": empty line`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &pipeline.Record{}
			fs := r.SetFields()
			fs.Set("keep", "me")
			if tc.set {
				fs.Set("msg", tc.val)
			}
			_, d := parseTestRun(t, o, r)
			if d == nil {
				t.Fatal("parsed, want a dead letter")
			}
			parseTestDead(t, d, tc.wantErr)
			// The record reaches the dead-letter output as it was.
			if got := r.Fields().Get("keep"); got != "me" {
				t.Errorf("record changed: keep = %v", got)
			}
			if n := r.Fields().Len(); n != 1+parseTestBtoi(tc.set) {
				t.Errorf("record has %d fields after a failed parse: %v", n, parseTestFormat(parseTestFields(r)))
			}
		})
	}
}

func parseTestBtoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestParseJSONTypes converts JSON fields with `types:`.
func TestParseJSONTypes(t *testing.T) {
	parseTestTable(t, `- parse: {format: json, types: {status: int, ts: time, code: string, ratio: float}}`, []parseTestCase{
		{name: "converted", line: `{"status":"404","ts":"2026-01-02T03:04:05.5Z","code":404,"ratio":1,"other":"7"}`,
			want: []parseTestKV{{"status", int64(404)}, {"ts", parseTestTime("2026-01-02T03:04:05.5Z")}, {"code", "404"}, {"ratio", 1.0}, {"other", "7"}}},
		{name: "absent and null left alone", line: `{"status":null}`, want: []parseTestKV{{"status", nil}}},
		{name: "unix ms", line: `{"ts":1767323045000}`, want: []parseTestKV{{"ts", parseTestTime("2026-01-02T03:04:05Z")}}},
		{name: "not an int", line: `{"status":"OK"}`, wantErr: `parse: types: field "status": "OK" is not a valid int`},
		{name: "fraction", line: `{"status":1.5}`, wantErr: `parse: types: field "status": 1.5 is not a valid int`},
		{name: "not a time", line: `{"ts":"yesterday"}`, wantErr: `parse: types: field "ts": "yesterday" is not a valid time`},
	})
}

// TestParseJSONAllocs: the JSON path allocates nothing per record (field
// values stay raw bytes until read).
func TestParseJSONAllocs(t *testing.T) {
	o := parseTestOp(t, `- parse: {format: json}`)
	r := parseTestRecord(`{"ts":"2026-11-24T22:33:58.123Z","level":"error","msg":"a \"quoted\" word","status":502,"user":{"id":42},"tags":["a"]}`)
	b := &pipeline.Batch{Records: make([]*pipeline.Record, 0, 1)}
	run := func() {
		b.Records = append(b.Records[:0], r)
		if err := o.Process(context.Background(), b); err != nil || len(b.Records) != 1 {
			t.Fatalf("Process: %v, %d records", err, len(b.Records))
		}
	}
	run() // the record's field slice reaches its size
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations per record, want 0", n)
	}
}
