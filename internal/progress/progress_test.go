package progress_test

import (
	"bytes"
	"context"
	"fmt"
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

// A log line written while status lines are on screen goes above them; it
// once deadlocked (the redraw took the display's lock a second time).
func TestWriteAboveDrawnStatusLines(t *testing.T) {
	tr := progress.NewTracker()
	tr.Track(&runtime.Stats{Pipeline: "p"})
	var buf syncBuffer
	d := progress.Start(&buf, tr, progress.Options{Interval: time.Hour})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "p ") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // the first draw happens at Start
	}
	done := make(chan struct{})
	go func() {
		fmt.Fprintln(d.Writer(), "a log line")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		// No d.Stop: it would wait for the same lock.
		t.Fatal("writing a log line above the status lines did not return (deadlock)")
	}
	d.Stop()
	out := buf.String()
	if i, j := strings.Index(out, "a log line"), strings.LastIndex(out, "p "); i < 0 || j < i {
		t.Fatalf("log line not written above a redrawn status line:\n%q", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
