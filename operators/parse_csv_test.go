package operators

import (
	"context"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

func TestParseCSV(t *testing.T) {
	parseTestTable(t, `- parse: {format: csv, columns: [ts, host, bytes, note]}`, []parseTestCase{
		{name: "plain", line: `2026-11-24,web-1,123,ok`,
			want: []parseTestKV{{"ts", "2026-11-24"}, {"host", "web-1"}, {"bytes", int64(123)}, {"note", "ok"}}},
		{name: "embedded delimiter", line: `2026-11-24,web-1,1.5,"hello, world"`,
			want: []parseTestKV{{"ts", "2026-11-24"}, {"host", "web-1"}, {"bytes", 1.5}, {"note", "hello, world"}}},
		{name: "doubled quotes", line: `a,"say ""hi""",-7,""`,
			want: []parseTestKV{{"ts", "a"}, {"host", `say "hi"`}, {"bytes", int64(-7)}, {"note", ""}}},
		{name: "quoted line break", line: "a,b,1,\"two\nlines\"",
			want: []parseTestKV{{"ts", "a"}, {"host", "b"}, {"bytes", int64(1)}, {"note", "two\nlines"}}},
		{name: "crlf and unicode", line: "ü,名前,true, spaced \r\n",
			want: []parseTestKV{{"ts", "ü"}, {"host", "名前"}, {"bytes", true}, {"note", " spaced "}}},
		{name: "too few", line: `a,b,c`, wantErr: "parse: csv: 3 fields, want 4 (ts, host, bytes, note)"},
		{name: "too many", line: `a,b,c,d,e`, wantErr: "parse: csv: 5 fields, want 4 (ts, host, bytes, note)"},
		{name: "bare quote", line: `a,b"c,1,2`, wantErr: `parse: csv: bare " in non-quoted-field at column 4`},
		{name: "unterminated quote", line: `a,"bc,1,2`, wantErr: `parse: csv: extraneous or missing " in quoted-field at column 10`},
		{name: "two records", line: "a,b,c,d\ne,f,g,h", wantErr: "parse: csv: more than one record in line"},
		{name: "empty", line: "", wantErr: "parse: csv: empty line"},
		// After errors the reused reader starts clean.
		{name: "good after bad", line: `x,y,0,z`,
			want: []parseTestKV{{"ts", "x"}, {"host", "y"}, {"bytes", int64(0)}, {"note", "z"}}},
	})
}

func TestParseCSVOptions(t *testing.T) {
	parseTestTable(t, `- parse: {format: csv, columns: [a, b, zip], delimiter: ";", infer_types: false}`, []parseTestCase{
		{name: "semicolon", line: `1;"x;y";02134`, want: []parseTestKV{{"a", "1"}, {"b", "x;y"}, {"zip", "02134"}}},
		{name: "comma is data", line: `1,2;3;4`, want: []parseTestKV{{"a", "1,2"}, {"b", "3"}, {"zip", "4"}}},
	})
	parseTestTable(t, `- parse: {format: csv, columns: [a, b], delimiter: "\t", types: {b: "time:2006-01-02"}}`, []parseTestCase{
		{name: "tab and time", line: "1\t2026-11-24", want: []parseTestKV{{"a", int64(1)}, {"b", parseTestTime("2026-11-24T00:00:00Z")}}},
		{name: "bad time", line: "1\tnope", wantErr: `parse: types: field "b": "nope" is not a valid time:2006-01-02`},
	})
}

// parseTestBatch runs records through o as one batch.
func parseTestBatch(t *testing.T, o pipeline.Operator, recs ...*pipeline.Record) *pipeline.Batch {
	t.Helper()
	b := &pipeline.Batch{Records: recs}
	if err := o.Process(context.Background(), b); err != nil {
		t.Fatalf("Process: %v", err)
	}
	return b
}

func parseTestSourced(source int, origin, line string) *pipeline.Record {
	return &pipeline.Record{Value: []byte(line), Source: source, Origin: pipeline.Origin{Name: origin}}
}

// TestParseCSVHeader: the first record of each input (source and origin)
// names the columns and is consumed.
func TestParseCSVHeader(t *testing.T) {
	o := parseTestOp(t, `- parse: {format: csv, header: true}`)
	b := parseTestBatch(t, o,
		parseTestSourced(0, "a.csv", "\ufeffname,age"),
		parseTestSourced(0, "a.csv", "bob,42"),
		parseTestSourced(1, "", "x,,x2"),
		parseTestSourced(0, "b.csv", "city"),
		parseTestSourced(1, "", "1,2,3"),
		parseTestSourced(0, "a.csv", "alice"),
		parseTestSourced(0, "b.csv", "Oslo"),
	)
	if len(b.Records) != 3 || len(b.Dead) != 1 {
		t.Fatalf("got %d records and %d dead letters, want 3 and 1", len(b.Records), len(b.Dead))
	}
	parseTestCheck(t, b.Records[0], []parseTestKV{{"name", "bob"}, {"age", int64(42)}})
	parseTestCheck(t, b.Records[1], []parseTestKV{{"x", int64(1)}, {"column_2", int64(2)}, {"x2", int64(3)}})
	parseTestCheck(t, b.Records[2], []parseTestKV{{"city", "Oslo"}})
	parseTestDead(t, &b.Dead[0], "parse: csv: 1 fields, want 2 (name, age)")

	// The headers are state: a restarted operator resumes past them.
	state, err := o.(pipeline.Snapshotter).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	const wantState = `[{"source":0,"origin":"a.csv","columns":["name","age"]},{"source":0,"origin":"b.csv","columns":["city"]},{"source":1,"columns":["x","column_2","x2"]}]`
	if string(state) != wantState {
		t.Errorf("snapshot\n got %s\nwant %s", state, wantState)
	}
	o2 := parseTestOp(t, `- parse: {format: csv, header: true}`)
	if err := o2.(pipeline.Snapshotter).Restore(state); err != nil {
		t.Fatal(err)
	}
	b = parseTestBatch(t, o2, parseTestSourced(0, "a.csv", "carol,7"), parseTestSourced(2, "", "new,header"), parseTestSourced(2, "", "1,2"))
	if len(b.Records) != 2 || len(b.Dead) != 0 {
		t.Fatalf("after restore: %d records, %d dead letters, want 2 and 0", len(b.Records), len(b.Dead))
	}
	parseTestCheck(t, b.Records[0], []parseTestKV{{"name", "carol"}, {"age", int64(7)}})
	parseTestCheck(t, b.Records[1], []parseTestKV{{"new", int64(1)}, {"header", int64(2)}})
	if err := o2.(pipeline.Snapshotter).Restore([]byte("{")); err == nil {
		t.Error("Restore of bad state succeeded")
	}
}

func TestParseCSVHeaderErrors(t *testing.T) {
	o := parseTestOp(t, `- parse: {format: csv, header: true}`)
	b := parseTestBatch(t, o,
		parseTestSourced(0, "", "a,b,a"),  // duplicate name: dead, not a header
		parseTestSourced(0, "", `a,"b`),   // bad CSV: dead
		parseTestSourced(0, "", "k,v"),    // the header
		parseTestSourced(0, "", "1,true"), // data
	)
	if len(b.Records) != 1 || len(b.Dead) != 2 {
		t.Fatalf("got %d records and %d dead letters, want 1 and 2", len(b.Records), len(b.Dead))
	}
	parseTestDead(t, &b.Dead[0], `parse: csv: header: column "a" appears twice`)
	parseTestDead(t, &b.Dead[1], `parse: csv: header: extraneous or missing " in quoted-field at column 5`)
	parseTestCheck(t, b.Records[0], []parseTestKV{{"k", int64(1)}, {"v", true}})
}

// TestParseCSVHeaderAndColumns: declared columns name the fields; the
// header line is skipped.
func TestParseCSVHeaderAndColumns(t *testing.T) {
	o := parseTestOp(t, `- parse: {format: csv, header: true, columns: [x, y]}`)
	b := parseTestBatch(t, o, parseTestSourced(0, "", "A,B"), parseTestSourced(0, "", "1,2"))
	if len(b.Records) != 1 || len(b.Dead) != 0 {
		t.Fatalf("got %d records and %d dead letters, want 1 and 0", len(b.Records), len(b.Dead))
	}
	parseTestCheck(t, b.Records[0], []parseTestKV{{"x", int64(1)}, {"y", int64(2)}})
}

// TestParseCSVHeaderLineOne: a record at line 1 of its file is a header
// even after one was read (rotation, truncation).
func TestParseCSVHeaderLineOne(t *testing.T) {
	o := parseTestOp(t, `- parse: {format: csv, header: true}`)
	at := func(line int64, s string) *pipeline.Record {
		r := parseTestSourced(0, "app.csv", s)
		r.Origin.Line = line
		return r
	}
	b := parseTestBatch(t, o, at(1, "a,b"), at(2, "1,2"), at(1, "x,y,z"), at(2, "3,4,5"))
	if len(b.Records) != 2 || len(b.Dead) != 0 {
		t.Fatalf("got %d records and %d dead letters, want 2 and 0", len(b.Records), len(b.Dead))
	}
	parseTestCheck(t, b.Records[0], []parseTestKV{{"a", int64(1)}, {"b", int64(2)}})
	parseTestCheck(t, b.Records[1], []parseTestKV{{"x", int64(3)}, {"y", int64(4)}, {"z", int64(5)}})
}
