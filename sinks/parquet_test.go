package sinks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/weirhq/weir/pipeline"
)

// roundTripSchema covers every type: scalars, nulls, not-null columns,
// lists (of scalars, of lists, of structs), nested structs.
const roundTripSchema = `struct<
	ts: timestamp(ms)!, level: string, latency_ms: float64, status: int64, ok: bool,
	day: date, at_us: timestamp(us),
	tags: list<string>, codes: list<int64!>,
	http: struct<method: string!, path: string, headers: list<string>>,
	matrix: list<list<int64>>,
	spans: list<struct<name: string, ms: int64>>,
	geo: struct<lat: float64!, lon: float64!>!>`

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// roundTripCases returns the records to write and the rows a reader must
// see, written out by hand (not derived with the code under test).
func roundTripCases(t testing.TB) ([]*pipeline.Record, []map[string]any) {
	recs := []*pipeline.Record{
		rec("ts", "2026-01-01T10:00:00.123Z", "level", "info", "latency_ms", int64(12), "status", int64(200), "ok", true,
			"day", "2026-01-01", "at_us", utc("2026-01-01T10:00:00.123456Z"),
			"tags", []any{"a", "b"}, "codes", []any{int64(1), int64(2), int64(3)},
			"http", map[string]any{"method": "GET", "path": "/x", "headers": []any{"h1"}},
			"matrix", []any{[]any{int64(1), int64(2)}, []any{}, nil, []any{int64(3)}},
			"spans", []any{map[string]any{"name": "db", "ms": int64(4)}, nil, map[string]any{"name": nil, "ms": int64(5)}},
			"geo", map[string]any{"lat": 1.5, "lon": -2.25},
			"extra", "ignored: not a column"),
		// Nulls and missing fields everywhere they are allowed.
		rec("ts", utc("2026-01-02T00:00:00Z"), "level", nil, "status", nil, "day", nil, "at_us", nil,
			"tags", nil, "codes", []any{}, "http", nil, "matrix", nil, "spans", []any{},
			"geo", map[string]any{"lat": 0.0, "lon": float64(-0)}),
		// Null list elements, a struct with missing fields, a 2-level null.
		rec("ts", "2026-01-03T23:59:59.999+02:00", "level", "ünïcödé ✓", "latency_ms", 0.25, "status", int64(-1), "ok", false,
			"day", utc("2026-01-03T00:00:00Z"), "at_us", "2026-01-03T01:02:03.000004Z",
			"tags", []any{"x", nil, ""}, "codes", []any{int64(9)},
			"http", map[string]any{"method": "POST", "headers": []any{}},
			"matrix", []any{[]any{nil, int64(5)}},
			"geo", map[string]any{"lat": -90.0, "lon": 180.0}),
	}
	// A record as the json parser leaves it: raw bytes, decoded lazily.
	recs = append(recs, jsonRec(t, `{"geo":{"lon":2,"lat":1},"ts":"2026-01-04T00:00:00Z","level":"warn","latency_ms":1e3,`+
		`"status":3.0,"tags":["j\"son"],"http":{"method":"PUT","path":null},"matrix":[[7],[8,9]],"spans":[{"ms":1}]}`))

	want := []map[string]any{
		{"ts": utc("2026-01-01T10:00:00.123Z"), "level": "info", "latency_ms": 12.0, "status": int64(200), "ok": true,
			"day": "2026-01-01", "at_us": utc("2026-01-01T10:00:00.123456Z"),
			"tags": []any{"a", "b"}, "codes": []any{int64(1), int64(2), int64(3)},
			"http":   map[string]any{"method": "GET", "path": "/x", "headers": []any{"h1"}},
			"matrix": []any{[]any{int64(1), int64(2)}, []any{}, nil, []any{int64(3)}},
			"spans":  []any{map[string]any{"name": "db", "ms": int64(4)}, nil, map[string]any{"name": nil, "ms": int64(5)}},
			"geo":    map[string]any{"lat": 1.5, "lon": -2.25}},
		{"ts": utc("2026-01-02T00:00:00Z"), "level": nil, "latency_ms": nil, "status": nil, "ok": nil,
			"day": nil, "at_us": nil, "tags": nil, "codes": []any{}, "http": nil, "matrix": nil, "spans": []any{},
			"geo": map[string]any{"lat": 0.0, "lon": 0.0}},
		{"ts": utc("2026-01-03T21:59:59.999Z"), "level": "ünïcödé ✓", "latency_ms": 0.25, "status": int64(-1), "ok": false,
			"day": "2026-01-03", "at_us": utc("2026-01-03T01:02:03.000004Z"),
			"tags": []any{"x", nil, ""}, "codes": []any{int64(9)},
			"http":   map[string]any{"method": "POST", "path": nil, "headers": []any{}},
			"matrix": []any{[]any{nil, int64(5)}}, "spans": nil,
			"geo": map[string]any{"lat": -90.0, "lon": 180.0}},
		{"ts": utc("2026-01-04T00:00:00Z"), "level": "warn", "latency_ms": 1000.0, "status": int64(3), "ok": nil,
			"day": nil, "at_us": nil, "tags": []any{`j"son`}, "codes": nil,
			"http":   map[string]any{"method": "PUT", "path": nil, "headers": nil},
			"matrix": []any{[]any{int64(7)}, []any{int64(8), int64(9)}},
			"spans":  []any{map[string]any{"name": nil, "ms": int64(1)}},
			"geo":    map[string]any{"lat": 1.0, "lon": 2.0}},
	}
	return recs, want
}

