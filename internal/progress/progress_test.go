package progress_test

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"

	"github.com/weirhq/weir/internal/progress"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// ticks is an endless source of small records.
type ticks struct{}

func (ticks) NewSource(pipeline.Build) (pipeline.Source, error) { return &tickSource{}, nil }

type tickSource struct{ n int }

func (s *tickSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Millisecond):
	}
	for range 10 {
		s.n++
		b.Records = append(b.Records, &pipeline.Record{Value: []byte(`{"x":1}`)})
	}
	return nil, nil
}

func (*tickSource) Close(context.Context) error { return nil }

// discard is a sink that drops everything.
type discard struct{}

func (discard) NewSink(pipeline.Build) (pipeline.Sink, error) { return discard{}, nil }
func (discard) Write(context.Context, *pipeline.Batch) error  { return nil }
func (discard) Close(context.Context) error                   { return nil }

func runTicks(t *testing.T, tr *progress.Tracker) (stop func()) {
	t.Helper()
	reg := pipeline.Default.Clone()
	reg.Register(pipeline.Entry{Kind: pipeline.KindSource, Name: "ticks", NewConfig: func() any { return &ticks{} }})
	reg.Register(pipeline.Entry{Kind: pipeline.KindSink, Name: "discard", NewConfig: func() any { return &discard{} }})
	cfg, err := reg.Load("p.yaml", []byte(`
data_dir: `+t.TempDir()+`
pipelines:
  - name: ticking
    guarantee: at_least_once
    checkpoint_interval: 50ms
    sources: [ {ticks: {}} ]
    sinks: [ {discard: {}} ]
`))
	if err != nil {
		t.Fatal(err)
	}
	stopc := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runtime.Run(context.Background(), cfg, nil, stopc, runtime.Options{OnStats: tr.Track}) }()
	return func() {
		close(stopc)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// The status line, drawn on a real pseudo-terminal, shows the rates, the
// checkpoint age and the dead letters, and log output appears above it.
func TestStatusLineOnPseudoTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if !term.IsTerminal(int(tty.Fd())) {
		t.Fatal("the pty slave is not a terminal")
	}
	var mu sync.Mutex
	var screen bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	tr := progress.NewTracker()
	stop := runTicks(t, tr)
	d := progress.Start(tty, tr, progress.Options{Interval: 50 * time.Millisecond, Width: func() int { return 120 }})
	io.WriteString(d.Writer(), "level=INFO msg=hello\n")
	line := regexp.MustCompile(`ticking  running\s+in [0-9.]+k?/s  out [0-9.]+k?/s  checkpoint [0-9.]+m?s ago  dead 0`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		s := screen.String()
		mu.Unlock()
		if line.MatchString(s) && strings.Contains(s, "msg=hello") && regexp.MustCompile(`in [1-9][0-9.]*k?/s`).MatchString(s) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no status line with a rate on the terminal; got %q", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.Stop()
	stop()
	var sum bytes.Buffer
	tr.Summary(&sum, time.Second)
	if !regexp.MustCompile(`^weir: ticking: [1-9][0-9]* records in, [1-9][0-9]* out, 0 dead-lettered, [1-9][0-9]* checkpoints`).MatchString(sum.String()) {
		t.Fatalf("summary = %q", sum.String())
	}
}

func TestLine(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	got := progress.Line(progress.Totals{Name: "p", State: runtime.StateRunning, Dead: 3, LastCheckpoint: now.Add(-1500 * time.Millisecond), Restarts: 1}, 12500, 900, now)
	want := "p  running   in 12k/s  out 900/s  checkpoint 1.5s ago  dead 3  reloaded 1×"
	if got != want {
		t.Fatalf("Line = %q, want %q", got, want)
	}
}
