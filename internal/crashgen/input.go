package crashgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Line kinds.
const (
	LineGood      = iota
	LineMalformed // not JSON
	LineNoKey     // no k: the path templates cannot be rendered
	LineNoTS      // no ts: no event time, no date(ts)
)

// Line is one input record: the i-th line of the input (generate: the
// i-th generated record).
type Line struct {
	I    int
	Kind int
	K    string // "u<n>"
	TS   int64  // event time, unix ms
	Text string // the line as written, without its newline ("" for generate)
}

// baseMS is the event time of line 0 of file and stdin input: shortly
// before midnight, so that {{ date(ts) }} spans two days.
var baseMS = time.Date(2026, 1, 1, 23, 57, 0, 3_000_000, time.UTC).UnixMilli()

// Input returns the configuration's input, in order.
func (c *Config) Input() []Line {
	r := rand.New(rand.NewPCG(c.Seed, 0x1a9e))
	lines := make([]Line, c.Records)
	if c.Source == SourceGenerate {
		for i := range lines {
			lines[i] = Line{I: i, K: fmt.Sprintf("u%d", i%c.Keys), TS: epochMS + 7*int64(i)}
		}
		return lines
	}
	for i := range lines {
		ts := baseMS + int64(i*c.StepMS)
		if c.JitterEvery > 0 && r.IntN(c.JitterEvery) == 0 {
			ts -= int64(10 * r.IntN(c.JitterMS/10+1))
		}
		lines[i] = Line{I: i, K: fmt.Sprintf("u%d", r.IntN(c.Keys)), TS: ts}
	}
	mark := func(n, kind int) {
		for range n {
			for {
				i := r.IntN(len(lines))
				if lines[i].Kind == LineGood {
					lines[i].Kind = kind
					break
				}
			}
		}
	}
	mark(c.Malformed, LineMalformed)
	mark(c.NoKey, LineNoKey)
	mark(c.NoTS, LineNoTS)
	for i := range lines {
		l := &lines[i]
		ts := time.UnixMilli(l.TS).UTC().Format("2006-01-02T15:04:05.000Z")
		switch l.Kind {
		case LineGood:
			l.Text = fmt.Sprintf(`{"i":%d,"k":"%s","ts":"%s"}`, l.I, l.K, ts)
		case LineMalformed:
			l.Text = fmt.Sprintf(`{"i":%d,"k":"%s","ts":"%s`, l.I, l.K, ts[:10])
		case LineNoKey:
			l.Text = fmt.Sprintf(`{"i":%d,"ts":"%s"}`, l.I, ts)
		case LineNoTS:
			l.Text = fmt.Sprintf(`{"i":%d,"k":"%s"}`, l.I, l.K)
		}
	}
	return lines
}

// WriteFiles writes the input of a finite file source to dir: Files files
// of consecutive lines, named so that their sorted order is the input's.
func (c *Config) WriteFiles(dir string, lines []Line) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	per := (len(lines) + c.Files - 1) / c.Files
	for f := range c.Files {
		part := lines[min(f*per, len(lines)):min((f+1)*per, len(lines))]
		if err := writeLines(filepath.Join(dir, fmt.Sprintf("in-%02d.log", f)), part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY); err != nil {
			return err
		}
	}
	return nil
}

func writeLines(path string, lines []Line, flag int) error {
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, l := range lines {
		w.WriteString(l.Text)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteStdin writes every line to w, then closes it.
func WriteStdin(w io.WriteCloser, lines []Line) error {
	bw := bufio.NewWriterSize(w, 4096)
	for _, l := range lines {
		bw.WriteString(l.Text)
		bw.WriteByte('\n')
	}
	err := bw.Flush()
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// Follow writes a followed source's input into dir/app.log over
// WriteFor, in small appends, rotating it Rotations times on the way as
// logrotate would: older copies shift up (app.log.1 → app.log.2), then
// "create" renames app.log to app.log.1 and starts a new app.log, and
// "copytruncate" copies it to app.log.1 and truncates it in place. The
// first chunk is written before Follow returns ready, so the first run
// finds the file.
func (c *Config) Follow(ctx context.Context, dir string, lines []Line) (ready <-chan struct{}, done <-chan error) {
	r := rand.New(rand.NewPCG(c.Seed, 0xf011))
	var at []int // rotate before these lines
	for range c.Rotations {
		at = append(at, 1+r.IntN(len(lines)-1))
	}
	slices.Sort(at)
	readyC, doneC := make(chan struct{}), make(chan error, 1)
	go func() { doneC <- c.follow(ctx, dir, lines, at, readyC) }()
	return readyC, doneC
}

func (c *Config) follow(ctx context.Context, dir string, lines []Line, rotateAt []int, ready chan struct{}) error {
	defer func() {
		if ready != nil {
			close(ready)
		}
	}()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, "app.log")
	const chunks = 100
	per := max(len(lines)/chunks, 1)
	tick := time.NewTicker(c.WriteFor / chunks)
	defer tick.Stop()
	rotated := 0
	for start := 0; start < len(lines); {
		end := min(start+per, len(lines))
		for rotated < len(rotateAt) && rotateAt[rotated] < end {
			// Write up to the rotation point, rotate, go on.
			cut := max(rotateAt[rotated], start)
			if err := writeLines(path, lines[start:cut], os.O_CREATE|os.O_APPEND|os.O_WRONLY); err != nil {
				return err
			}
			start = cut
			rotated++
			if err := c.rotate(dir); err != nil {
				return err
			}
		}
		if err := writeLines(path, lines[start:end], os.O_CREATE|os.O_APPEND|os.O_WRONLY); err != nil {
			return err
		}
		start = end
		if ready != nil {
			close(ready)
			ready = nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// rotate rotates dir/app.log once.
func (c *Config) rotate(dir string) error {
	path := filepath.Join(dir, "app.log")
	old, _ := filepath.Glob(path + ".*")
	for n := len(old); n >= 1; n-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", path, n), fmt.Sprintf("%s.%d", path, n+1)); err != nil {
			return err
		}
	}
	if c.Rotation == "create" {
		if err := os.Rename(path, path+".1"); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		return f.Close()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path+".1", data, 0o644); err != nil {
		return err
	}
	return os.Truncate(path, 0)
}
