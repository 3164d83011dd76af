package sinks

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/weirhq/weir/pipeline"
)

// A tiny source so configurations load in this test binary: the loader
// wants one source per pipeline, and the sinks package has none.
func init() {
	pipeline.RegisterSource("columnar_test_source", "test-only source for the columnar sink tests", func() *columnarTestSource { return &columnarTestSource{} })
}

type columnarTestSource struct{}

func (c *columnarTestSource) NewSource(pipeline.Build) (pipeline.Source, error) { return c, nil }
func (c *columnarTestSource) Read(context.Context, *pipeline.Batch) (pipeline.AckFunc, error) {
	return nil, io.EOF
}
func (c *columnarTestSource) Close(context.Context) error { return nil }

// testBuild returns a Build for a sink with its component directory under
// dataDir.
func testBuild(dataDir string, g pipeline.Guarantee) pipeline.Build {
	return pipeline.Build{
		Pipeline:  "p",
		Component: "p/sinks[0]/columnar",
		Guarantee: g,
		Dir:       filepath.Join(dataDir, "sinks0"),
		Logger:    slog.New(slog.DiscardHandler),
		BatchSize: 1024,
		Now:       time.Now,
	}
}

// rec builds a record from name/value pairs.
func rec(kv ...any) *pipeline.Record {
	r := &pipeline.Record{}
	fs := r.SetFields()
	for i := 0; i < len(kv); i += 2 {
		fs.Set(kv[i].(string), kv[i+1])
	}
	return r
}

// jsonRec builds a record the way the json parser does: raw, lazily decoded.
func jsonRec(t testing.TB, s string) *pipeline.Record {
	t.Helper()
	r := &pipeline.Record{Value: []byte(s)}
	if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return r
}

func batch(recs ...*pipeline.Record) *pipeline.Batch { return &pipeline.Batch{Records: recs} }

func mustSchema(t testing.TB, s string) *ColumnarSchema {
	t.Helper()
	ty, err := ParseColumnarType(s)
	if err != nil {
		t.Fatal(err)
	}
	return &ColumnarSchema{Fields: ty.Fields}
}

func mustWrite(t testing.TB, s pipeline.Sink, recs ...*pipeline.Record) {
	t.Helper()
	if err := s.Write(context.Background(), batch(recs...)); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func mustPreCommit(t testing.TB, s *ColumnarSink, ckpt uint64) []byte {
	t.Helper()
	tok, err := s.PreCommit(context.Background(), ckpt)
	if err != nil {
		t.Fatalf("PreCommit(%d): %v", ckpt, err)
	}
	return tok
}

func mustCommit(t testing.TB, s *ColumnarSink, tok []byte) {
	t.Helper()
	if err := s.Commit(context.Background(), tok); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// listFiles returns every file under dir, slash-separated and sorted.
func listFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// visibleFiles is listFiles without hidden (dot) files: what a reader of
// the lake sees.
func visibleFiles(t testing.TB, dir string) []string {
	var out []string
	for _, f := range listFiles(t, dir) {
		if !strings.HasPrefix(filepath.Base(f), ".") {
			out = append(out, f)
		}
	}
	return out
}

// readParquet reads a Parquet file with Arrow's own Parquet reader
// (independent of parquet-go, which wrote it) into rows.
func readParquet(t testing.TB, path string) (*arrow.Schema, []map[string]any) {
	t.Helper()
	rdr, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 4096)
	defer tr.Release()
	var rows []map[string]any
	for tr.Next() {
		rows = append(rows, arrowRows(tr.Record())...)
	}
	return tbl.Schema(), rows
}

// readArrowFile reads an Arrow IPC file with arrow's ipc reader.
func readArrowFile(t testing.TB, path string) (*arrow.Schema, []map[string]any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer r.Close()
	var rows []map[string]any
	for i := 0; i < r.NumRecords(); i++ {
		rec, err := r.Record(i)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, arrowRows(rec)...)
	}
	return r.Schema(), rows
}

// arrowRows turns a record batch into rows of Go values: strings, int64,
// float64, bool, time.Time (UTC) for timestamps, "YYYY-MM-DD" for dates,
// []any for lists, map[string]any for structs, nil for nulls.
func arrowRows(rec arrow.Record) []map[string]any {
	rows := make([]map[string]any, rec.NumRows())
	for i := range rows {
		rows[i] = map[string]any{}
		for c, f := range rec.Schema().Fields() {
			rows[i][f.Name] = arrowValue(rec.Column(c), i)
		}
	}
	return rows
}

func arrowValue(arr arrow.Array, i int) any {
	if arr.IsNull(i) {
		return nil
	}
	switch a := arr.(type) {
	case *array.String:
		return a.Value(i)
	case *array.Int64:
		return a.Value(i)
	case *array.Int32:
		return int64(a.Value(i))
	case *array.Float64:
		return a.Value(i)
	case *array.Boolean:
		return a.Value(i)
	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		return a.Value(i).ToTime(unit).UTC()
	case *array.Date32:
		return a.Value(i).ToTime().UTC().Format("2006-01-02")
	case *array.List:
		start, end := a.ValueOffsets(i)
		out := []any{}
		for j := start; j < end; j++ {
			out = append(out, arrowValue(a.ListValues(), int(j)))
		}
		return out
	case *array.Struct:
		st := a.DataType().(*arrow.StructType)
		m := map[string]any{}
		for f := 0; f < a.NumField(); f++ {
			m[st.Field(f).Name] = arrowValue(a.Field(f), i)
		}
		return m
	}
	return "unsupported arrow type " + arr.DataType().String()
}
