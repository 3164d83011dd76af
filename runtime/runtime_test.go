package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
	_ "github.com/weirhq/weir/sinks"
	"github.com/weirhq/weir/wal"
)

// countConfig is a test source emitting records {"i": 0..N-1}. With
// positioned: true it can replay from a position; otherwise the runtime
// must feed it through the WAL. failAfter makes Read fail once that many
// records were emitted in this process (a crash stand-in).
type countConfig struct {
	N          int  `yaml:"n"`
	Positioned bool `yaml:"positioned"`
	FailAfter  int  `yaml:"fail_after"`
	WithIDs    bool `yaml:"with_ids"`
	// RequestAt makes the source call Build.RequestCheckpoint (from another
	// goroutine, as a rebalance callback would) once it has emitted this
	// many records, and report the position covered to requested.
	RequestAt int `yaml:"request_at"`
	// Watermarks makes the source report a watermark (unix ms = records
	// emitted so far) after every Read.
	Watermarks bool `yaml:"watermarks"`
	// FirstReadDelay makes the first Read of this process wait (a slow
	// broker, a quiet queue).
	FirstReadDelay time.Duration `yaml:"first_read_delay"`
	// DedupeWindow is the horizon of the ids (with_ids), as the sources
	// with message ids have it.
	DedupeWindow *pipeline.DedupeWindow `yaml:"dedupe_window"`
	// ResendFrom is where a source with_ids starts again (default 0).
	ResendFrom int `yaml:"resend_from"`
}

func (c *countConfig) SeenIDWindow() pipeline.DedupeWindow {
	if c.DedupeWindow == nil {
		return pipeline.DefaultDedupeWindow()
	}
	return *c.DedupeWindow
}

// requested receives, per RequestCheckpoint call, the error and the number
// of records emitted before the call.
var requested = make(chan [2]any, 1)

// acked models a broker's acknowledged position, per data dir, across the
// runs of one test: a non-positioned source restarts from the first
// message that was never acknowledged, as a queue redelivers (unless
// with_ids, where it redelivers everything and the WAL must drop what it
// already holds).
var (
	brokerMu sync.Mutex
	brokers  = map[string]*atomic.Int64{}
)

func broker(dir string) *atomic.Int64 {
	brokerMu.Lock()
	defer brokerMu.Unlock()
	if brokers[dir] == nil {
		brokers[dir] = new(atomic.Int64)
	}
	return brokers[dir]
}

func (c *countConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	s := &countSource{cfg: *c, batch: b.BatchSize, acked: broker(b.Dir), request: b.RequestCheckpoint}
	if c.Watermarks {
		return &watermarkCount{s}, nil
	}
	if c.Positioned {
		return &positionedCount{s}, nil
	}
	if !c.WithIDs {
		s.next = int(s.acked.Load())
	} else {
		s.next = c.ResendFrom
	}
	return s, nil
}

type countSource struct {
	request func(context.Context) error
	acked   *atomic.Int64
	cfg     countConfig
	next    int
	emitted int
	batch   int
}

