// Package progress shows how `weir run` is doing: one live status line
// per pipeline on a terminal (records per second in and out, age of the
// last checkpoint, dead letters), redrawn in place, and the summary
// printed when the run ends.
//
//	tr := progress.NewTracker()
//	opts.OnStats = tr.Track
//	d := progress.Start(os.Stderr, tr, progress.Options{})
//	logger := slog.New(slog.NewTextHandler(d.Writer(), nil)) // logs print above the lines
//	... run ...
//	d.Stop()
//	tr.Summary(os.Stderr, time.Since(start))
package progress

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weirhq/weir/runtime"
)

// Totals are one pipeline's figures, summed over its runs (a reload
// restarts a pipeline with new Stats).
type Totals struct {
	Name               string
	State              runtime.PipelineState
	In, Out, Dead      int64
	Checkpoints        int64
	LastCheckpoint     time.Time // zero before the first
	Started            time.Time // start of the current run
	Restarts           int
	CheckpointFailures int64
}

// Tracker collects every pipeline's Stats, as Options.OnStats. It is safe
// for concurrent use.
type Tracker struct {
	mu    sync.Mutex // guards runs
	runs  map[string]*tracked
	order []string
}

type tracked struct {
	cur  *runtime.Stats
	base Totals // finished runs
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{runs: map[string]*tracked{}} }

// Track adds a pipeline run's Stats; it has the signature of
// runtime.Options.OnStats. A later Stats of the same pipeline replaces the
// earlier one, whose figures are kept in the totals.
func (t *Tracker) Track(s *runtime.Stats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.runs[s.Pipeline]
	if r == nil {
		r = &tracked{}
		t.runs[s.Pipeline] = r
		t.order = append(t.order, s.Pipeline)
		slices.Sort(t.order)
	} else if r.cur != nil && r.cur != s {
		if r.cur.State() != runtime.StateStarting {
			old := read(r.cur)
			r.base.In += old.In
			r.base.Out += old.Out
			r.base.Dead += old.Dead
			r.base.Checkpoints += old.Checkpoints
			r.base.CheckpointFailures += old.CheckpointFailures
			if !old.LastCheckpoint.IsZero() {
				r.base.LastCheckpoint = old.LastCheckpoint
			}
		}
		r.base.Restarts++
	}
	r.cur = s
}

func read(s *runtime.Stats) Totals {
	t := Totals{Name: s.Pipeline, State: s.State(), Started: s.Started()}
	if t.State == runtime.StateStarting {
		return t // the component lists are still being built
	}
	t.In, t.Out, t.Dead = s.In(), s.Out(), s.DeadLetter.Records.Load()
	t.Checkpoints, t.CheckpointFailures = s.Checkpoints.Load(), s.CheckpointFailures.Load()
	t.LastCheckpoint, _, _ = s.LastCheckpoint()
	return t
}

// Totals returns every pipeline's totals, sorted by name.
func (t *Tracker) Totals() []Totals {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Totals, 0, len(t.order))
	for _, name := range t.order {
		r := t.runs[name]
		c := read(r.cur)
		c.In += r.base.In
		c.Out += r.base.Out
		c.Dead += r.base.Dead
		c.Checkpoints += r.base.Checkpoints
		c.CheckpointFailures += r.base.CheckpointFailures
		c.Restarts = r.base.Restarts
		if c.LastCheckpoint.IsZero() {
			c.LastCheckpoint = r.base.LastCheckpoint
		}
		out = append(out, c)
	}
	return out
}

// Summary writes one line per pipeline: records in and out, dead letters,
// checkpoints, the elapsed time and the input rate.
func (t *Tracker) Summary(w io.Writer, elapsed time.Duration) {
	for _, p := range t.Totals() {
		fmt.Fprintf(w, "weir: %s: %d records in, %d out, %d dead-lettered, %d checkpoints, %.1fs (%.0f records/s)\n",
			p.Name, p.In, p.Out, p.Dead, p.Checkpoints, elapsed.Seconds(), float64(p.In)/elapsed.Seconds())
	}
}

// Options configure a Display.
type Options struct {
	// Interval between redraws; default 500 ms.
	Interval time.Duration
	// Width returns the terminal's width in columns (lines are cut to
	// it); nil or 0 means 100.
	Width func() int
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time
}

