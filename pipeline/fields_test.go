package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

const logLine = `{"ts":"2026-01-01T00:00:00.007Z","level":"error","service":"api","msg":"say \"hi\"\n","latency_ms":12.5,"status":500,"ok":false,"tags":["a",1],"user":{"id":7,"name":"x"},"none":null,"k\u00e9y":1}`

func TestParseJSONObjectKeepsOrderAndTypes(t *testing.T) {
	var r Record
	r.Value = []byte(logLine)
	if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
		t.Fatal(err)
	}
	fs := r.Fields()
	var names []string
	for i := range fs.Len() {
		names = append(names, fs.Name(i))
	}
	if got, want := strings.Join(names, ","), "ts,level,service,msg,latency_ms,status,ok,tags,user,none,kéy"; got != want {
		t.Fatalf("names = %s, want %s", got, want)
	}
	want := map[string]any{
		"ts": "2026-01-01T00:00:00.007Z", "level": "error", "service": "api", "msg": "say \"hi\"\n",
		"latency_ms": 12.5, "status": int64(500), "ok": false, "tags": []any{"a", int64(1)},
		"user": map[string]any{"id": int64(7), "name": "x"}, "none": nil, "kéy": int64(1),
	}
	if got := fs.Map(); !reflect.DeepEqual(got, want) {
		t.Fatalf("fields = %#v\nwant %#v", got, want)
	}
}

func TestParseJSONObjectRejectsNonObjects(t *testing.T) {
	for _, in := range []string{``, `[]`, `"x"`, `12`, `{"a":1} junk`, `{"a":1} {"b":2}`, `{} x`, ` { } }`, `{"a":}`, `{"a":1`, `{a:1}`, `nul`} {
		var fs Fields
		if err := fs.ParseJSONObject([]byte(in)); err == nil {
			t.Errorf("ParseJSONObject(%q) accepted it: %v", in, fs.Map())
		}
		if fs.Len() != 0 {
			t.Errorf("ParseJSONObject(%q) left %d fields after an error", in, fs.Len())
		}
	}
}

