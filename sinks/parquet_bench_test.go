package sinks

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/weirhq/weir/pipeline"
)

// The benchmark workload: six-column log records.
const benchSchema = "struct<ts: timestamp(ms)!, level: string!, service: string!, msg: string, latency_ms: float64, status: int64>"

const (
	benchRows      = 1_000_000
	benchBatch     = 1024
	benchPoolBatch = 32 // distinct batches cycled through (32768 distinct records; a bigger pool only adds GC scanning that a running pipeline, holding a few batches, does not have)
)

var (
	benchLevels   = []string{"debug", "info", "info", "info", "warn", "error"}
	benchStatuses = []int64{200, 200, 200, 201, 204, 301, 400, 404, 500, 503}
	benchVerbs    = []string{"GET", "POST", "PUT", "DELETE"}
)

// benchLine renders record i as the JSON line a log source would carry.
func benchLine(rng *rand.Rand, i int, services int) []byte {
	ts := time.UnixMilli(1767225600000 + int64(i)).UTC().Format(pipeline.TimeLayout)
	return fmt.Appendf(nil, `{"ts":"%s","level":"%s","service":"svc-%02d","msg":"%s /api/v1/items/%d took %dms","latency_ms":%.3f,"status":%d}`,
		ts, benchLevels[rng.IntN(len(benchLevels))], rng.IntN(services), benchVerbs[rng.IntN(len(benchVerbs))],
		rng.IntN(100000), rng.IntN(900), rng.ExpFloat64()*40, benchStatuses[rng.IntN(len(benchStatuses))])
}

// benchPool returns distinct batches of records. decoded: the fields are Go
// values (as an operator that set them leaves them; ts a time.Time); else
// they are raw JSON, decoded lazily by the sink, as the json parser leaves
// them (ts an RFC 3339 string).
func benchPool(tb testing.TB, decoded bool, services int) [][]*pipeline.Record {
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([][]*pipeline.Record, benchPoolBatch)
	i := 0
	for b := range pool {
		recs := pipeline.NewRecords(benchBatch)
		for _, r := range recs {
			r.Value = benchLine(rng, i, services)
			i++
			if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
				tb.Fatal(err)
			}
			if decoded {
				fs := r.Fields()
				for j := 0; j < fs.Len(); j++ {
					fs.Value(j)
				}
				ts, _ := time.Parse(time.RFC3339Nano, fs.Get("ts").(string))
				fs.Set("ts", ts)
			}
		}
		pool[b] = recs
	}
	return pool
}

// reparse gives a pooled batch fresh, undecoded fields, so that every pass
// pays for lazy decoding as a real stream would.
func reparse(recs []*pipeline.Record) {
	for _, r := range recs {
		_ = r.SetFields().ParseJSONObject(r.Value)
	}
}

