package sinks

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/weirhq/weir/pipeline"
)

func TestArrowRoundTrip(t *testing.T) {
	for _, codec := range []string{"none", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			dir := t.TempDir()
			cfg := NewArrowConfig()
			cfg.Path = filepath.Join(dir, "out", "events.arrow")
			cfg.Schema = mustSchema(t, roundTripSchema)
			cfg.Compression = codec
			cfg.BatchRows = 3 // two record batches, one split inside a Write
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
			mustCommit(t, s, mustPreCommit(t, s, 12))
			files := visibleFiles(t, filepath.Join(dir, "out"))
			if wantName := "events-0000000012-0000-" + s.sinkID + ".arrow"; len(files) != 1 || files[0] != wantName {
				t.Fatalf("files %v, want [%s]", files, wantName)
			}
			schema, got := readArrowFile(t, filepath.Join(dir, "out", files[0]))
			wantSchemaOrder(t, schema, cfg.Schema)
			compareRows(t, got, want)
		})
	}
}

func TestArrowStreamToStdout(t *testing.T) {
	var out bytes.Buffer
	cfg := NewArrowConfig()
	cfg.Path = "-"
	cfg.Schema = mustSchema(t, roundTripSchema)
	cfg.stdout = &out
	if _, err := cfg.NewSink(testBuild(t.TempDir(), pipeline.ExactlyOnce)); err == nil || !strings.Contains(err.Error(), "at_least_once") {
		t.Fatalf("exactly_once to stdout: got %v, want a refusal naming at_least_once", err)
	}
	sink, err := cfg.NewSink(testBuild(t.TempDir(), pipeline.AtLeastOnce))
	if err != nil {
		t.Fatal(err)
	}
	s := sink.(*ArrowStream)
	if _, ok := sink.(pipeline.Committer); ok {
		t.Error("the stdout stream claims to be a Committer")
	}
	recs, want := roundTripCases(t)
	mustWrite(t, s, recs[:1]...)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out.Len() == 0 {
		t.Error("Flush wrote nothing to stdout")
	}
	bad := rec("ts", "yesterday")
	if err := s.Check(bad); err == nil || !strings.Contains(err.Error(), "field ts") {
		t.Errorf("Check(ts=yesterday) = %v, want a field ts error", err)
	}
	mustWrite(t, s, recs[1:]...)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := ipc.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	var got []map[string]any
	for r.Next() {
		got = append(got, arrowRows(r.Record())...)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	wantSchemaOrder(t, r.Schema(), cfg.Schema)
	compareRows(t, got, want)
}

func TestArrowStreamEmptyIsValid(t *testing.T) {
	var out bytes.Buffer
	cfg := NewArrowConfig()
	cfg.Path, cfg.stdout = "-", &out
	cfg.Schema = mustSchema(t, "struct<a: int64>")
	sink, err := cfg.NewSink(testBuild(t.TempDir(), pipeline.AtMostOnce))
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := ipc.NewReader(&out)
	if err != nil {
		t.Fatalf("an empty run must still be a valid stream: %v", err)
	}
	defer r.Release()
	if r.Next() {
		t.Error("empty stream has a record batch")
	}
}
