package sinks

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/weirhq/weir/pipeline"
)

// The benchmark workload: six-column log records.
const benchSchema = "struct<ts: timestamp(ms)!, level: string!, service: string!, msg: string, latency_ms: float64, status: int64>"

const (
	benchRows  = 1_000_000
	benchBatch = 1024
)

var (
	benchLevels   = []string{"debug", "info", "info", "info", "warn", "error"}
	benchStatuses = []int64{200, 200, 200, 201, 204, 301, 400, 404, 500, 503}
	benchVerbs    = []string{"GET", "POST", "PUT", "DELETE"}
)

// benchGen makes the benchmark's records a batch at a time, fresh for every
// batch as a parser would hand them on (each record distinct, in cache),
// reusing the records and their buffers so that making them adds no
// garbage of its own.
type benchGen struct {
	rng      *rand.Rand
	i        int
	services int
	decoded  bool
	recs     []*pipeline.Record
	lines    [][]byte
}

// newBenchGen: decoded records have Go values in their fields (as an
// operator that set them leaves them; ts a time.Time); the others hold raw
// JSON that the sink decodes lazily, as the json parser leaves them (ts an
// RFC 3339 string).
func newBenchGen(decoded bool, services int) *benchGen {
	return &benchGen{rng: rand.New(rand.NewPCG(1, 2)), services: services, decoded: decoded,
		recs: pipeline.NewRecords(benchBatch), lines: make([][]byte, benchBatch)}
}

// line renders record i as the JSON line a log source would carry.
func (g *benchGen) line(dst []byte) []byte {
	rng := g.rng
	dst = append(dst, `{"ts":"`...)
	dst = time.UnixMilli(1767225600000+int64(g.i)).UTC().AppendFormat(dst, pipeline.TimeLayout)
	dst = append(dst, `","level":"`...)
	dst = append(dst, benchLevels[rng.IntN(len(benchLevels))]...)
	dst = append(dst, `","service":"svc-`...)
	dst = strconv.AppendInt(dst, int64(rng.IntN(g.services)), 10)
	dst = append(dst, `","msg":"`...)
	dst = append(dst, benchVerbs[rng.IntN(len(benchVerbs))]...)
	dst = append(dst, " /api/v1/items/"...)
	dst = strconv.AppendInt(dst, int64(rng.IntN(100000)), 10)
	dst = append(dst, " took "...)
	dst = strconv.AppendInt(dst, int64(rng.IntN(900)), 10)
	dst = append(dst, `ms","latency_ms":`...)
	dst = strconv.AppendFloat(dst, rng.ExpFloat64()*40, 'f', 3, 64)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, benchStatuses[rng.IntN(len(benchStatuses))], 10)
	g.i++
	return append(dst, '}')
}

// next refills and returns the batch; the previous batch's records are
// overwritten (the sink keeps none after Write).
func (g *benchGen) next(tb testing.TB) []*pipeline.Record {
	for k, r := range g.recs {
		g.lines[k] = g.line(g.lines[k][:0])
		r.Value = g.lines[k]
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			tb.Fatal(err)
		}
		if g.decoded {
			fs := r.Fields()
			fs.DecodeAll()
			ts, err := time.Parse(time.RFC3339Nano, fs.Get("ts").(string))
			if err != nil {
				tb.Fatal(err)
			}
			fs.Set("ts", ts)
		}
	}
	return g.recs
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
	gen := newBenchGen(decoded, services)
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
			if (n/benchBatch)%128 == 127 {
				heap.sample()
			}
		}
		fileBytes = 0
		for _, f := range visibleFiles(b, cfg.Path) {
			fi, _ := os.Stat(filepath.Join(cfg.Path, f))
			fileBytes += fi.Size()
		}
		s.Close(ctx)
		os.RemoveAll(dir)
	}
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
	b.Run("decoded/dictionary=[level,service]", func(b *testing.B) {
		runSinkBench(b, true, 20, func(c *ParquetConfig) { c.DictionaryColumns = []string{"level", "service"} })
	})
	b.Run("decoded/dictionary=false", func(b *testing.B) {
		runSinkBench(b, true, 20, func(c *ParquetConfig) { c.Dictionary = false })
	})
}

// BenchmarkParquetSinkPartitions: the same million over 100 open
// partitions (partition_by service), for peak memory.
func BenchmarkParquetSinkPartitions(b *testing.B) {
	part := func(c *ParquetConfig) {
		c.PartitionBy, _ = pipeline.CompileTemplate("service={{ service }}", pipeline.Pos{})
	}
	b.Run("100-partitions", func(b *testing.B) { runSinkBench(b, true, 100, part) })
	b.Run("100-partitions/max_buffer_bytes=8MiB", func(b *testing.B) {
		runSinkBench(b, true, 100, func(c *ParquetConfig) { part(c); c.MaxBufferBytes = 8 << 20 })
	})
	b.Run("100-partitions/dictionary=false", func(b *testing.B) {
		runSinkBench(b, true, 100, func(c *ParquetConfig) { part(c); c.Dictionary = false })
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
		var cpu cpuClock
		cpu.start()
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
		cpu.stop()
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(float64(n)*float64(b.N)/cpu.total.Seconds(), "rows/cpu-s")
	})
	b.Run("columns", func(b *testing.B) {
		var cpu cpuClock
		cpu.start()
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
		cpu.stop()
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(float64(n)*float64(b.N)/cpu.total.Seconds(), "rows/cpu-s")
	})
}

// BenchmarkArrowSink: the million through the arrow sink (file format,
// no compression), Check + Write + PreCommit + Commit.
func BenchmarkArrowSink(b *testing.B) {
	gen := newBenchGen(true, 20)
	ctx := context.Background()
	var cpu cpuClock
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
		for n := 0; n < benchRows; n += benchBatch {
			recs := gen.next(b)
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
				if err == nil {
					err = s.Commit(ctx, tok)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			cpu.stop()
			b.StopTimer()
		}
		s.Close(ctx)
		os.RemoveAll(dir)
	}
	b.ReportMetric(float64(b.N)*benchRows/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(b.N)*benchRows/cpu.total.Seconds(), "rows/cpu-s")
}

// BenchmarkColumnarCheck: Check alone, per record, on the benchmark schema.
func BenchmarkColumnarCheck(b *testing.B) {
	for _, decoded := range []bool{true, false} {
		name := map[bool]string{true: "decoded", false: "json"}[decoded]
		b.Run(name, func(b *testing.B) {
			gen := newBenchGen(decoded, 20)
			pool := [][]*pipeline.Record{gen.next(b)}
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