func compareRows(t *testing.T, got, want []map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		for k, w := range want[i] {
			if g := got[i][k]; !reflect.DeepEqual(g, w) {
				t.Errorf("row %d column %s: got %#v, want %#v", i, k, g, w)
			}
		}
		for k := range got[i] {
			if _, ok := want[i][k]; !ok {
				t.Errorf("row %d: unexpected column %s", i, k)
			}
		}
	}
}

func wantSchemaOrder(t *testing.T, s *arrow.Schema, cs *ColumnarSchema) {
	t.Helper()
	if len(s.Fields()) != len(cs.Fields) {
		t.Fatalf("read schema %s, want %d columns", s, len(cs.Fields))
	}
	for i, f := range s.Fields() {
		if f.Name != cs.Fields[i].Name || f.Nullable != cs.Fields[i].Type.Nullable {
			t.Errorf("column %d: got %s nullable=%t, want %s nullable=%t", i, f.Name, f.Nullable, cs.Fields[i].Name, cs.Fields[i].Type.Nullable)
		}
	}
}

func TestParquetRoundTrip(t *testing.T) {
	for _, codec := range []string{"snappy", "zstd", "gzip", "none"} {
		for _, dict := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/dict=%t", codec, dict), func(t *testing.T) {
				dir := t.TempDir()
				cfg := NewParquetConfig()
				cfg.Path = filepath.Join(dir, "lake")
				cfg.Schema = mustSchema(t, roundTripSchema)
				cfg.Compression, cfg.Dictionary = codec, dict
				cfg.RowGroupSize = 3 // several row groups, one split inside a Write
				sink, err := cfg.NewSink(testBuild(filepath.Join(dir, "data"), pipeline.ExactlyOnce))
				if err != nil {
					t.Fatal(err)
				}
				s := sink.(*ColumnarSink)
				recs, want := roundTripCases(t)
				for _, r := range recs {
					if err := s.Check(r); err != nil {
						t.Fatalf("Check: %v", err)
					}
				}
				mustWrite(t, s, recs[:2]...)
				mustWrite(t, s, recs[2:]...)
				mustCommit(t, s, mustPreCommit(t, s, 1))
				files := visibleFiles(t, cfg.Path)
				if len(files) != 1 {
					t.Fatalf("files %v, want one", files)
				}
				path := filepath.Join(cfg.Path, files[0])
				schema, got := readParquet(t, path)
				wantSchemaOrder(t, schema, cfg.Schema)
				compareRows(t, got, want)

				rdr, err := file.OpenParquetFile(path, false)
				if err != nil {
					t.Fatal(err)
				}
				defer rdr.Close()
				if n := rdr.NumRowGroups(); n != 2 {
					t.Errorf("row groups: got %d, want 2 (row_group_size 3, 4 rows)", n)
				}
				cc, err := rdr.MetaData().RowGroup(0).ColumnChunk(3) // status
				if err != nil {
					t.Fatal(err)
				}
				if ok, err := cc.StatsSet(); !ok || err != nil {
					t.Errorf("status column: statistics set = %t, %v; want page statistics", ok, err)
				}
				if got := strings.ToLower(cc.Compression().String()); got != map[string]string{"none": "uncompressed"}[codec] && got != codec {
					t.Errorf("compression %s, want %s", got, codec)
				}
				if v := rdr.MetaData().KeyValueMetadata().FindValue("weir.schema"); v == nil || !strings.HasPrefix(*v, "struct<ts: timestamp(ms)!") {
					t.Errorf("weir.schema metadata: %v", v)
				}
			})
		}
	}
}

