package operators

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// logGen writes log lines shaped like /work/shared/bench/gen_logs.py:
// ts (one record every 7 ms of event time), level, service, msg,
// latency_ms and status.
type logGen struct {
	rng   *rand.Rand
	i     int64
	step  time.Duration
	arena []byte
}

var (
	benchLevels   = append(append(append(rep("info", 70), rep("warn", 15)...), rep("error", 10)...), rep("debug", 5)...)
	benchServices = []string{"api-gateway", "auth-service", "billing", "search", "inventory", "checkout", "notifications", "user-profile"}
	benchMsgs     = []string{"request completed successfully", "upstream timeout while calling dependency",
		"cache miss for key, fetching from database", "user session refreshed", "payment authorization declined by provider",
		"connection pool exhausted, retrying", "rate limit exceeded for client", "background job finished"}
	benchStatus = []int{200, 200, 200, 201, 204, 301, 404, 429}
)

func rep(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func newLogGen(seed uint64) *logGen {
	return &logGen{rng: rand.New(rand.NewPCG(seed, 1)), step: 7 * time.Millisecond}
}

// fill makes records[i] the next lines, parsed (parsing is not what the
// benchmarks measure, so callers stop the timer around fill).
func (g *logGen) fill(records []*pipeline.Record) {
	g.arena = g.arena[:0]
	offs := make([]int, len(records)+1)
	for k := range records {
		lvl := benchLevels[g.rng.IntN(len(benchLevels))]
		status := benchStatus[g.rng.IntN(len(benchStatus))]
		if lvl == "error" && g.rng.Float64() < 0.7 {
			status = 500
		}
		b := g.arena
		b = append(b, `{"ts":"`...)
		b = t0.Add(time.Duration(g.i)*g.step).AppendFormat(b, pipeline.TimeLayout)
		b = append(b, `","level":"`...)
		b = append(b, lvl...)
		b = append(b, `","service":"`...)
		b = append(b, benchServices[g.rng.IntN(len(benchServices))]...)
		b = append(b, `","msg":"`...)
		b = append(b, benchMsgs[g.rng.IntN(len(benchMsgs))]...)
		b = append(b, `","latency_ms":`...)
		b = strconv.AppendFloat(b, math.Round(g.rng.ExpFloat64()*45*1000)/1000, 'f', -1, 64)
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, '}')
		g.arena = b
		offs[k+1] = len(b)
		g.i++
	}
	for k, r := range records {
		*r = pipeline.Record{Value: g.arena[offs[k]:offs[k+1]:offs[k+1]]}
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			panic(err)
		}
	}
}

const p2Window = `      - window:
          tumbling: 1m
          event_time: ts
          watermark: 5s
          group_by: [service, level]
          parallelism: %d
          aggregate:
            n: count()
            errors: 'sum(status >= 500 ? 1 : 0)' # quoted: ": " is not allowed in a plain YAML scalar
            avg_ms: avg(latency_ms)
            p99_ms: quantile(latency_ms, 0.99)
`

