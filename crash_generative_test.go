package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirhq/weir/internal/crashgen"
	"github.com/weirhq/weir/internal/crashtest"
	"github.com/weirhq/weir/internal/testservices"
)

// TestCrashGenerative draws random pipelines (internal/crashgen): a file
// source (finite, or followed while it is rotated by rename or
// copytruncate), stdin or generate; parse, filter and map; maybe a window
// with random size, watermark and lateness; file, parquet and postgres
// sinks templated over 1 to 200 keys, with random max_open_files,
// batch_size, checkpoint_interval and guarantee; and a few malformed and
// poison records. Each runs as a child weir process, SIGKILLed at random
// moments and restarted until its input is done, and its committed output
// is checked against an oracle computed from the input: exactly once
// under exactly_once, at least once and never torn under at_least_once.
//
// By default it runs the regression seeds below and 3 new configurations
// (1 under -short), from seeds it prints. WEIR_CRASH_CONFIGS=N runs N new
// configurations instead; WEIR_CRASH_SEED=S replays seed S alone. A
// failure prints its seed and the YAML; WEIR_CRASH_KEEP=DIR also keeps a
// failing run's directory (input, data_dir, output) under DIR. Seeds of
// failures found stay in crashRegressionSeeds.
//
//	WEIR_CRASH_CONFIGS=50 go test -run CrashGenerative -timeout 1h .
//	WEIR_CRASH_SEED=1234 go test -run CrashGenerative -v .
func TestCrashGenerative(t *testing.T) {
	var seeds []uint64
	if s := os.Getenv("WEIR_CRASH_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WEIR_CRASH_SEED=%q: %v", s, err)
		}
		seeds = []uint64{seed}
	} else {
		n := 3
		if testing.Short() {
			n = 1
		}
		if s := os.Getenv("WEIR_CRASH_CONFIGS"); s != "" {
			var err error
			if n, err = strconv.Atoi(s); err != nil {
				t.Fatalf("WEIR_CRASH_CONFIGS=%q: %v", s, err)
			}
		} else if !testing.Short() {
			seeds = append(seeds, crashRegressionSeeds...)
		}
		for range n {
			seeds = append(seeds, rand.Uint64()%1_000_000_000)
		}
	}
	bin := crashtest.Build(t)
	var passed atomic.Int64
	began := time.Now()
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			runGenerated(t, bin, seed)
			passed.Add(1)
		})
	}
	t.Logf("%d of %d configurations passed in %v", passed.Load(), len(seeds), time.Since(began).Round(time.Second))
}

// crashRegressionSeeds are configurations that once failed; they run in
// every full `go test`.
var crashRegressionSeeds = []uint64{
	582285292, // followed file, batch 3: restarts read again lines a read had buffered (sources/file.go, pollFile)
	665433668, // followed file renamed between a restart's Seek and its first open: read again from 0 (sources/file.go, openError)
	// Failures of the test itself, kept for the cases they taught it:
	471229907, // stdin: the rest of a line a killed run had begun arrives as a malformed line
	124352100, // stdin under at_least_once (not logged): a kill loses lines sink by sink
	517079865, // followed file rotated by rename: the rotated file and its successor interleave
}

// runGenerated runs the configuration of seed with kills and checks its
// output. When the input was done before the first kill, it starts over
// with shorter kill delays.
func runGenerated(t *testing.T, bin string, seed uint64) {
	cfg := crashgen.Generate(seed)
	t.Logf("%s", cfg)
	var pg *pgx.Conn
	dsn := ""
	for _, s := range cfg.Sinks {
		if s.Kind == crashgen.SinkPostgres && pg == nil {
			dsn = testservices.Postgres(t)
			var err error
			if pg, err = pgx.Connect(context.Background(), dsn); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pg.Close(context.Background()) })
		}
	}
	root := t.TempDir()
	for attempt := range 3 {
		p := crashgen.Paths{Dir: filepath.Join(root, fmt.Sprintf("run-%d", attempt)), DSN: dsn, Tables: make([]string, len(cfg.Sinks))}
		p.In = filepath.Join(p.Dir, "in")
		if pg != nil {
			p.CommitsTable = testservices.Name("weir_gen_commits")
			drop := []string{p.CommitsTable}
			for j, s := range cfg.Sinks {
				if s.Kind == crashgen.SinkPostgres {
					p.Tables[j] = testservices.Name("weir_gen")
					if _, err := pg.Exec(context.Background(), cfg.CreateTable(j, p.Tables[j])); err != nil {
						t.Fatal(err)
					}
					drop = append(drop, p.Tables[j])
				}
			}
			t.Cleanup(func() {
				for _, table := range drop {
					pg.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
				}
			})
		}
		kills, ok := runGeneratedOnce(t, bin, cfg, p, pg, cfg.MaxDelay>>attempt)
		if ok {
			return
		}
		t.Logf("attempt %d: the input was done after %d kills; again with shorter kill delays", attempt, kills)
	}
	t.Logf("no kill landed before the input was done; checked without kills")
}