func TestParquetPartitionsAndOpenFileBound(t *testing.T) {
	dir := t.TempDir()
	cfg := NewParquetConfig()
	cfg.Path = filepath.Join(dir, "lake")
	cfg.Schema = mustSchema(t, "struct<ts: timestamp(ms)!, service: string!, n: int64!>")
	var err error
	cfg.PartitionBy, err = pipeline.CompileTemplate("dt={{ date(ts) }}/svc={{ service }}", pipeline.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxOpenFiles = 3
	sink, err := cfg.NewSink(testBuild(filepath.Join(dir, "data"), pipeline.ExactlyOnce))
	if err != nil {
		t.Fatal(err)
	}
	s := sink.(*ColumnarSink)
	// 10 partitions, cycled so the LRU bound is exercised within a batch.
	want := map[string][]int64{}
	var n int64
	for round := 0; round < 4; round++ {
		var recs []*pipeline.Record
		for p := 0; p < 10; p++ {
			day := fmt.Sprintf("2026-01-%02d", 1+p%2)
			svc := fmt.Sprintf("s%d", p)
			r := rec("ts", day+"T12:00:00Z", "service", svc, "n", n)
			if err := s.Check(r); err != nil {
				t.Fatal(err)
			}
			key := "dt=" + day + "/svc=" + svc
			want[key] = append(want[key], n)
			n++
			recs = append(recs, r)
		}
		mustWrite(t, s, recs...)
		if s.OpenParts() > 3 {
			t.Fatalf("%d parts open, max_open_files is 3", s.OpenParts())
		}
	}
	mustCommit(t, s, mustPreCommit(t, s, 7))
	got := map[string][]int64{}
	for _, f := range visibleFiles(t, cfg.Path) {
		key := filepath.ToSlash(filepath.Dir(f))
		base := filepath.Base(f)
		if !strings.HasPrefix(base, "part-0000000007-") || !strings.HasSuffix(base, "-"+s.sinkID+".parquet") {
			t.Errorf("file name %s: want part-0000000007-<seq>-%s.parquet", f, s.sinkID)
		}
		_, rows := readParquet(t, filepath.Join(cfg.Path, f))
		for _, r := range rows {
			got[key] = append(got[key], r["n"].(int64))
			if "svc="+r["service"].(string) != filepath.Base(key) {
				t.Errorf("row %v in partition %s", r, key)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rows by partition:\n got %v\nwant %v", got, want)
	}
}

func TestParquetPartitionValuesChecked(t *testing.T) {
	dir := t.TempDir()
	cfg := NewParquetConfig()
	cfg.Path = filepath.Join(dir, "lake")
	cfg.Schema = mustSchema(t, "struct<service: string>")
	cfg.PartitionBy, _ = pipeline.CompileTemplate("svc={{ service }}", pipeline.Pos{})
	sink, err := cfg.NewSink(testBuild(filepath.Join(dir, "data"), pipeline.ExactlyOnce))
	if err != nil {
		t.Fatal(err)
	}
	s := sink.(*ColumnarSink)
	for _, tc := range []struct {
		value any
		want  string
	}{
		// "a/b" and "../x" are escaped, not refused: TestParquetHostilePartitionValues.
		{nil, "empty"},
		{"", "empty"},
		{"ok", ""},
	} {
		err := s.Check(rec("service", tc.value))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Check(service=%v) = %v, want an error containing %q", tc.value, err, tc.want)
		}
		if tc.want != "" {
			if werr := s.Write(context.Background(), batch(rec("service", tc.value))); werr == nil {
				t.Errorf("Write(service=%v) succeeded; a bad partition must not be written", tc.value)
			}
		}
	}
	if files := listFiles(t, cfg.Path); len(files) != 0 {
		t.Errorf("files outside staging before commit: %v", files)
	}
}

// A file that is rolled and then committed keeps every row, whatever rolls
// it: size, age, eviction.
func TestParquetRolling(t *testing.T) {
	dir := t.TempDir()
	cfg := NewParquetConfig()
	cfg.Path = filepath.Join(dir, "lake")
	cfg.Schema = mustSchema(t, "struct<n: int64!, pad: string!>")
	cfg.MaxFileBytes = 8 << 10
	cfg.RowGroupSize = 50
	b := testBuild(filepath.Join(dir, "data"), pipeline.ExactlyOnce)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.Now = func() time.Time { return now }
	cfg.MaxFileAge = time.Minute
	sink, err := cfg.NewSink(b)
	if err != nil {
		t.Fatal(err)
	}
	s := sink.(*ColumnarSink)
	var n int64
	write := func(k int) {
		var recs []*pipeline.Record
		for range k {
			sum := sha256.Sum256(fmt.Append(nil, n))
			recs = append(recs, rec("n", n, "pad", hex.EncodeToString(sum[:])+hex.EncodeToString(sum[:16])))
			n++
		}
		mustWrite(t, s, recs...)
	}
	for range 10 {
		write(100) // ~10 KB of incompressible strings a batch: rolls by size
	}
	sizeRolled := len(s.rolled)
	if sizeRolled < 5 {
		t.Errorf("%d parts rolled by size, want at least 5 (max_file_bytes 8KiB, ~100KB written)", sizeRolled)
	}
	write(1)
	now = now.Add(2 * time.Minute)
	write(1) // the part opened by the first write(1) is two minutes old now
	if len(s.rolled) != sizeRolled+1 || s.OpenParts() != 0 {
		t.Errorf("after max_file_age: %d rolled, %d open; want %d rolled, 0 open", len(s.rolled), s.OpenParts(), sizeRolled+1)
	}
	mustCommit(t, s, mustPreCommit(t, s, 3))
	files := visibleFiles(t, cfg.Path)
	var total int64
	for i, f := range files {
		if want := fmt.Sprintf("part-0000000003-%04d-%s.parquet", i, s.sinkID); f != want {
			t.Errorf("file %d: %s, want %s", i, f, want)
		}
		_, rows := readParquet(t, filepath.Join(cfg.Path, f))
		for _, r := range rows {
			if r["n"].(int64) != total {
				t.Fatalf("%s: row n=%v, want %d (rows out of order or lost)", f, r["n"], total)
			}
			total++
		}
	}
	if total != n {
		t.Errorf("read %d rows, wrote %d", total, n)
	}
}

func TestParquetMemoryBound(t *testing.T) {
	dir := t.TempDir()
	cfg := NewParquetConfig()
	cfg.Path = filepath.Join(dir, "lake")
	cfg.Schema = mustSchema(t, "struct<p: int64!, msg: string!>")
	cfg.PartitionBy, _ = pipeline.CompileTemplate("p={{ p }}", pipeline.Pos{})
	cfg.MaxBufferBytes = 2 << 20
	cfg.PageBufferSize = 8 << 10
	sink, err := cfg.NewSink(testBuild(filepath.Join(dir, "data"), pipeline.AtLeastOnce))
	if err != nil {
		t.Fatal(err)
	}
	s := sink.(*ColumnarSink)
	msg := strings.Repeat("m", 200)
	for i := range 30 {
		var recs []*pipeline.Record
		for j := range 1000 {
			recs = append(recs, rec("p", int64(j%100), "msg", fmt.Sprint(msg, i, j)))
		}
		mustWrite(t, s, recs...)
		if got := s.BufferedBytes(); got > cfg.MaxBufferBytes {
			t.Fatalf("batch %d: %d bytes buffered, max_buffer_bytes is %d", i, got, cfg.MaxBufferBytes)
		}
	}
	if s.OpenParts() != 100 {
		t.Errorf("%d open parts, want 100", s.OpenParts())
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var total int
	for _, f := range visibleFiles(t, cfg.Path) {
		_, rows := readParquet(t, filepath.Join(cfg.Path, f))
		total += len(rows)
	}
	if total != 30*1000 {
		t.Errorf("read %d rows, want %d", total, 30*1000)
	}
}

// dictionary: [columns] encodes those columns' strings (nested ones too)
// with a dictionary and the others plainly.
func TestParquetDictionaryColumns(t *testing.T) {
	dir := t.TempDir()
	cfg := NewParquetConfig()
	cfg.Path = filepath.Join(dir, "lake")
	cfg.Schema = mustSchema(t, "struct<level: string, msg: string, tags: list<string>>")
	cfg.DictionaryColumns = []string{"level", "tags"}
	sink, err := cfg.NewSink(testBuild(filepath.Join(dir, "data"), pipeline.ExactlyOnce))
	if err != nil {
		t.Fatal(err)
	}
	s := sink.(*ColumnarSink)
	for i := range 100 {
		mustWrite(t, s, rec("level", "info", "msg", fmt.Sprint("message ", i), "tags", []any{"a"}))
	}
	mustCommit(t, s, mustPreCommit(t, s, 1))
	files := visibleFiles(t, cfg.Path)
	rdr, err := file.OpenParquetFile(filepath.Join(cfg.Path, files[0]), false)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	for col, want := range map[int]bool{0: true, 1: false, 2: true} {
		cc, err := rdr.MetaData().RowGroup(0).ColumnChunk(col)
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, e := range cc.Encodings() {
			if e.String() == "RLE_DICTIONARY" || e.String() == "PLAIN_DICTIONARY" {
				got = true
			}
		}
		if got != want {
			t.Errorf("column %d: dictionary encoded %t, want %t (encodings %v)", col, got, want, cc.Encodings())
		}
	}
	bad := NewParquetConfig()
	bad.Path, bad.Schema, bad.DictionaryColumns = cfg.Path, cfg.Schema, []string{"nope"}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `dictionary: "nope" is not a column`) {
		t.Errorf("Validate with an unknown dictionary column: %v", err)
	}
}
