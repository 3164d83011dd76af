package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// jitterConfig is a stateless test operator: it parses {"i": n}, sends
// every record with i divisible by 7 to the dead-letter output, and sleeps
// a random time per batch, so that with several workers later batches
// often finish first. fail_at makes it fail on that i.
type jitterConfig struct {
	FailAt int `yaml:"fail_at"`
}

func (c *jitterConfig) NewOperator(pipeline.Build) (pipeline.Operator, error) {
	return &jitter{failAt: c.FailAt, rng: rand.New(rand.NewPCG(rand.Uint64(), 0))}, nil
}

type jitter struct {
	failAt int
	rng    *rand.Rand // one instance per worker: not shared
}

func (j *jitter) Stateless() bool { return true }

func (j *jitter) Process(_ context.Context, b *pipeline.Batch) error {
	time.Sleep(time.Duration(j.rng.IntN(400)) * time.Microsecond)
	out := b.Records[:0]
	for _, r := range b.Records {
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			return err
		}
		i := r.Get("i")
		n := int(i.(int64))
		if j.failAt > 0 && n == j.failAt {
			return fmt.Errorf("injected failure at %d", n)
		}
		if n%7 == 0 {
			b.Reject(r, "jitter", "sevens", nil)
			continue
		}
		out = append(out, r)
	}
	b.Records = out
	return nil
}

func parallelConfig(dir, src, ops string) *pipeline.Config {
	r := registry()
	r.Register(pipeline.Entry{Kind: pipeline.KindOperator, Name: "jitter", NewConfig: func() any { return &jitterConfig{} }})
	cfg, err := r.Load("test.yaml", fmt.Appendf(nil, `
data_dir: %[1]s/data
pipelines:
  - name: t
    guarantee: exactly_once
    checkpoint_interval: 5ms
    batch_size: 16
    sources:
      - count: %[2]s
    operators:
%[3]s
    sinks:
      - file: { path: %[1]s/out.jsonl }
    dead_letter:
      file: { path: %[1]s/dead.jsonl }
`, dir, src, ops))
	if err != nil {
		panic(err)
	}
	return cfg
}

func runWorkers(t *testing.T, cfg *pipeline.Config, workers int) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return runtime.Run(ctx, cfg, nil, nil, runtime.Options{Workers: workers})
}

// The leading stateless operators run on several workers, and the stream
// after them is the stream one goroutine would make: records, dead letters
// and watermarks each in their place.
func TestParallelStatelessPrefixKeepsStreamOrder(t *testing.T) {
	const n = 6000
	ops := "      - jitter: {}\n      - map: { k: 'i * 2' }\n      - wmtrace: {}"
	outputs := map[int][2]string{}
	for _, workers := range []int{1, 4} {
		dir := t.TempDir()
		cfg := parallelConfig(dir, fmt.Sprintf("{n: %d, watermarks: true}", n), ops)
		if err := runWorkers(t, cfg, workers); err != nil {
			t.Fatal(err)
		}
		out, dead := readLines(t, dir+"/out.jsonl"), readLines(t, dir+"/dead.jsonl")

		// Independently of the one-worker run: records in input order, each
		// watermark after exactly the records read before it.
		next, wms, seen := 0, 0, 0
		for _, l := range out {
			var v struct {
				I, K, WM *int
			}
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("workers=%d: %q: %v", workers, l, err)
			}
			switch {
			case v.WM != nil:
				// The source's watermark is the count of records read so far
				// (i < wm); of those, kept(wm) pass the jitter operator.
				if seen != kept(*v.WM) {
					t.Fatalf("workers=%d: watermark %d after %d records, want %d", workers, *v.WM, seen, kept(*v.WM))
				}
				wms++
			case v.I != nil:
				for next%7 == 0 {
					next++
				}
				if *v.I != next || *v.K != 2*next {
					t.Fatalf("workers=%d: got %s, want i=%d", workers, l, next)
				}
				next++
				seen++
			}
		}
		if seen != kept(n) || wms == 0 {
			t.Fatalf("workers=%d: %d records and %d watermarks out, want %d records", workers, seen, wms, kept(n))
		}
		if len(dead) != n-kept(n) {
			t.Fatalf("workers=%d: %d dead letters, want %d", workers, len(dead), n-kept(n))
		}
		for k, l := range dead {
			var d struct{ Reason, Value string }
			if err := json.Unmarshal([]byte(l), &d); err != nil || d.Reason != "sevens" || d.Value != fmt.Sprintf(`{"i":%d}`, 7*k) {
				t.Fatalf("workers=%d: dead letter %d = %s, want i=%d (%v)", workers, k, l, 7*k, err)
			}
		}
		outputs[workers] = [2]string{strings.Join(out, "\n"), strings.Join(dead, "\n")}
	}
	if outputs[1] != outputs[4] {
		t.Fatal("4 workers wrote a different stream than 1")
	}
}

// kept is how many of i = 0..n-1 the jitter operator passes on: those not
// divisible by 7.
func kept(n int) int { return n - (n+6)/7 }

// A failure in a worker stops the pipeline with that error, and nothing
// past the last checkpoint is committed; a rerun without the failure
// completes exactly once.
func TestParallelWorkerErrorStopsPipeline(t *testing.T) {
	dir := t.TempDir()
	err := runWorkers(t, parallelConfig(dir, "{n: 4000, positioned: true}", "      - jitter: { fail_at: 2500 }"), 2)
	if err == nil || !strings.Contains(err.Error(), "injected failure at 2500") {
		t.Fatalf("err = %v, want the worker's failure", err)
	}
	// What the failed run committed is a prefix of the output, in order,
	// from before the failure.
	var committed []string
	if data, err := os.ReadFile(dir + "/out.jsonl"); err == nil && len(data) > 0 {
		committed = readLines(t, dir+"/out.jsonl")
	}
	wantKept(t, committed, len(committed))
	if len(committed) > kept(2500) {
		t.Fatalf("%d records committed before a failure at i=2500", len(committed))
	}
	if err := runWorkers(t, parallelConfig(dir, "{n: 4000, positioned: true}", "      - jitter: {}"), 2); err != nil {
		t.Fatal(err)
	}
	wantKept(t, readLines(t, dir+"/out.jsonl"), kept(4000))
	if dead := readLines(t, dir+"/dead.jsonl"); len(dead) != 4000-kept(4000) {
		t.Fatalf("%d dead letters after rerun, want %d", len(dead), 4000-kept(4000))
	}
}

// wantKept checks that out is exactly the first n records the jitter
// operator passes on, {"i":k} for k not divisible by 7, in order.
func wantKept(t *testing.T, out []string, n int) {
	t.Helper()
	if len(out) != n {
		t.Fatalf("%d records, want %d", len(out), n)
	}
	next := 0
	for _, l := range out {
		for next%7 == 0 {
			next++
		}
		if want := fmt.Sprintf(`{"i":%d}`, next); l != want {
			t.Fatalf("got %s, want %s", l, want)
		}
		next++
	}
}