func (s *countSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	if d := s.cfg.FirstReadDelay; d > 0 {
		s.cfg.FirstReadDelay = 0
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.next >= s.cfg.N {
		return nil, io.EOF
	}
	if s.cfg.FailAfter > 0 && s.emitted >= s.cfg.FailAfter {
		return nil, errors.New("injected failure")
	}
	n := min(s.batch, s.cfg.N-s.next, 100)
	recs := pipeline.NewRecords(n)
	for i := range n {
		r := recs[i]
		r.Value = fmt.Appendf(nil, `{"i":%d}`, s.next)
		if s.cfg.WithIDs {
			r.Origin.ID = fmt.Sprint(s.next)
		}
		b.Records = append(b.Records, r)
		s.next++
		s.emitted++
	}
	end := int64(s.next)
	if s.cfg.RequestAt > 0 && s.next >= s.cfg.RequestAt && s.request != nil {
		req, before := s.request, s.next
		s.request = nil
		go func() { requested <- [2]any{req(context.Background()), before} }()
	}
	return func(context.Context) error {
		if end <= s.acked.Load() {
			return fmt.Errorf("ack out of order: %d after %d", end, s.acked.Load())
		}
		s.acked.Store(end)
		return nil
	}, nil
}

func (s *countSource) Close(context.Context) error { return nil }

type positionedCount struct{ *countSource }

func (p *positionedCount) Position() ([]byte, error) { return json.Marshal(p.next) }
func (p *positionedCount) Seek(_ context.Context, pos []byte) error {
	return json.Unmarshal(pos, &p.next)
}

type watermarkCount struct{ *countSource }

func (w *watermarkCount) Watermark() (time.Time, bool) { return time.UnixMilli(int64(w.next)), true }

// wmTrace is an operator that turns every watermark it sees into a record
// {"wm": ms, "source": i}.
type wmTraceConfig struct{}

func (wmTraceConfig) NewOperator(pipeline.Build) (pipeline.Operator, error) { return wmTrace{}, nil }

type wmTrace struct{}

func (wmTrace) Process(context.Context, *pipeline.Batch) error { return nil }
func (wmTrace) OnWatermark(_ context.Context, source int, wm time.Time, b *pipeline.Batch) error {
	r := &pipeline.Record{}
	r.SetFields().Set("wm", wm.UnixMilli())
	r.Set("source", int64(source))
	b.Records = append(b.Records, r)
	return nil
}

func registry() *pipeline.Registry {
	r := pipeline.Default.Clone()
	r.Register(pipeline.Entry{Kind: pipeline.KindSource, Name: "count", NewConfig: func() any { return &countConfig{} }})
	r.Register(pipeline.Entry{Kind: pipeline.KindOperator, Name: "jsonparse", NewConfig: func() any { return &jsonParseConfig{} }})
	r.Register(pipeline.Entry{Kind: pipeline.KindOperator, Name: "wmtrace", NewConfig: func() any { return &wmTraceConfig{} }})
	return r
}

// jsonParseConfig is a minimal JSON parse step, so these tests do not
// depend on the parse operator.
type jsonParseConfig struct{}

func (jsonParseConfig) NewOperator(pipeline.Build) (pipeline.Operator, error) {
	return jsonParse{}, nil
}

type jsonParse struct{}

func (jsonParse) Process(_ context.Context, b *pipeline.Batch) error {
	for _, r := range b.Records {
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			return err
		}
	}
	return nil
}