// benchOperator feeds records from fill through op in batches of 1024,
// with the timer stopped while each batch is made (so that, as after a
// parse operator, the batch is warm in cache), and reports records/s.
func benchOperator(b *testing.B, op pipeline.Operator, fill func([]*pipeline.Record)) {
	const batch, chunk = 1024, 1
	records := pipeline.NewRecords(batch * chunk)
	batchBuf := make([]*pipeline.Record, 0, batch)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	done := 0
	var cpu int64
	for done < b.N {
		b.StopTimer()
		fill(records)
		b.StartTimer()
		cpu0 := windowBenchCPU()
		for c := 0; c < chunk && done < b.N; c++ {
			n := min(batch, b.N-done)
			bt := &pipeline.Batch{Records: append(batchBuf[:0], records[c*batch:c*batch+n]...)}
			if err := op.Process(ctx, bt); err != nil {
				b.Fatal(err)
			}
			if len(bt.Dead) > 0 {
				b.Fatalf("dead letter: %s %s", bt.Dead[0].Reason, bt.Dead[0].Error)
			}
			done += n
		}
		cpu += windowBenchCPU() - cpu0
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkWindowP2 is the operator of /work/shared/bench/p2-window.yaml
// on records shaped like gen_logs.py output (parsed, fields not yet
// decoded), in batches of 1024.
func BenchmarkWindowP2(b *testing.B) {
	for _, par := range []int{1, 2} {
		b.Run(fmt.Sprintf("parallelism=%d", par), func(b *testing.B) {
			g := newLogGen(42)
			benchOperator(b, newOperator(b, fmt.Sprintf(p2Window, par), nil), g.fill)
		})
	}
}

// BenchmarkWindowP2Parse is parsing alone (ParseJSONObject of the same
// lines), for comparison with BenchmarkWindowP2: it is the parse
// operator's share of the p2 pipeline.
func BenchmarkWindowP2Parse(b *testing.B) {
	g := newLogGen(42)
	records := pipeline.NewRecords(1024)
	g.fill(records)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := records[i%len(records)]
		_ = r.SetFields().ParseJSONObject(r.Value)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// keyGen makes records {"ts":..., "key":"k000042"} over nkeys keys in a
// shuffled cycle, stepping event time so that each key has about perWindow
// records in each one-minute window.
type keyGen struct {
	perm  []int
	i     int64
	step  time.Duration
	arena []byte
}

func newKeyGen(nkeys, perWindow int) *keyGen {
	rng := rand.New(rand.NewPCG(7, 7))
	return &keyGen{perm: rng.Perm(nkeys), step: time.Minute / time.Duration(nkeys*perWindow)}
}

func (g *keyGen) fill(records []*pipeline.Record) {
	g.arena = g.arena[:0]
	offs := make([]int, len(records)+1)
	for k := range records {
		b := append(g.arena, `{"ts":"`...)
		b = t0.Add(time.Duration(g.i)*g.step).AppendFormat(b, pipeline.TimeLayout)
		b = append(b, `","key":"k`...)
		b = strconv.AppendInt(b, int64(1000000+g.perm[int(g.i)%len(g.perm)]), 10)
		b = append(b, `"}`...)
		g.arena = b
		offs[k+1] = len(b)
		g.i++
	}
	for k, r := range records {
		*r = pipeline.Record{Value: g.arena[offs[k]:offs[k+1]:offs[k+1]]}
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			panic(err)
		}
	}
}

const manyKeysWindow = `      - window:
          tumbling: 1m
          event_time: ts
          watermark: 5s
          group_by: [key]
          parallelism: %d
          aggregate:
            n: count()
`

// BenchmarkWindowManyKeys is a keyed tumbling count over 100,000 distinct
// keys, each seen about 10 times per window (and, in the "new" variant,
// about once, so that nearly every record opens a window).
func BenchmarkWindowManyKeys(b *testing.B) {
	for _, tc := range []struct {
		name      string
		perWindow int
		par       int
	}{{"10_per_window", 10, 1}, {"1_per_window", 1, 1}, {"10_per_window/parallelism=2", 10, 2}} {
		b.Run(tc.name, func(b *testing.B) {
			g := newKeyGen(100_000, tc.perWindow)
			benchOperator(b, newOperator(b, fmt.Sprintf(manyKeysWindow, tc.par), nil), g.fill)
		})
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkWindowMemory measures the heap held per open window (one group
// in one window), reported as bytes/window: groups with a few records each
// in one open window, for a count-only window and for the p2 aggregates
// (count, sum, avg, quantile), and for the p2 aggregates with 300 values
// per window (past the quantile sketch's switch to dense stores).
func BenchmarkWindowMemory(b *testing.B) {
	const p2 = "aggregate: {n: count(), e: 'sum(n >= 3 ? 1 : 0)', a: avg(lat), p: 'quantile(lat, 0.99)'}"
	for _, tc := range []struct {
		name         string
		keys, perKey int
		yaml         string
	}{
		{"count", 100_000, 5, windowYAML("tumbling: 1h", "event_time: ts", "group_by: [key]", "aggregate: {n: count()}")},
		{"p2_aggregates", 100_000, 5, windowYAML("tumbling: 1h", "event_time: ts", "group_by: [key]", p2)},
		{"p2_aggregates_300_values", 1_000, 300, windowYAML("tumbling: 1h", "event_time: ts", "group_by: [key]", p2)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				op := newOperator(b, tc.yaml, nil)
				records := pipeline.NewRecords(1024)
				rng := rand.New(rand.NewPCG(1, 2))
				before := heapInUse()
				for i := 0; i < tc.keys*tc.perKey; i += len(records) {
					for k, r := range records {
						n := i + k
						line := append([]byte(`{"ts":"`), at(time.Duration(n)*time.Millisecond)...)
						line = append(line, `","key":"k`...)
						line = strconv.AppendInt(line, int64(1000000+n%tc.keys), 10)
						line = append(line, `","n":`...)
						line = strconv.AppendInt(line, int64(n/tc.keys), 10)
						line = append(line, `,"lat":`...)
						line = strconv.AppendFloat(line, rng.ExpFloat64()*45, 'f', 3, 64)
						line = append(line, '}')
						*r = pipeline.Record{Value: line}
						_ = r.SetFields().ParseJSONObject(r.Value)
					}
					bt := &pipeline.Batch{Records: append([]*pipeline.Record(nil), records...)}
					if err := op.Process(context.Background(), bt); err != nil || len(bt.Records) != 0 {
						b.Fatalf("err %v, %d records out", err, len(bt.Records))
					}
				}
				clear(records)
				after := heapInUse()
				b.ReportMetric(float64(after-before)/float64(tc.keys), "bytes/window")
				runtime.KeepAlive(op)
			}
		})
	}
}

// BenchmarkDedupe measures dedupe over 1,000,000 distinct request ids,
// each repeated about once (half the records are duplicates), and the heap
// held per remembered key.
func BenchmarkDedupe(b *testing.B) {
	op := newOperator(b, dedupeYAML("key: id, horizon: 10m, event_time: ts, max_keys: 1000000"), nil)
	var i int64
	arena := []byte{}
	fill := func(records []*pipeline.Record) {
		arena = arena[:0]
		offs := make([]int, len(records)+1)
		for k := range records {
			arena = append(arena, `{"ts":"`...)
			arena = t0.Add(time.Duration(i)*100*time.Microsecond).AppendFormat(arena, pipeline.TimeLayout)
			arena = append(arena, `","id":"req-`...)
			arena = strconv.AppendInt(arena, i/2, 16)
			arena = append(arena, `"}`...)
			offs[k+1] = len(arena)
			i++
		}
		for k, r := range records {
			*r = pipeline.Record{Value: arena[offs[k]:offs[k+1]:offs[k+1]]}
			_ = r.SetFields().ParseJSONObject(r.Value)
		}
	}
	before := heapInUse()
	benchOperator(b, op, fill)
	if keys := op.(*Dedupe).Keys(); keys > 1000 {
		b.ReportMetric(float64(heapInUse()-before)/float64(keys), "bytes/key")
	}
	runtime.KeepAlive(op)
}
