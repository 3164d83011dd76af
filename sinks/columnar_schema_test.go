package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

func TestParseColumnarType(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" means the same as in
	}{
		{"string", ""}, {"int64!", ""}, {"float64", ""}, {"bool!", ""}, {"date", ""},
		{"timestamp(ms)", ""}, {"timestamp( us )!", "timestamp(us)!"},
		{"list<string>", ""}, {"list<string!>!", ""}, {"list< list<int64> >", "list<list<int64>>"},
		{"struct<a: int64, b: list<string>>", ""},
		{"struct<\"odd name\": string!, x.y: bool>!", ""},
		{"list<struct<k: string, v: float64>>", ""},
	} {
		ty, err := ParseColumnarType(tc.in)
		if err != nil {
			t.Errorf("ParseColumnarType(%q): %v", tc.in, err)
			continue
		}
		want := tc.want
		if want == "" {
			want = tc.in
		}
		if got := ty.String(); got != want {
			t.Errorf("ParseColumnarType(%q).String() = %q, want %q", tc.in, got, want)
		}
		again, err := ParseColumnarType(ty.String())
		if err != nil || !again.Equal(ty) {
			t.Errorf("%q does not round-trip: %v", ty, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "want a type"},
		{"int", `unknown type "int"`},
		{"timestamp", "timestamp(ms) or timestamp(us)"},
		{"timestamp(ns)", `unit "ns"`},
		{"list<string", "want > to close list<"},
		{"list<>", "want a type"},
		{"struct<>", "want a field name"},
		{"struct<a int64>", "want : after field name"},
		{"struct<a: int64, a: string>", `duplicate field "a"`},
		{"string!!", "unexpected"},
		{"string junk", "unexpected"},
		{strings.Repeat("list<", 40) + "int64" + strings.Repeat(">", 40), "nested more than"},
	} {
		_, err := ParseColumnarType(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseColumnarType(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

const checkSchema = `struct<
	ts: timestamp(ms)!, us: timestamp(us), day: date, s: string, n: int64, f: float64, b: bool,
	tags: list<string!>, http: struct<status: int64!, path: string>>`

// newFormatSink builds a parquet or arrow sink over opts.
func newFormatSink(t *testing.T, format string, o ColumnarOptions, dir string, g pipeline.Guarantee) *ColumnarSink {
	t.Helper()
	var cfg pipeline.SinkConfig
	if format == "parquet" {
		c := NewParquetConfig()
		c.ColumnarOptions = o
		cfg = c
	} else {
		c := NewArrowConfig()
		c.ColumnarOptions = o
		cfg = c
	}
	sink, err := cfg.NewSink(testBuild(dir, g))
	if err != nil {
		t.Fatal(err)
	}
	return sink.(*ColumnarSink)
}

func readFormat(t testing.TB, format, path string) []map[string]any {
	if format == "parquet" {
		_, rows := readParquet(t, path)
		return rows
	}
	_, rows := readArrowFile(t, path)
	return rows
}

func TestColumnarCheck(t *testing.T) {
	for _, format := range []string{"parquet", "arrow"} {
		t.Run(format, func(t *testing.T) { testColumnarCheck(t, format) })
	}
}

func testColumnarCheck(t *testing.T, format string) {
	dir := t.TempDir()
	o := defaultColumnarOptions()
	o.Path = filepath.Join(dir, "out")
	o.Schema = mustSchema(t, checkSchema)
	o.MaxValueBytes = 16
	s := newFormatSink(t, format, o, dir, pipeline.ExactlyOnce)
	const ts = "2026-01-01T00:00:00Z"
	ok := []*pipeline.Record{
		rec("ts", ts),
		rec("ts", time.UnixMilli(1767225600123)),
		rec("ts", ts, "us", "2026-01-01T00:00:00.123456Z", "day", "2026-01-01", "s", "short", "n", int64(-5), "f", 2.5, "b", true),
		rec("ts", ts, "f", int64(1<<53)),        // exact in float64
		rec("ts", ts, "f", int64(-(1 << 60))),   // a power of two: exact too
		rec("ts", ts, "n", 42.0),                // a whole float
		rec("ts", ts, "n", float64(-(1 << 62))), // whole and in range
		rec("ts", ts, "day", time.Date(2026, 2, 3, 0, 0, 0, 0, time.UTC)),
		rec("ts", ts, "day", "2026-02-03T00:00:00Z"),
		rec("ts", ts, "tags", []any{}, "http", map[string]any{"status": int64(200), "extra": 1}),
		rec("ts", ts, "http", nil, "unknown", "ignored"),
		jsonRec(t, `{"ts":"2026-01-01T00:00:00.5Z","n":7,"f":7,"tags":["a"],"http":{"status":200}}`),
	}
	for i, r := range ok {
		if err := s.Check(r); err != nil {
			t.Errorf("ok[%d]: Check = %v", i, err)
		}
	}
	for _, tc := range []struct {
		r     *pipeline.Record
		field string
		why   string
	}{
		{rec("s", "x"), "ts", "not null"},
		{rec("ts", nil), "ts", "not null"},
		{rec("ts", "yesterday"), "ts", "not an RFC 3339 time"},
		{rec("ts", int64(1767225600000)), "ts", "want timestamp(ms) (a time or an RFC 3339 string), got integer"},
		{rec("ts", "2026-01-01T00:00:00.0001Z"), "ts", "sub-millisecond"},
		{rec("ts", ts, "us", time.Unix(0, 1)), "us", "sub-microsecond"},
		{rec("ts", time.Date(300000000, 1, 1, 0, 0, 0, 0, time.UTC)), "ts", "out of range"},
		{rec("ts", ts, "day", "2026-02-30"), "day", "not a YYYY-MM-DD date"},
		{rec("ts", ts, "day", "2026-02-03T10:00:00Z"), "day", "not midnight UTC"},
		{rec("ts", ts, "s", int64(5)), "s", "want string, got integer 5"},
		{rec("ts", ts, "s", "seventeen bytes!!"), "s", "over max_value_bytes (16)"},
		{rec("ts", ts, "s", "\xff\xfe"), "s", "not valid UTF-8"},
		{rec("ts", ts, "n", "42"), "n", `want int64, got string "42"`},
		{rec("ts", ts, "n", 1.5), "n", "not a whole number"},
		{rec("ts", ts, "n", 1e19), "n", "out of int64 range"},
		{rec("ts", ts, "n", math.NaN()), "n", "want int64, got float64 NaN"},
		{rec("ts", ts, "f", int64(1<<53+1)), "f", "cannot be held exactly by float64"},
		{rec("ts", ts, "f", true), "f", "want float64, got bool"},
		{rec("ts", ts, "b", "true"), "b", "want bool"},
		{rec("ts", ts, "tags", "a,b"), "tags", "want a list"},
		{rec("ts", ts, "tags", []any{"a", nil}), "tags[1]", "not null"},
		{rec("ts", ts, "tags", []any{"a", int64(2)}), "tags[1]", "want string"},
		{rec("ts", ts, "http", map[string]any{}), "http.status", "not null"},
		{rec("ts", ts, "http", map[string]any{"status": int64(1), "path": []any{}}), "http.path", "want string, got a list"},
		{rec("ts", ts, "http", "GET /"), "http", "want an object"},
	} {
		err := s.Check(tc.r)
		var fe *ColumnarFieldError
		if !errors.As(err, &fe) {
			t.Errorf("Check(%v) = %v, want a field error on %s", tc.r.Fields().Map(), err, tc.field)
			continue
		}
		if fe.Field != tc.field || !strings.Contains(fe.Reason, tc.why) {
			t.Errorf("Check(%v) = %q, want field %s, reason containing %q", tc.r.Fields().Map(), err, tc.field, tc.why)
		}
		if !strings.HasPrefix(err.Error(), format+": field "+tc.field+": ") {
			t.Errorf("error %q: want the form \"%s: field %s: reason\"", err, format, tc.field)
		}
		// Write refuses what Check refuses, with the same reason, and
		// writes nothing of it.
		werr := s.Write(context.Background(), batch(tc.r))
		if werr == nil || !strings.Contains(werr.Error(), fe.Error()) {
			t.Errorf("Write of a record Check refuses (%s): %v", fe, werr)
		}
	}
	// The good records are all writable, after the refused ones.
	mustWrite(t, s, ok...)
	mustCommit(t, s, mustPreCommit(t, s, 1))
	files := visibleFiles(t, o.Path)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	if rows := readFormat(t, format, filepath.Join(o.Path, files[0])); len(rows) != len(ok) {
		t.Errorf("read %d rows, want %d: a refused record was written", len(rows), len(ok))
	}
}

// Check and Write agree on random values of every type in every column:
// a record Check accepts is written, one it refuses is refused by Write
// with the same reason, and the file holds exactly the accepted ones.
func TestColumnarCheckAgreesWithWrite(t *testing.T) {
	values := []any{
		nil, "", "text", "2026-01-01", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123456Z", "2026-01-01T00:00:00.0000001Z",
		"2026-01-01T10:00:00+02:00", "not a time", "\xff", strings.Repeat("x", 17),
		int64(0), int64(-7), int64(1 << 53), int64(1<<53 + 1), int64(math.MaxInt64), 0.5, 2.0, -1e300, math.Inf(1), math.NaN(),
		true, false, 7, uint64(math.MaxUint64), float32(1.5),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 1000, time.UTC), time.UnixMilli(1767225600123),
		[]any{}, []any{"a"}, []any{"a", nil}, []any{int64(1)}, map[string]any{}, map[string]any{"status": int64(1)},
		map[string]any{"status": int64(1), "path": "/"}, map[string]any{"status": "1"},
	}
	fitting := map[ColumnarKind][]any{
		KindTimestampMS: {"2026-01-01T00:00:00.123Z", time.UnixMilli(5)},
		KindTimestampUS: {"2026-01-01T00:00:00.123456Z", nil},
		KindDate:        {"2026-01-01", nil},
		KindString:      {"s", nil},
		KindInt64:       {int64(3), 4.0, nil},
		KindFloat64:     {1.25, int64(2), nil},
		KindBool:        {true, nil},
		KindList:        {[]any{"x"}, []any{}, nil},
		KindStruct:      {map[string]any{"status": int64(200)}, nil},
	}
	for _, format := range []string{"parquet", "arrow"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			o := defaultColumnarOptions()
			o.Path = filepath.Join(dir, "out")
			o.Schema = mustSchema(t, checkSchema)
			o.MaxValueBytes = 16
			s := newFormatSink(t, format, o, dir, pipeline.ExactlyOnce)
			rng := rand.New(rand.NewPCG(7, 7))
			accepted := 0
			for i := range 3000 {
				r := &pipeline.Record{}
				fs := r.SetFields()
				for _, f := range o.Schema.Fields {
					switch k := rng.IntN(8); {
					case k == 0: // absent
					case k < 6: // usually a value the column takes
						good := fitting[f.Type.Kind]
						fs.Set(f.Name, good[rng.IntN(len(good))])
					default:
						fs.Set(f.Name, values[rng.IntN(len(values))])
					}
				}
				if i%3 == 0 { // the same through the lazy JSON path, where it can be written as JSON
					if b, err := json.Marshal(fs.Map()); err == nil {
						r = jsonRec(t, string(b))
					}
				}
				cerr := s.Check(r)
				werr := s.Write(context.Background(), batch(r))
				switch {
				case cerr == nil && werr != nil:
					t.Fatalf("record %v: Check accepts, Write refuses: %v", r.Fields().Map(), werr)
				case cerr != nil && werr == nil:
					t.Fatalf("record %v: Check refuses (%v), Write accepts", r.Fields().Map(), cerr)
				case cerr != nil && !strings.Contains(werr.Error(), strings.TrimPrefix(cerr.Error(), format+": ")):
					t.Fatalf("record %v: Check says %q, Write says %q", r.Fields().Map(), cerr, werr)
				case cerr == nil:
					accepted++
				}
			}
			if accepted < 20 || accepted > 2900 {
				t.Fatalf("%d of 3000 accepted: the value mix tests too little", accepted)
			}
			mustCommit(t, s, mustPreCommit(t, s, 1))
			var rows int
			for _, f := range visibleFiles(t, o.Path) {
				rows += len(readFormat(t, format, filepath.Join(o.Path, f)))
			}
			if rows != accepted {
				t.Errorf("files hold %d rows, %d were accepted", rows, accepted)
			}
		})
	}
}

func TestColumnarUnknownFieldsReject(t *testing.T) {
	for _, format := range []string{"parquet", "arrow"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			o := defaultColumnarOptions()
			o.Path = filepath.Join(dir, "out")
			o.Schema = mustSchema(t, "struct<a: int64, o: struct<x: int64>>")
			o.UnknownFields = "reject"
			var sink pipeline.Sink
			var err error
			if format == "parquet" {
				c := NewParquetConfig()
				c.ColumnarOptions = o
				sink, err = c.NewSink(testBuild(dir, pipeline.AtLeastOnce))
			} else {
				c := NewArrowConfig()
				c.ColumnarOptions = o
				sink, err = c.NewSink(testBuild(dir, pipeline.AtLeastOnce))
			}
			if err != nil {
				t.Fatal(err)
			}
			s := sink.(*ColumnarSink)
			if err := s.Check(rec("a", int64(1), "o", map[string]any{"x": int64(2)})); err != nil {
				t.Errorf("Check of a fitting record: %v", err)
			}
			for _, tc := range []struct {
				r     *pipeline.Record
				field string
			}{
				{rec("a", int64(1), "b", nil), "b"},
				{rec("o", map[string]any{"x": int64(2), "y": int64(3)}), "o.y"},
			} {
				err := s.Check(tc.r)
				var fe *ColumnarFieldError
				if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Reason, "unknown_fields: reject") {
					t.Errorf("Check = %v, want field %s not in the schema", err, tc.field)
				}
				if werr := s.Write(context.Background(), batch(tc.r)); werr == nil {
					t.Errorf("Write of %s succeeded", tc.field)
				}
			}
		})
	}
}