// Display redraws one line per pipeline in place. Everything else written
// to the terminal while it runs must go through Writer, which prints it
// above the lines.
type Display struct {
	w    io.Writer
	tr   *Tracker
	opts Options

	mu    sync.Mutex // guards the fields below and writes to w
	drawn int        // lines currently on screen
	prev  map[string]sample
	stop  chan struct{}
	done  chan struct{}
}

type sample struct {
	at      time.Time
	in, out int64
	inRate  float64
	outRate float64
}

// Start draws the status lines on w (a terminal) until Stop.
func Start(w io.Writer, tr *Tracker, opts Options) *Display {
	if opts.Interval <= 0 {
		opts.Interval = 500 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &Display{w: w, tr: tr, opts: opts, prev: map[string]sample{}, stop: make(chan struct{}), done: make(chan struct{})}
	go d.loop()
	return d
}

func (d *Display) loop() {
	defer close(d.done)
	t := time.NewTicker(d.opts.Interval)
	defer t.Stop()
	d.redraw()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.redraw()
		}
	}
}

// Stop erases the status lines and stops redrawing.
func (d *Display) Stop() {
	close(d.stop)
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	d.erase()
}

// Writer returns a writer whose output appears above the status lines
// (for the logger). Each Write should be whole lines.
func (d *Display) Writer() io.Writer { return writerFunc(d.writeAbove) }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (d *Display) writeAbove(p []byte) (int, error) {
	// Render before locking: lines takes d.mu itself (it used to be called
	// with d.mu held, and every log line after the first redraw deadlocked).
	status := d.lines()
	d.mu.Lock()
	defer d.mu.Unlock()
	drawn := d.drawn
	d.erase()
	n, err := d.w.Write(p)
	if drawn > 0 {
		d.draw(status)
	}
	return n, err
}

// erase moves to the first status line and clears to the end of the
// screen. Caller holds d.mu.
func (d *Display) erase() {
	if d.drawn > 0 {
		fmt.Fprintf(d.w, "\x1b[%dA\r\x1b[J", d.drawn)
		d.drawn = 0
	}
}

func (d *Display) redraw() {
	lines := d.lines()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.erase()
	d.draw(lines)
}

// draw writes lines, each ending in a newline. Caller holds d.mu.
func (d *Display) draw(lines []string) {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("\r\x1b[2K")
		b.WriteString(l)
		b.WriteString("\n")
	}
	io.WriteString(d.w, b.String())
	d.drawn = len(lines)
}

// lines renders the status lines from the tracker's current totals.
func (d *Display) lines() []string {
	now := d.opts.Now()
	width := 100
	if d.opts.Width != nil {
		if w := d.opts.Width(); w > 0 {
			width = w
		}
	}
	var out []string
	for _, p := range d.tr.Totals() {
		d.mu.Lock()
		s, seen := d.prev[p.Name]
		if dt := now.Sub(s.at).Seconds(); seen && dt > 0 {
			s.inRate = float64(p.In-s.in) / dt
			s.outRate = float64(p.Out-s.out) / dt
		}
		s.at, s.in, s.out = now, p.In, p.Out
		d.prev[p.Name] = s
		d.mu.Unlock()
		out = append(out, cut(Line(p, s.inRate, s.outRate, now), width-1))
	}
	return out
}

// Line renders one pipeline's status line.
func Line(p Totals, inRate, outRate float64, now time.Time) string {
	ckpt := "no checkpoint yet"
	if !p.LastCheckpoint.IsZero() {
		ckpt = "checkpoint " + age(now.Sub(p.LastCheckpoint)) + " ago"
	}
	l := fmt.Sprintf("%s  %-8s  in %s/s  out %s/s  %s  dead %d", p.Name, p.State, rate(inRate), rate(outRate), ckpt, p.Dead)
	if p.Restarts > 0 {
		l += fmt.Sprintf("  reloaded %d×", p.Restarts)
	}
	return l
}

func rate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.1fM", r/1e6)
	case r >= 1e4:
		return fmt.Sprintf("%.0fk", r/1e3)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}

func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// cut shortens s to n runes.
func cut(s string, n int) string {
	r := []rune(s)
	if n > 0 && len(r) > n {
		return string(r[:n])
	}
	return s
}