// liveHeap measures the sink's live heap: a forced collection, then the
// bytes of live objects, less those live before the sink existed (the
// record pool). The caller stops the clocks around it.
type liveHeap struct {
	base, peak uint64
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func (h *liveHeap) sample() {
	if v := heapAfterGC(); v > h.base && v-h.base > h.peak {
		h.peak = v - h.base
	}
}

// runSinkBench writes benchRows records through a fresh parquet sink per
// iteration: Check and Write for every batch, then PreCommit and Commit
// (fsync, rename) — the whole sink stage under exactly_once.
func runSinkBench(b *testing.B, decoded bool, services int, mutate func(*ParquetConfig)) {
	pool := benchPool(b, decoded, services)
	ctx := context.Background()
	var fileBytes int64
	var heap liveHeap
	var cpu cpuClock
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		dir := b.TempDir()
		cfg := NewParquetConfig()
		cfg.Path = filepath.Join(dir, "lake")
		ty, _ := ParseColumnarType(benchSchema)
		cfg.Schema = &ColumnarSchema{Fields: ty.Fields}
		if mutate != nil {
			mutate(cfg)
		}
		sink, err := cfg.NewSink(testBuild(filepath.Join(dir, "data"), pipeline.ExactlyOnce))
		if err != nil {
			b.Fatal(err)
		}
		s := sink.(*ColumnarSink)
		if err := s.Recover(ctx, nil); err != nil {
			b.Fatal(err)
		}
		heap.base = heapAfterGC()
		b.StartTimer()
		cpu.start()
		for n := 0; n < benchRows; n += benchBatch {
			recs := pool[(n/benchBatch)%len(pool)]
			if !decoded {
				cpu.stop()
				b.StopTimer()
				reparse(recs)
				b.StartTimer()
				cpu.start()
			}
			for _, r := range recs {
				if err := s.Check(r); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Write(ctx, &pipeline.Batch{Records: recs}); err != nil {
				b.Fatal(err)
			}
			if (n/benchBatch)%128 == 127 {
				cpu.stop()
				b.StopTimer()
				heap.sample()
				b.StartTimer()
				cpu.start()
			}
		}
		tok, err := s.PreCommit(ctx, 1)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Commit(ctx, tok); err != nil {
			b.Fatal(err)
		}
		cpu.stop()
		b.StopTimer()
		fileBytes = 0
		for _, f := range visibleFiles(b, cfg.Path) {
			fi, _ := os.Stat(filepath.Join(cfg.Path, f))
			fileBytes += fi.Size()
		}
		s.Close(ctx)
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.StopTimer()
	rows := float64(b.N) * benchRows
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(rows/cpu.total.Seconds(), "rows/cpu-s")
	b.ReportMetric(float64(fileBytes)/benchRows, "file-B/row")
	b.ReportMetric(float64(heap.peak)/(1<<20), "live-heap-MB")
}

// cpuClock sums the CPU time (user + system, all threads: GC included) the
// process spends while running. On a shared machine the wall clock also
// counts other processes' turns; CPU time does not.
type cpuClock struct {
	at    time.Duration
	total time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuClock) start() { c.at = processCPU() }
func (c *cpuClock) stop()  { c.total += processCPU() - c.at }

// BenchmarkParquetSink: 1,000,000 six-column log records, snappy, through
// Check + Write + PreCommit + Commit. One op is the whole million.
func BenchmarkParquetSink(b *testing.B) {
	b.Run("decoded", func(b *testing.B) { runSinkBench(b, true, 20, nil) })
	b.Run("json", func(b *testing.B) { runSinkBench(b, false, 20, nil) })
}

// BenchmarkParquetSinkPartitions: the same million over 100 open
// partitions (partition_by service), for peak memory.
func BenchmarkParquetSinkPartitions(b *testing.B) {
	part := func(c *ParquetConfig) {
		c.PartitionBy, _ = pipeline.CompileTemplate("service={{ service }}", pipeline.Pos{})
	}
	b.Run("100-partitions", func(b *testing.B) { runSinkBench(b, true, 100, part) })
	b.Run("100-partitions/max_buffer_bytes=32MiB", func(b *testing.B) {
		runSinkBench(b, true, 100, func(c *ParquetConfig) { part(c); c.MaxBufferBytes = 32 << 20 })
	})
}

// BenchmarkParquetWriteModes compares parquet-go's two ways in for the same
// values: row-wise Writer.WriteRows, and ColumnWriter.WriteRowValues with
// one slice per column (what the sink does).
func BenchmarkParquetWriteModes(b *testing.B) {
	ty, _ := ParseColumnarType(benchSchema)
	f := &parquetFormat{cfg: NewParquetConfig()}
	plan, err := f.planFor(&ColumnarSchema{Fields: ty.Fields})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 64 * 1024
	cols := make([][]parquet.Value, 6)
	rows := make([]parquet.Row, n)
	for i := range n {
		row := parquet.Row{
			parquet.Int64Value(1767225600000+int64(i)).Level(0, 0, 0),
			parquet.ByteArrayValue([]byte(benchLevels[rng.IntN(len(benchLevels))])).Level(0, 0, 1),
			parquet.ByteArrayValue(fmt.Appendf(nil, "svc-%02d", rng.IntN(20))).Level(0, 0, 2),
			parquet.ByteArrayValue(fmt.Appendf(nil, "GET /api/v1/items/%d took %dms", rng.IntN(100000), rng.IntN(900))).Level(0, 1, 3),
			parquet.DoubleValue(rng.ExpFloat64()*40).Level(0, 1, 4),
			parquet.Int64Value(benchStatuses[rng.IntN(len(benchStatuses))]).Level(0, 1, 5),
		}
		rows[i] = row
		for c := range cols {
			cols[c] = append(cols[c], row[c])
		}
	}
	b.Run("rows", func(b *testing.B) {
		for b.Loop() {
			w := parquet.NewWriter(io.Discard, plan.config)
			for i := 0; i < n; i += benchBatch {
				if _, err := w.WriteRows(rows[i:min(i+benchBatch, n)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("columns", func(b *testing.B) {
		for b.Loop() {
			w := parquet.NewWriter(io.Discard, plan.config)
			cws := w.ColumnWriters()
			for i := 0; i < n; i += benchBatch {
				for c, cw := range cws {
					if _, err := cw.WriteRowValues(cols[c][i:min(i+benchBatch, n)]); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

// BenchmarkArrowSink: the million through the arrow sink.
func BenchmarkArrowSink(b *testing.B) {
	pool := benchPool(b, true, 20)
	ctx := context.Background()
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		dir := b.TempDir()
		cfg := NewArrowConfig()
		cfg.Path = filepath.Join(dir, "out", "events.arrow")
		ty, _ := ParseColumnarType(benchSchema)
		cfg.Schema = &ColumnarSchema{Fields: ty.Fields}
		sink, err := cfg.NewSink(testBuild(filepath.Join(dir, "data"), pipeline.ExactlyOnce))
		if err != nil {
			b.Fatal(err)
		}
		s := sink.(*ColumnarSink)
		b.StartTimer()
		for n := 0; n < benchRows; n += benchBatch {
			recs := pool[(n/benchBatch)%len(pool)]
			for _, r := range recs {
				if err := s.Check(r); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Write(ctx, &pipeline.Batch{Records: recs}); err != nil {
				b.Fatal(err)
			}
		}
		tok, err := s.PreCommit(ctx, 1)
		if err == nil {
			err = s.Commit(ctx, tok)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close(ctx)
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)*benchRows/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkColumnarCheck: Check alone, per record, on the benchmark schema.
func BenchmarkColumnarCheck(b *testing.B) {
	for _, decoded := range []bool{true, false} {
		name := map[bool]string{true: "decoded", false: "json"}[decoded]
		b.Run(name, func(b *testing.B) {
			pool := benchPool(b, decoded, 20)[:4]
			cfg := NewParquetConfig()
			cfg.Path = filepath.Join(b.TempDir(), "lake")
			ty, _ := ParseColumnarType(benchSchema)
			cfg.Schema = &ColumnarSchema{Fields: ty.Fields}
			sink, err := cfg.NewSink(testBuild(b.TempDir(), pipeline.AtLeastOnce))
			if err != nil {
				b.Fatal(err)
			}
			s := sink.(*ColumnarSink)
			i := 0
			var cpu cpuClock
			cpu.start()
			for b.Loop() {
				recs := pool[(i/benchBatch)%len(pool)]
				if err := s.Check(recs[i%benchBatch]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			cpu.stop()
			b.ReportMetric(float64(cpu.total.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