func TestColumnarInferredSchema(t *testing.T) {
	for _, h := range []struct {
		name string
		cfg  func(out string) pipeline.SinkConfig
		read func(t testing.TB, path string) []map[string]any
	}{
		{"parquet", func(out string) pipeline.SinkConfig { c := NewParquetConfig(); c.Path = out; return c },
			func(t testing.TB, p string) []map[string]any { _, r := readParquet(t, p); return r }},
		{"arrow", func(out string) pipeline.SinkConfig { c := NewArrowConfig(); c.Path = out; return c },
			func(t testing.TB, p string) []map[string]any { _, r := readArrowFile(t, p); return r }},
	} {
		t.Run(h.name, func(t *testing.T) {
			dir := t.TempDir()
			out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
			cfg := h.cfg(out)
			sink, err := cfg.NewSink(testBuild(data, pipeline.ExactlyOnce))
			if err != nil {
				t.Fatal(err)
			}
			s := sink.(*ColumnarSink)
			if s.Schema() != nil {
				t.Fatal("schema before the first record")
			}
			first := jsonRec(t, `{"msg":"hi","n":1,"f":1.5,"ok":true,"tags":["a"],"o":{"z":1,"a":"x"},"nothing":null,"empty":[]}`)
			if err := s.Check(first); err != nil {
				t.Fatal(err)
			}
			want := "struct<msg: string, n: int64, f: float64, ok: bool, tags: list<string>, o: struct<a: string, z: int64>>"
			if got := s.Schema().String(); got != want {
				t.Fatalf("inferred %s\nwant     %s", got, want)
			}
			// Fixed from now on: later records are checked against it.
			if err := s.Check(jsonRec(t, `{"msg":1}`)); err == nil || !strings.Contains(err.Error(), "field msg: want string") {
				t.Errorf("Check against the inferred schema: %v", err)
			}
			if err := s.Check(jsonRec(t, `{"n":2,"new":"field"}`)); err != nil {
				t.Errorf("a record with fewer and new fields: %v", err)
			}
			mustWrite(t, s, first, jsonRec(t, `{"n":2,"new":"field"}`))
			tok := mustPreCommit(t, s, 1)
			if !strings.Contains(string(tok), `"schema":"struct<msg: string`) {
				t.Errorf("token does not carry the inferred schema: %s", tok)
			}

			// After a restart the schema comes back from the token, not
			// from the next record.
			sink2, _ := cfg.NewSink(testBuild(data, pipeline.ExactlyOnce))
			s2 := sink2.(*ColumnarSink)
			if err := s2.Recover(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
			if s2.Schema() == nil || s2.Schema().String() != want {
				t.Fatalf("schema after Recover: %v, want %s", s2.Schema(), want)
			}
			if err := s2.Check(jsonRec(t, `{"msg":false}`)); err == nil {
				t.Error("after Recover, a record of another shape redefined the schema")
			}
			files := visibleFiles(t, out)
			if len(files) != 1 {
				t.Fatalf("files %v", files)
			}
			rows := h.read(t, filepath.Join(out, files[0]))
			if len(rows) != 2 || rows[0]["msg"] != "hi" || rows[1]["n"] != int64(2) || rows[1]["msg"] != nil {
				t.Errorf("rows %v", rows)
			}
		})
	}
}

// FuzzParseRFC3339 checks the fast path against time.Parse: whenever it
// accepts a string, time.Parse accepts it too and gives the same instant.
func FuzzParseRFC3339(f *testing.F) {
	for _, s := range []string{
		"2026-01-01T00:00:00Z", "2026-01-01T10:00:00.123Z", "2026-02-29T00:00:00Z", "2024-02-29T23:59:59.999999999+14:00",
		"1970-01-01T00:00:00-00:30", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.1-23:59", "2026-13-01T00:00:00Z",
		"2026-01-01T24:00:00Z", "2026-01-01T00:00:60Z", "2026-01-01t00:00:00z", "2026-01-01T00:00:00.Z",
		"2026-01-01T00:00:00.1234567890Z", "2026-01-01T00:00:00+0100", "2026-04-31T00:00:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := parseRFC3339(s)
		if !ok {
			return
		}
		slow, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("fast path accepted %q, time.Parse refuses it: %v", s, err)
		}
		if !fast.Equal(slow) {
			t.Fatalf("%q: fast %s, time.Parse %s", s, fast, slow)
		}
	})
}
