package nexmark

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// benchEvents is how many events one benchmark iteration generates;
// NEXMARK_EVENTS overrides it.
func benchEvents(b *testing.B) int64 {
	if s := os.Getenv("NEXMARK_EVENTS"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("NEXMARK_EVENTS=%q: want a positive count", s)
		}
		return n
	}
	return 2_000_000
}

// benchQuery runs examples/nexmark/<q>.yaml with its file sink replaced by
// a blackhole, as Flink's reference runs do (except q10, which writes its
// files to a temporary directory), on benchEvents events at 10 M
// events/s of event time (the Flink workload's rate), exactly_once with
// the file's checkpoint interval, and reports events/s of wall time and
// events per CPU-second of the whole process (user + system, every
// goroutine): the per-core throughput the Nexmark project publishes.
//
//	go test -run XXX -bench NexmarkQ -benchtime 1x -count 5 ./examples/nexmark/
func benchQuery(b *testing.B, q string) {
	text, err := os.ReadFile(q + ".yaml")
	if err != nil {
		b.Fatal(err)
	}
	if q != "q10" { // q10 is about writing files: it keeps its sink
		sink := `- file: { path: "${OUT:-out/nexmark/` + q + `.jsonl}" }`
		if !strings.Contains(string(text), sink) {
			b.Fatalf("%s.yaml has no line %s", q, sink)
		}
		text = []byte(strings.Replace(string(text), sink, "- blackhole: {}", 1))
	}
	// weir's main sets the GC target to 200 % unless GOGC is set
	// (tuning.go); measure what `weir run` does.
	if _, set := os.LookupEnv("GOGC"); !set {
		defer debug.SetGCPercent(debug.SetGCPercent(200))
	}
	n := benchEvents(b)
	dir := b.TempDir()
	b.Setenv("EVENTS", fmt.Sprint(n))
	b.Setenv("EVENT_RATE", "10000000")
	b.Setenv("SEED", "1")
	var cpu int64
	for i := 0; b.Loop(); i++ {
		b.Setenv("DATA", filepath.Join(dir, fmt.Sprint(i)))
		b.Setenv("OUT", filepath.Join(dir, fmt.Sprint(i), "out"))
		cfg, err := pipeline.Default.Load(q+".yaml", text)
		if err != nil {
			b.Fatal(err)
		}
		cpu0 := processCPU()
		if err := runtime.Run(context.Background(), cfg, nil, nil, runtime.Options{}); err != nil {
			b.Fatal(err)
		}
		cpu += processCPU() - cpu0
	}
	events := float64(n) * float64(b.N)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	if cpu > 0 {
		b.ReportMetric(events/(float64(cpu)/1e9), "events/cpu-s")
	}
	b.ReportMetric(0, "ns/op")
}

func BenchmarkNexmarkQ0(b *testing.B)  { benchQuery(b, "q0") }
func BenchmarkNexmarkQ1(b *testing.B)  { benchQuery(b, "q1") }
func BenchmarkNexmarkQ2(b *testing.B)  { benchQuery(b, "q2") }
func BenchmarkNexmarkQ5(b *testing.B)  { benchQuery(b, "q5") }
func BenchmarkNexmarkQ10(b *testing.B) { benchQuery(b, "q10") }
func BenchmarkNexmarkQ11(b *testing.B) { benchQuery(b, "q11") }
func BenchmarkNexmarkQ14(b *testing.B) { benchQuery(b, "q14") }
func BenchmarkNexmarkQ21(b *testing.B) { benchQuery(b, "q21") }
func BenchmarkNexmarkQ22(b *testing.B) { benchQuery(b, "q22") }