func load(t *testing.T, yaml string) *pipeline.Config {
	t.Helper()
	cfg, err := registry().Load("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return cfg
}

func runOnce(t *testing.T, cfg *pipeline.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return runtime.Run(ctx, cfg, nil, nil, runtime.Options{})
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// wantEvens checks the output holds exactly the even i in 0..n-1, in order.
func wantEvens(t *testing.T, lines []string, n int) {
	t.Helper()
	if len(lines) != n/2 {
		t.Fatalf("got %d lines, want %d", len(lines), n/2)
	}
	for k, l := range lines {
		want := fmt.Sprintf(`{"i":%d,"even":true}`, 2*k)
		if l != want {
			t.Fatalf("line %d = %s, want %s", k, l, want)
		}
	}
}

func config(dir, src, guarantee string) string {
	return fmt.Sprintf(`
data_dir: %s/data
pipelines:
  - name: t
    guarantee: %s
    checkpoint_interval: 20ms
    batch_size: 64
    sources:
      - count: %s
    operators:
      - jsonparse: {}
      - filter: 'i %% 2 == 0'
      - map: { even: 'true' }
    sinks:
      - file: { path: %s/out.jsonl }
`, dir, guarantee, src, dir)
}

func TestFiniteRunCommitsEverythingOnceAndRerunAddsNothing(t *testing.T) {
	for _, positioned := range []bool{true, false} {
		t.Run(fmt.Sprintf("positioned=%v", positioned), func(t *testing.T) {
			dir := t.TempDir()
			cfg := load(t, config(dir, fmt.Sprintf("{n: 5000, positioned: %v}", positioned), "exactly_once"))
			if err := runOnce(t, cfg); err != nil {
				t.Fatal(err)
			}
			wantEvens(t, readLines(t, dir+"/out.jsonl"), 5000)
			if err := runOnce(t, cfg); err != nil {
				t.Fatal(err)
			}
			wantEvens(t, readLines(t, dir+"/out.jsonl"), 5000)
			staged, _ := filepath.Glob(filepath.Join(dir, "data/t/*/staging/*"))
			if len(staged) != 0 {
				t.Fatalf("staging files left behind: %v", staged)
			}
		})
	}
}

// A failure mid-run keeps the last checkpoint; the restart resumes from it
// and the committed output ends up exactly once.
func TestFailureThenRestartIsExactlyOnce(t *testing.T) {
	for _, positioned := range []bool{true, false} {
		t.Run(fmt.Sprintf("positioned=%v", positioned), func(t *testing.T) {
			dir := t.TempDir()
			failing := load(t, config(dir, fmt.Sprintf("{n: 20000, positioned: %v, fail_after: 7000}", positioned), "exactly_once"))
			err := runOnce(t, failing)
			if err == nil || !strings.Contains(err.Error(), "injected failure") {
				t.Fatalf("first run: got %v, want the injected failure", err)
			}
			// Part of the output may be committed already, never more than once.
			cfg := load(t, config(dir, fmt.Sprintf("{n: 20000, positioned: %v}", positioned), "exactly_once"))
			if err := runOnce(t, cfg); err != nil {
				t.Fatal(err)
			}
			wantEvens(t, readLines(t, dir+"/out.jsonl"), 20000)
		})
	}
}

// Under at_least_once the sink writes as it goes and sources are acked only
// after the checkpoint that covers their records.
func TestAtLeastOnceAcksAfterCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := load(t, config(dir, "{n: 3000}", "at_least_once"))
	if err := runOnce(t, cfg); err != nil {
		t.Fatal(err)
	}
	wantEvens(t, readLines(t, dir+"/out.jsonl"), 3000)
	if got := broker(filepath.Join(dir, "data/t/sources-0-count")).Load(); got != 3000 {
		t.Fatalf("acked %d records, want 3000", got)
	}
}

// A redelivered message (same id) that is already in the WAL is dropped.
func TestWALDropsRedeliveredIDs(t *testing.T) {
	dir := t.TempDir()
	failing := load(t, config(dir, "{n: 4000, with_ids: true, fail_after: 1500}", "exactly_once"))
	if err := runOnce(t, failing); err == nil {
		t.Fatal("want the injected failure")
	}
	// The restarted source sends everything again from 0, as a broker
	// redelivers what it never saw acknowledged; ids already in the WAL
	// must not reach the output twice.
	cfg := load(t, config(dir, "{n: 4000, with_ids: true}", "exactly_once"))
	if err := runOnce(t, cfg); err != nil {
		t.Fatal(err)
	}
	wantEvens(t, readLines(t, dir+"/out.jsonl"), 4000)
}

// An ingest WAL damaged in the middle stops the pipeline at start-up with
// the damage and the command that reports it; nothing is skipped.
func TestCorruptIngestWALStopsWithVerifyHint(t *testing.T) {
	dir := t.TempDir()
	if err := runOnce(t, load(t, config(dir, "{n: 4000, fail_after: 1500}", "exactly_once"))); err == nil {
		t.Fatal("want the injected failure")
	}
	walDir := filepath.Join(dir, "data/t/sources-0-count/wal")
	segs, _ := filepath.Glob(filepath.Join(walDir, "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("WAL segments %v, want one", segs)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[24+8+2] ^= 0xff // the first entry's payload; others follow it
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = runOnce(t, load(t, config(dir, "{n: 4000}", "exactly_once")))
	var ce *wal.CorruptionError
	if !errors.As(err, &ce) || ce.Offset != 24 {
		t.Fatalf("restart on a damaged WAL: %v; want a *wal.CorruptionError at offset 24", err)
	}
	if want := "run `weir wal verify " + walDir + "`"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
}

func TestGracefulStopTakesFinalCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := load(t, config(dir, "{n: 100000000, positioned: true}", "exactly_once"))
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runtime.Run(context.Background(), cfg, nil, stop, runtime.Options{}) }()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pipeline did not stop")
	}
	store := &runtime.CheckpointStore{Dir: runtime.CheckpointDir(cfg, "t")}
	c, err := store.Latest()
	if err != nil || c == nil {
		t.Fatalf("no checkpoint after graceful stop: %v", err)
	}
	var next int
	if err := json.Unmarshal(c.Sources[0].State, &next); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, dir+"/out.jsonl")
	if want := (next + 1) / 2; len(lines) != want {
		t.Fatalf("final checkpoint at record %d but %d lines committed, want %d", next, len(lines), want)
	}
}