// runGeneratedOnce runs cfg in p.Dir. It returns false, without checking,
// when the first run finished before any kill, so that the caller tries
// again with shorter delays; on its last attempt it checks the output
// anyway.
func runGeneratedOnce(t *testing.T, bin string, cfg *crashgen.Config, p crashgen.Paths, pg *pgx.Conn, maxDelay time.Duration) (int, bool) {
	yaml := cfg.YAML(p)
	fail := func(format string, args ...any) {
		t.Helper()
		if keep := os.Getenv("WEIR_CRASH_KEEP"); keep != "" {
			dst := filepath.Join(keep, fmt.Sprintf("seed-%d", cfg.Seed))
			if out, err := exec.Command("cp", "-a", p.Dir, dst).CombinedOutput(); err != nil {
				t.Logf("WEIR_CRASH_KEEP: %v: %s", err, out)
			} else {
				t.Logf("the run's directory (input, data_dir, output) is kept in %s", dst)
			}
		}
		t.Fatalf("%s\n%s\nreplay: WEIR_CRASH_SEED=%d go test -run 'CrashGenerative' -v .\n%s", cfg, fmt.Sprintf(format, args...), cfg.Seed, yaml)
	}
	if err := os.MkdirAll(p.In, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(p.Dir, "p.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := cfg.Input()
	want := cfg.Expect()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h := &crashtest.Harness{Binary: bin, Args: []string{"run", "-c", cfgPath, "--quiet"}, Dir: p.Dir, Seed: cfg.Seed,
		MinDelay: cfg.MinDelay, MaxDelay: max(maxDelay, cfg.MinDelay+10*time.Millisecond), Log: t.Logf}
	var writerDone <-chan error
	switch cfg.Source {
	case crashgen.SourceFile:
		if err := cfg.WriteFiles(p.In, lines); err != nil {
			t.Fatal(err)
		}
	case crashgen.SourceStdin:
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		done := make(chan error, 1)
		go func() { done <- crashgen.WriteStdin(w, lines) }()
		writerDone = done
		h.Stdin = r
	case crashgen.SourceFollow:
		ready, done := cfg.Follow(ctx, p.In, lines)
		<-ready
		writerDone = done
		var wrote time.Time
		var lastPoll time.Time
		h.Finished = func() bool {
			if wrote.IsZero() {
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("writing the followed file: %v", err)
					}
					wrote = time.Now()
					writerDone = nil
				default:
					return false
				}
			}
			if time.Since(wrote) > 30*time.Second {
				return true // check what is there
			}
			if time.Since(lastPoll) < 500*time.Millisecond {
				return false
			}
			lastPoll = time.Now()
			out, err := crashgen.Read(ctx, cfg, p, pg)
			return err == nil && crashgen.Complete(want, out)
		}
	}
	res, err := h.Run(ctx, cfg.Kills)
	if err != nil {
		fail("after %d kills in %d runs: %v", res.Kills, res.Runs, err)
	}
	if writerDone != nil {
		if err := <-writerDone; err != nil {
			t.Fatalf("writing the input: %v", err)
		}
	}
	if res.Kills == 0 && cfg.Source != crashgen.SourceFollow && maxDelay > cfg.MaxDelay>>2 {
		return 0, false
	}
	out, err := crashgen.Read(ctx, cfg, p, pg)
	if err != nil {
		fail("reading the output: %v", err)
	}
	cut := 0
	if cfg.Source == crashgen.SourceStdin {
		cut = res.Kills
	}
	if probs := crashgen.Check(cfg, want, out, cut); len(probs) > 0 {
		fail("after %d kills in %d runs:\n  %s", res.Kills, res.Runs, strings.Join(probs[:min(len(probs), 20)], "\n  "))
	}
	t.Logf("ok: %d kills in %d runs, %v; %d expected items and dead letters", res.Kills, res.Runs, res.Elapsed.Round(time.Millisecond), want.Total())
	return res.Kills, true
}