// Unchanged fields are written back as their original bytes; changed ones
// are encoded; the whole stays valid JSON with the same content.
func TestAppendJSONCopiesUnchangedFields(t *testing.T) {
	var r Record
	r.Value = []byte(`{"a":1.50,"s":"x\u00e9","n":{"z":1,"a":2}}`)
	if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
		t.Fatal(err)
	}
	_ = r.Get("a") // reading does not change the encoding
	_ = r.Get("s")
	_ = r.Get("n")
	r.Set("added", "q\"\t<")
	r.Set("t", time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC))
	r.Set("inf", math.Inf(1))
	got := string(r.AppendJSON(nil))
	want := `{"a":1.50,"s":"x\u00e9","n":{"z":1,"a":2},"added":"q\"\t<","t":"2026-01-02T03:04:05.006Z","inf":null}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	r.Fields().Delete("s")
	r.Set("a", int64(2))
	if got := string(r.AppendJSON(nil)); got != `{"a":2,"n":{"z":1,"a":2},"added":"q\"\t<","t":"2026-01-02T03:04:05.006Z","inf":null}` {
		t.Fatalf("after set/delete: %s", got)
	}
}

func TestAppendJSONValueMatchesEncodingJSON(t *testing.T) {
	vals := []any{nil, true, "plain", "esc\"\\\n\r\t\x01<>&\u2028", "bad\xffutf8", int64(-3), 1.0, 0.1, 1e21, 1e-7, -0.0, 123456789.125,
		[]any{int64(1), "a", nil}, map[string]any{"b": int64(1), "a": []any{}}}
	for _, v := range vals {
		got := AppendJSONValue(nil, v)
		var back, ref any
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%#v encoded as invalid JSON %s: %v", v, got, err)
		}
		refBytes, _ := json.Marshal(v)
		_ = json.Unmarshal(refBytes, &ref)
		if !reflect.DeepEqual(back, ref) {
			t.Errorf("%#v: got %s, encoding/json says %s", v, got, refBytes)
		}
	}
}

func TestUnparsedRecordExposesMessage(t *testing.T) {
	r := Record{Value: []byte("GET / 200")}
	if r.Parsed() {
		t.Fatal("new record claims to be parsed")
	}
	if got := string(r.AppendJSON(nil)); got != "GET / 200" {
		t.Fatalf("unparsed record written as %q, want its raw bytes", got)
	}
	e := MustCompileExpr(`message contains "200"`)
	if ok, err := e.EvalBool(&r); err != nil || !ok {
		t.Fatalf("message expression = %v, %v", ok, err)
	}
	r.Fields().DecodeAll() // as the runtime does before fanning out
	if got := string(r.AppendJSON(nil)); got != "GET / 200" {
		t.Fatalf("a line that was only read is written as %q, want the line itself", got)
	}
	r.Set("status", int64(200))
	if got := string(r.AppendJSON(nil)); got != `{"message":"GET / 200","status":200}` {
		t.Fatalf("a changed line is written as %q, want its fields", got)
	}
	r2 := Record{Value: []byte("x")}
	r2.Set("message", "y")
	if got := string(r2.AppendJSON(nil)); got != `{"message":"y"}` {
		t.Fatalf("a replaced message is written as %q", got)
	}
}

func TestExprMissingFieldsAreNull(t *testing.T) {
	var r Record
	r.Value = []byte(`{"level":"error","status":503}`)
	_ = r.SetFields().ParseJSONObject(r.Value)
	cases := []struct {
		src  string
		want any
	}{
		{`level == "error"`, true},
		{`nope == nil`, true},
		{`status >= 500 && level != "info"`, true},
		{`nope ?? "dflt"`, "dflt"},
		{`upper(level)`, "ERROR"},
		{`date("2026-03-04T05:06:07Z")`, "2026-03-04"},
		{`hour(1767236400000)`, 3},
		{`unix_ms(to_time("1970-01-01T00:00:01Z"))`, int64(1000)},
	}
	for _, c := range cases {
		got, err := MustCompileExpr(c.src).Eval(&r)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s = %#v, %v; want %#v", c.src, got, err, c.want)
		}
	}
	if ok, err := MustCompileExpr(`nope`).EvalBool(&r); ok || err != nil {
		t.Errorf("a missing field as a condition = %v, %v; want false, nil", ok, err)
	}
	if _, err := MustCompileExpr(`status`).EvalBool(&r); err == nil {
		t.Error("a number as a condition should be an error")
	}
	if _, err := MustCompileExpr(`level > 3`).Eval(&r); err == nil {
		t.Error("comparing a string with a number should be an error, not a panic")
	}
}

func TestTemplate(t *testing.T) {
	var r Record
	r.Value = []byte(`{"service":"api","ts":"2026-01-01T10:00:00Z","n":3}`)
	_ = r.SetFields().ParseJSONObject(r.Value)
	tp, err := CompileTemplate("out/{{ service }}/{{ date(ts) }}-{{n + 1}}.jsonl", Pos{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := tp.String(&r); got != "out/api/2026-01-01-4.jsonl" {
		t.Fatalf("rendered %q", got)
	}
	if tp.IsConstant() {
		t.Fatal("template with expressions reported constant")
	}
	if c, _ := CompileTemplate("plain.txt", Pos{}); !c.IsConstant() {
		t.Fatal("plain template not constant")
	}
}

func TestToTime(t *testing.T) {
	want := time.Date(2026, 1, 1, 0, 0, 1, 500e6, time.UTC)
	for _, v := range []any{"2026-01-01T00:00:01.5Z", "2026-01-01T01:00:01.5+01:00", int64(1767225601500), 1767225601.5, want} {
		got, err := ToTime(v)
		if err != nil || !got.Equal(want) {
			t.Errorf("ToTime(%#v) = %v, %v", v, got, err)
		}
	}
	for _, v := range []any{"yesterday", nil, true, math.NaN()} {
		if _, err := ToTime(v); err == nil {
			t.Errorf("ToTime(%#v) accepted", v)
		}
	}
}

func BenchmarkParseFilterEncode(b *testing.B) {
	line := []byte(`{"ts":"2026-01-01T00:00:00.000Z","level":"error","service":"api-gateway","msg":"payment authorization declined by provider","latency_ms":12.64,"status":500}`)
	filter := MustCompileExpr(`level == "error"`)
	alert := MustCompileExpr(`status >= 500`)
	var r Record
	var out []byte
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		r = Record{Value: line}
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			b.Fatal(err)
		}
		if ok, _ := filter.EvalBool(&r); ok {
			v, _ := alert.Eval(&r)
			r.Set("alert", v)
			out = r.AppendJSON(out[:0])
		}
	}
}

// Records sharing one ReserveFields slab never see each other's fields,
// even when one grows past its reserved room.
func TestReserveFieldsKeepsRecordsApart(t *testing.T) {
	recs := NewRecords(3)
	ReserveFields(recs, 2)
	for i, r := range recs {
		if err := r.SetFields().ParseJSONObject(fmt.Appendf(nil, `{"a":%d,"b":%d}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	// Record 1 grows past 2 fields: it must not write into record 2's room.
	recs[1].Set("c", int64(99))
	recs[1].Set("d", int64(98))
	for i, r := range recs {
		if got := r.Get("a"); got != int64(i) {
			t.Fatalf("record %d: a = %v, want %d", i, got, i)
		}
		if got := r.Get("b"); got != int64(i) {
			t.Fatalf("record %d: b = %v, want %d", i, got, i)
		}
		want := 2
		if i == 1 {
			want = 4 // a, b, c, d
		}
		if r.Fields().Len() != want {
			t.Fatalf("record %d has %d fields, want %d", i, r.Fields().Len(), want)
		}
	}
	// Records that already have room keep it.
	before := &recs[0].Fields().f[0]
	ReserveFields(recs, 4)
	if &recs[0].Fields().f[0] != before {
		t.Fatal("ReserveFields replaced a record's existing fields")
	}
}