// RequestCheckpoint returns once a checkpoint covering everything the
// source returned before the call is durable.
func TestRequestCheckpointCoversEverythingReadBefore(t *testing.T) {
	dir := t.TempDir()
	cfg := load(t, strings.Replace(config(dir, "{n: 100000000, positioned: true, request_at: 5000}", "exactly_once"),
		"checkpoint_interval: 20ms", "checkpoint_interval: 1h", 1))
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runtime.Run(context.Background(), cfg, nil, stop, runtime.Options{}) }()
	var got [2]any
	select {
	case got = <-requested:
	case <-time.After(20 * time.Second):
		t.Fatal("RequestCheckpoint did not return")
	}
	if got[0] != nil {
		t.Fatalf("RequestCheckpoint: %v", got[0])
	}
	store := &runtime.CheckpointStore{Dir: runtime.CheckpointDir(cfg, "t")}
	c, err := store.Latest()
	if err != nil || c == nil {
		t.Fatalf("no checkpoint after RequestCheckpoint (interval is 1h): %v", err)
	}
	var next int
	if err := json.Unmarshal(c.Sources[0].State, &next); err != nil {
		t.Fatal(err)
	}
	if before := got[1].(int); next < before {
		t.Fatalf("checkpoint covers %d records, but %d were returned before the request", next, before)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Watermarks travel in band: each arrives after the records it follows and
// before any later one, and passes operators that do not handle them.
func TestWatermarksFlowInBand(t *testing.T) {
	dir := t.TempDir()
	cfg := load(t, fmt.Sprintf(`
data_dir: %[1]s/data
pipelines:
  - name: t
    checkpoint_interval: 20ms
    batch_size: 64
    sources:
      - count: {n: 1000, positioned: true, watermarks: true}
    operators:
      - jsonparse: {}
      - filter: 'i == nil || i %% 2 == 0'
      - wmtrace: {}
    sinks:
      - file: { path: %[1]s/out.jsonl }
`, dir))
	if err := runOnce(t, cfg); err != nil {
		t.Fatal(err)
	}
	seen, marks, last := 0, 0, int64(-1)
	for _, l := range readLines(t, dir+"/out.jsonl") {
		var rec struct {
			I  *int64 `json:"i"`
			WM *int64 `json:"wm"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		switch {
		case rec.WM != nil:
			marks++
			if *rec.WM <= last || *rec.WM != int64(2*seen) && *rec.WM != int64(2*seen-1) {
				t.Fatalf("watermark %d after %d even records (previous watermark %d)", *rec.WM, seen, last)
			}
			last = *rec.WM
		case rec.I != nil:
			if *rec.I < last {
				t.Fatalf("record %d after watermark %d", *rec.I, last)
			}
			seen++
		}
	}
	if seen != 500 || marks < 10 || last != 1000 {
		t.Fatalf("%d records, %d watermarks, last %d", seen, marks, last)
	}
}

// A checkpoint taken before a restored source's first Read returns keeps
// the restored position; an empty one would make the next start replay
// everything (found by the RabbitMQ kill test).
func TestCheckpointBeforeFirstReadKeepsRestoredPosition(t *testing.T) {
	for _, positioned := range []bool{true, false} {
		t.Run(fmt.Sprintf("positioned=%v", positioned), func(t *testing.T) {
			dir := t.TempDir()
			if err := runOnce(t, load(t, config(dir, fmt.Sprintf("{n: 3000, positioned: %v}", positioned), "exactly_once"))); err != nil {
				t.Fatal(err)
			}
			// Restart; the first Read takes long; checkpoints happen meanwhile;
			// then a graceful stop.
			slow := load(t, config(dir, fmt.Sprintf("{n: 3000, positioned: %v, first_read_delay: 10s}", positioned), "exactly_once"))
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() { done <- runtime.Run(context.Background(), slow, nil, stop, runtime.Options{}) }()
			time.Sleep(300 * time.Millisecond)
			close(stop)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			store := &runtime.CheckpointStore{Dir: runtime.CheckpointDir(slow, "t")}
			c, err := store.Latest()
			if err != nil || c == nil || len(c.Sources[0].State) == 0 {
				t.Fatalf("checkpoint after a restart with no Read has no source position: %+v, %v", c, err)
			}
			// And a third run adds nothing: the WAL is not replayed again.
			if err := runOnce(t, load(t, config(dir, fmt.Sprintf("{n: 3000, positioned: %v}", positioned), "exactly_once"))); err != nil {
				t.Fatal(err)
			}
			wantEvens(t, readLines(t, dir+"/out.jsonl"), 3000)
		})
	}
}
