package sources

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

// benchLogFile writes n generated JSON log lines (~150 bytes, the shape of
// /work/shared/bench/gen_logs.py) and returns the path and size.
func benchLogFile(b *testing.B, n int) (string, int64) {
	b.Helper()
	p := filepath.Join(b.TempDir(), "bench.log")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var line []byte
	for i := range n {
		line, _ = appendGenerated(line[:0], 1, int64(i))
		line = append(line, '\n')
		_, _ = w.Write(line)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	fi, _ := f.Stat()
	_ = f.Close()
	return p, fi.Size()
}

// BenchmarkFileRead measures the finite read path: one op reads a whole
// file of 200,000 ~150-byte lines into batches of 1024 records. It reports
// lines/s (wall clock), MB/s, and lines/cpu-s (per second of CPU used by
// the process, GC included).
func BenchmarkFileRead(b *testing.B) {
	const lines = 200_000
	p, size := benchLogFile(b, lines)
	b.SetBytes(size)
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		src, err := fileCfg(p).NewSource(testBuild(b, pipeline.DefaultBatchSize))
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		batch := &pipeline.Batch{Records: make([]*pipeline.Record, 0, pipeline.DefaultBatchSize)}
		for {
			batch.Reset()
			_, err := src.Read(context.Background(), batch)
			n += len(batch.Records)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		_ = src.Close(context.Background())
		if n != lines {
			b.Fatalf("read %d lines, want %d", n, lines)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	// Lines per second of CPU used by the whole process (GC included): a
	// figure that stays meaningful when other work shares the machine.
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(lines)*float64(b.N)/cpu.Seconds(), "lines/cpu-s")
	}
}

// BenchmarkGenerate measures the generate source at full speed, parsing
// included.
func BenchmarkGenerate(b *testing.B) {
	src, err := (&GenerateConfig{Seed: 1}).NewSource(testBuild(b, pipeline.DefaultBatchSize))
	if err != nil {
		b.Fatal(err)
	}
	batch := &pipeline.Batch{}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		batch.Reset()
		if _, err := src.Read(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch.Records)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
