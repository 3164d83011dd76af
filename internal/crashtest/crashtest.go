// Package crashtest runs weir as a child process and kills it with SIGKILL
// at random moments, restarting it until its finite input is done, so tests
// can prove that the committed output is exactly what an uninterrupted run
// writes: nothing lost, nothing doubled.
//
//	bin := crashtest.Build(t)
//	h := &crashtest.Harness{Binary: bin, Args: []string{"run", "-c", cfg}, Seed: 1}
//	res, err := h.Run(ctx, 20)
//	// res.Kills >= 20, and the last run exited 0
package crashtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Build compiles the weir command once per test binary and returns its
// path.
func Build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weir-crashtest-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "weir")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/weirhq/weir")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Harness runs one weir command line again and again, killing it.
type Harness struct {
	Binary string
	Args   []string
	Env    []string // added to the environment
	Dir    string   // working directory
	// MinDelay and MaxDelay bound the random time a run lives before it is
	// killed (defaults 30 ms and 400 ms).
	MinDelay, MaxDelay time.Duration
	Seed               uint64
	// Log, if set, receives each run's stderr when it failed.
	Log func(format string, args ...any)
	// Stdin, if set, is every run's standard input. An *os.File (a pipe's
	// read end) is handed to each run as it is, so what a killed run had
	// not read yet is there for the next one.
	Stdin io.Reader
	// Finished, if set, is for input that never ends (a followed file):
	// once kills kills have happened, the run is polled every 100 ms and
	// sent SIGTERM when Finished returns true, and it must then exit 0.
	Finished func() bool
}

// Result says what happened.
type Result struct {
	Kills    int
	Runs     int
	Elapsed  time.Duration   // wall time of all runs
	Recovery []time.Duration // per run: start until the pipeline was running again
}

// Run starts the command until it exits 0 on its own. Until kills kills
// have happened, each run is killed with SIGKILL after a random delay; after
// that, runs are left to finish. It returns at the first run that exits 0,
// so every kill landed before the work was done. A run that exits non-zero
// without being killed is an error.
func (h *Harness) Run(ctx context.Context, kills int) (Result, error) {
	minD, maxD := h.MinDelay, h.MaxDelay
	if minD == 0 {
		minD = 30 * time.Millisecond
	}
	if maxD <= minD {
		maxD = minD + 370*time.Millisecond
	}
	rng := rand.New(rand.NewPCG(h.Seed, 0x5eed))
	var res Result
	began := time.Now()
	defer func() { res.Elapsed = time.Since(began) }()
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Runs++
		cmd := exec.CommandContext(ctx, h.Binary, h.Args...)
		cmd.Dir = h.Dir
		cmd.Env = append(os.Environ(), h.Env...)
		cmd.Stdin = h.Stdin
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return res, err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var timer <-chan time.Time
		if res.Kills < kills {
			timer = time.After(minD + time.Duration(rng.Int64N(int64(maxD-minD))))
		}
		var poll *time.Ticker
		if timer == nil && h.Finished != nil {
			poll = time.NewTicker(100 * time.Millisecond)
		}
		killed, err := h.wait(cmd, done, timer, poll)
		if poll != nil {
			poll.Stop()
		}
		if killed {
			res.Kills++
			res.Recovery = append(res.Recovery, recoveryTime(stderr.Bytes()))
			continue
		}
		if err != nil {
			if h.Log != nil {
				h.Log("run %d failed after %v: %v\n%s", res.Runs, time.Since(start), err, stderr.String())
			}
			return res, fmt.Errorf("run %d exited with %v: %s", res.Runs, err, lastLines(stderr.Bytes(), 10))
		}
		res.Recovery = append(res.Recovery, recoveryTime(stderr.Bytes()))
		res.Elapsed = time.Since(began)
		return res, nil
	}
}

// wait waits for one run: it kills it with SIGKILL when timer fires
// (killed), sends it SIGTERM once Finished holds at a tick of poll, and
// otherwise returns how it exited.
func (h *Harness) wait(cmd *exec.Cmd, done <-chan error, timer <-chan time.Time, poll *time.Ticker) (killed bool, err error) {
	var ticks <-chan time.Time
	if poll != nil {
		ticks = poll.C
	}
	for {
		select {
		case <-ticks:
			if !h.Finished() {
				continue
			}
			ticks = nil
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
				return false, err
			}
		case err := <-done:
			return false, err
		case <-timer:
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
				return false, err
			}
			<-done
			return true, nil
		}
	}
}

// recoveryTime reads the "running" log line the runtime writes once a
// pipeline has recovered and its stages are running: `recovered_in=1.5ms`
// in text logs, `"recovered_in":1500000` (nanoseconds) in JSON logs.
func recoveryTime(stderr []byte) time.Duration {
	for _, key := range []string{"recovered_in=", `"recovered_in":`} {
		i := bytes.Index(stderr, []byte(key))
		if i < 0 {
			continue
		}
		rest := stderr[i+len(key):]
		if j := bytes.IndexAny(rest, " ,}\n"); j >= 0 {
			rest = rest[:j]
		}
		if d, err := time.ParseDuration(string(rest)); err == nil {
			return d
		}
		if ns, err := strconv.ParseInt(string(rest), 10, 64); err == nil {
			return time.Duration(ns)
		}
	}
	return 0
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
