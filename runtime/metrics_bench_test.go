package runtime_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/runtime"
)

// BenchmarkMetricsOverhead runs the same pipeline (count source → parse →
// filter → map → file sink, exactly-once, 100,000 records) without
// telemetry ("off") and with it, scraped (/metrics rendered) every 100 ms
// ("on") — an aggressive interval; Prometheus defaults to 1 min. Each
// iteration runs both, in alternating order, so that a change in the
// machine's load hits both alike, and the overhead is the median of the
// per-iteration ratios on/off, of wall time and of process CPU time
// (user+system). It also reports each mode's median ns per record.
//
//	go test -run XXX -bench MetricsOverhead -benchtime 31x ./runtime
func BenchmarkMetricsOverhead(b *testing.B) {
	const n = 100000
	dir := b.TempDir()
	var wall, cpu [2][]float64 // [off, on] ns per record
	var wallRatio, cpuRatio []float64
	for i := 0; b.Loop(); i++ {
		var w, c [2]float64
		for k := range 2 {
			on := (i+k)%2 == 1 // alternate which goes first
			idx := 0
			if on {
				idx = 1
			}
			w[idx], c[idx] = runOverheadOnce(b, fmt.Sprintf("%s/%d-%v", dir, i, on), n, on)
			wall[idx] = append(wall[idx], w[idx]/n)
			cpu[idx] = append(cpu[idx], c[idx]/n)
		}
		wallRatio = append(wallRatio, w[1]/w[0])
		cpuRatio = append(cpuRatio, c[1]/c[0])
	}
	med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(wall[0]), "off-wall-ns/record")
	b.ReportMetric(med(wall[1]), "on-wall-ns/record")
	b.ReportMetric(med(cpu[0]), "off-cpu-ns/record")
	b.ReportMetric(med(cpu[1]), "on-cpu-ns/record")
	b.ReportMetric(100*(med(wallRatio)-1), "wall-overhead-%")
	b.ReportMetric(100*(med(cpuRatio)-1), "cpu-overhead-%")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runOverheadOnce runs the pipeline once and returns its wall and CPU
// nanoseconds.
func runOverheadOnce(b *testing.B, dir string, n int, on bool) (wall, cpu float64) {
	cfg, err := registry().Load("bench.yaml", []byte(config(dir, fmt.Sprintf("{n: %d, positioned: true}", n), "exactly_once")))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := runtime.Options{}
	var tel *runtime.Telemetry
	scraped := make(chan struct{})
	if on {
		tel, err = runtime.NewTelemetry(ctx, runtime.TelemetryOptions{Getenv: func(string) string { return "" }})
		if err != nil {
			b.Fatal(err)
		}
		opts = tel.RunOptions(opts)
		h := tel.MetricsHandler()
		go func() {
			defer close(scraped)
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
					if rec.Code != 200 {
						panic(rec.Body.String())
					}
				}
			}
		}()
	} else {
		close(scraped)
	}
	start, c0 := time.Now(), cpuTime()
	if err := runtime.Run(ctx, cfg, nil, nil, opts); err != nil {
		b.Fatal(err)
	}
	wall, cpu = float64(time.Since(start)), float64(cpuTime()-c0)
	cancel()
	<-scraped
	if tel != nil {
		_ = tel.Shutdown(context.Background())
	}
	return wall, cpu
}

// BenchmarkBatchHooks is the per-batch cost the stages pay whether or not
// metrics are collected: two clock reads and a histogram observation.
func BenchmarkBatchHooks(b *testing.B) {
	var h runtime.DurationHistogram
	for b.Loop() {
		began := time.Now()
		h.Observe(time.Since(began))
	}
}

// BenchmarkScrape is the cost of one Prometheus scrape of a pipeline with
// one source, three operators and one sink (every series of the metric
// table): the collection cost, paid per scrape, not per record.
func BenchmarkScrape(b *testing.B) {
	ctx := context.Background()
	tel, err := runtime.NewTelemetry(ctx, runtime.TelemetryOptions{Getenv: func(string) string { return "" }})
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	cfg, err := registry().Load("bench.yaml", []byte(config(b.TempDir(), "{n: 1000, positioned: true}", "exactly_once")))
	if err != nil {
		b.Fatal(err)
	}
	if err := runtime.Run(ctx, cfg, nil, nil, tel.RunOptions(runtime.Options{})); err != nil {
		b.Fatal(err)
	}
	h := tel.MetricsHandler()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Body.String())
		}
	}
}

func TestDurationHistogramBuckets(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0}, {100 * time.Microsecond, 0}, {100*time.Microsecond + 1, 1}, {200 * time.Microsecond, 1},
		{200*time.Microsecond + 1, 2}, {time.Second, 14}, {time.Hour, len(runtime.HistogramBounds)},
	} {
		var h runtime.DurationHistogram
		h.Observe(tc.d)
		b, count, sum := h.Snapshot()
		if count != 1 || sum != tc.d || b[tc.want] != 1 {
			t.Errorf("Observe(%v): buckets %v, want bucket %d", tc.d, b, tc.want)
		}
		if tc.want < len(runtime.HistogramBounds) {
			if ub := runtime.HistogramBounds[tc.want]; tc.d.Seconds() > ub+1e-12 {
				t.Errorf("Observe(%v) in bucket %d whose bound is %v s", tc.d, tc.want, ub)
			}
		}
	}
}
