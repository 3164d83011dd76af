package sinks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/weirhq/weir/internal/s3fake"
	"github.com/weirhq/weir/pipeline"
)

// BenchmarkS3ParquetSink writes benchRows six-column log records (the
// workload of BenchmarkParquetSink, raw JSON decoded lazily) through a
// fresh s3 sink per iteration into gofakes3 over loopback TCP: Check and
// Write for every batch, parts of 8 MiB uploaded while rows flow, then
// PreCommit (the last part) and Commit (CompleteMultipartUpload) — the
// whole sink stage under exactly_once. gofakes3 runs in the benchmark's
// process, so rows/cpu-s counts the server's work too (its MD5 of every
// part, its copy of every byte); the objects' bytes are checked.
func BenchmarkS3ParquetSink(b *testing.B) {
	srv := s3fake.Start(b)
	gen := newBenchGen(false, 20)
	ctx := context.Background()
	var objBytes int64
	var cpu cpuClock
	secret := filepath.Join(b.TempDir(), "secret")
	os.WriteFile(secret, []byte("weir-secret"), 0o600)
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		bucket := fmt.Sprintf("bench-%d", it)
		srv.CreateBucket(b, bucket)
		dir := b.TempDir()
		cfg := NewS3Config()
		cfg.Bucket, cfg.Endpoint, cfg.PathStyle = bucket, srv.URL, true
		cfg.AccessKeyID, cfg.SecretAccessKeyFile = "weir", secret
		cfg.Parquet.Path = "lake"
		ty, _ := ParseColumnarType(benchSchema)
		cfg.Parquet.Schema = &ColumnarSchema{Fields: ty.Fields}
		sink, err := cfg.NewSink(testBuild(filepath.Join(dir, "data"), pipeline.ExactlyOnce))
		if err != nil {
			b.Fatal(err)
		}
		s := sink.(*ColumnarSink)
		if err := s.Recover(ctx, nil); err != nil {
			b.Fatal(err)
		}
		for n := 0; n < benchRows; n += benchBatch {
			recs := gen.next(b) // clocks stopped: making records is not the sink's work
			b.StartTimer()
			cpu.start()
			for _, r := range recs {
				if err := s.Check(r); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Write(ctx, &pipeline.Batch{Records: recs}); err != nil {
				b.Fatal(err)
			}
			if n+benchBatch >= benchRows {
				tok, err := s.PreCommit(ctx, 1)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Commit(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
			cpu.stop()
			b.StopTimer()
		}
		objBytes = 0
		for _, v := range srv.Objects(b, bucket, "lake/") {
			objBytes += int64(len(v))
		}
		if objBytes == 0 {
			b.Fatal("no object written")
		}
		s.Close(ctx)
		os.RemoveAll(dir)
	}
	rows := float64(b.N) * benchRows
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(rows/cpu.total.Seconds(), "rows/cpu-s")
	b.ReportMetric(float64(objBytes)/benchRows, "object-B/row")
}