// A dead letter rendered as JSON reads back as the same dead letter: a
// raw line, bytes that are not UTF-8, and a record an operator made.
func TestDeadLetterRoundTrip(t *testing.T) {
	made := &Record{}
	made.SetFields().Set("window_start", "2026-12-03T10:00:00Z")
	made.Fields().Set("n", int64(3))
	for _, d := range []DeadLetter{
		{Record: &Record{Value: []byte(`{"ts": broken`), Origin: Origin{Name: "logs/2", Offset: 17}}, Reason: "parse", Error: "bad json", Component: "p/operators[0]/parse"},
		{Record: &Record{Value: []byte{0xff, 0xfe, 'x'}, Origin: Origin{Name: "a.log", Offset: 9, Line: 3, ID: "m-1"}}, Reason: "too_long", Component: "p/sources[0]/file"},
		{Record: made, Reason: "schema", Error: "no column n", Component: "p/sinks[0]/postgres"},
	} {
		rendered := d.DeadLetterRecord(time.Unix(0, 0)).AppendJSON(nil)
		back, err := DeadLetterFromRecord(rendered)
		if err != nil {
			t.Fatalf("%s: %v", rendered, err)
		}
		if again := back.DeadLetterRecord(time.Unix(0, 0)).AppendJSON(nil); string(again) != string(rendered) {
			t.Errorf("round trip changed the dead letter:\n%s\n%s", rendered, again)
		}
	}
	if _, err := DeadLetterFromRecord([]byte(`{"value":"x"}`)); err == nil {
		t.Error("a record without a reason read as a dead letter")
	}
}
