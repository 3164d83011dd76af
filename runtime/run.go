package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/weirhq/weir/pipeline"
)

// Options configure how pipelines run.
type Options struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time
	// OnStats, when set, is called with each pipeline's live figures as it
	// starts (for progress lines and metrics).
	OnStats func(*Stats)
	// OnCheckpoint, when set, is called on the coordinator's goroutine after
	// each checkpoint completes or fails, with its phase timings (for
	// traces; see metrics_trace.go). It must return quickly.
	OnCheckpoint func(CheckpointTrace)
	// Workers is how many goroutines run a pipeline's leading stateless
	// operators (see pipeline.Stateless); 0 means GOMAXPROCS. 1 runs every
	// operator on the chain's goroutine.
	Workers int
	// FailFast makes the first failure of a supervised pipeline stop every
	// pipeline (weir run --fail-fast), instead of its restart policy.
	FailFast bool
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Workers <= 0 {
		o.Workers = goruntime.GOMAXPROCS(0)
	}
	return o
}

// Run runs the named pipelines of cfg (all when names is empty)
// concurrently. It returns when every pipeline has finished: finite input
// fully processed and committed, or stop closed (each takes a final
// checkpoint, commits and returns nil), or a pipeline failed (its error is
// returned; the others are stopped gracefully). Cancelling ctx stops at
// once, without a final checkpoint: the last one stays valid.
func Run(ctx context.Context, cfg *pipeline.Config, names []string, stop <-chan struct{}, opts Options) error {
	specs, err := Select(cfg, names)
	if err != nil {
		return err
	}
	opts = opts.withDefaults()
	innerStop := make(chan struct{})
	var once sync.Once
	stopAll := func() { once.Do(func() { close(innerStop) }) }
	go func() {
		select {
		case <-stop:
			stopAll()
		case <-innerStop:
		}
	}()
	defer stopAll()
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = RunPipeline(ctx, cfg, spec, innerStop, opts)
			if errs[i] != nil {
				stopAll()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Select returns the specs named (all when names is empty).
func Select(cfg *pipeline.Config, names []string) ([]*pipeline.Spec, error) {
	if len(names) == 0 {
		return cfg.Pipelines, nil
	}
	var out []*pipeline.Spec
	for _, n := range names {
		found := false
		for _, s := range cfg.Pipelines {
			if s.Name == n || s.AsWritten().Name == n {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			var known []string
			for _, s := range cfg.Pipelines {
				known = append(known, s.Name)
			}
			return nil, fmt.Errorf("runtime: no pipeline %q in %s (have: %s)", n, cfg.File, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// PipelineDir is where a pipeline keeps its WAL, checkpoints and staging.
func PipelineDir(cfg *pipeline.Config, name string) string {
	return filepath.Join(cfg.DataDir, name)
}

// CheckpointDir is where a pipeline's checkpoints are stored.
func CheckpointDir(cfg *pipeline.Config, name string) string {
	return filepath.Join(PipelineDir(cfg, name), "checkpoints")
}

// RunPipeline runs one pipeline; see Run. A pipeline fenced out of a task
// (pipeline.ErrFenced: a later group generation owns a partition this
// process was committing for) restarts from its last checkpoint: its
// tasks are claimed again from their truths.
func RunPipeline(ctx context.Context, cfg *pipeline.Config, spec *pipeline.Spec, stop <-chan struct{}, opts Options) error {
	for {
		err := runPipelineOnce(ctx, cfg, spec, stop, opts)
		if !errors.Is(err, pipeline.ErrFenced) || ctx.Err() != nil {
			return err
		}
		opts.withDefaults().Logger.Warn("a task moved to another process; restarting the pipeline from its last checkpoint",
			"pipeline", spec.Name, "err", err)
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func runPipelineOnce(ctx context.Context, cfg *pipeline.Config, spec *pipeline.Spec, stop <-chan struct{}, opts Options) (err error) {
	begin := time.Now()
	opts = opts.withDefaults()
	logger := opts.Logger.With("pipeline", spec.Name)
	dir := PipelineDir(cfg, spec.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("runtime: %s: create data dir: %w", spec.Name, err)
	}
	// Another process on this data dir or these outputs is not something
	// starting again fixes: the pipeline is refused, not retried.
	unlock, err := lockDir(dir, processOwner(spec.Name, "", cfg.DataDir, cfg.File, ""))
	if err != nil {
		return permanentError{fmt.Errorf("runtime: %s: %w", spec.Name, err)}
	}
	defer unlock()
	unlockOutputs, err := lockOutputs(spec, cfg.DataDir, cfg.File)
	if err != nil {
		return permanentError{fmt.Errorf("runtime: %w", err)}
	}
	defer unlockOutputs()

	store := &CheckpointStore{Dir: filepath.Join(dir, "checkpoints")}
	last, err := store.Latest()
	if err != nil {
		return err
	}
	stats := &Stats{Pipeline: spec.Name}
	stats.DeadLetter.ID = "dead_letter"
	defer func() { stats.markDone(err) }() // observability hook: health
	if opts.OnStats != nil {
		opts.OnStats(stats)
	}
	if last != nil {
		logger.Info("recovering from checkpoint", "checkpoint", last.ID, "taken", last.Time)
	}

	b := &built{requests: make(chan checkpointRequest)}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		b.close(closeCtx, logger)
	}()
	if err := build(ctx, cfg, spec, dir, last, stats, opts, logger, b); err != nil {
		return err
	}
	logger.Info("running", "guarantee", spec.Guarantee, "recovered_in", time.Since(begin).Round(time.Microsecond))
	return start(ctx, spec, store, last, stats, b, stop, opts, logger)
}

// start wires the built stages with channels, runs them and the
// coordinator, and returns when the coordinator is done (the final
// checkpoint, or a failure) and every stage has stopped.
func start(ctx context.Context, spec *pipeline.Spec, store *CheckpointStore, last *Checkpoint,
	stats *Stats, b *built, stop <-chan struct{}, opts Options, logger *slog.Logger) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)

	merged := make(chan message, 4)
	align := newAligner(len(b.sources))
	chainReports := make(chan chainReport, 1)
	sinkReports := make(chan sinkReport, len(b.sinks)+1)
	inputDone := make(chan struct{})
	allSinks := append([]*sinkStage(nil), b.sinks...)
	if b.dead != nil {
		allSinks = append(allSinks, b.dead)
	}
	for i, s := range allSinks {
		s.index = i
		s.reports = sinkReports
	}
	stats.markRunning(merged, allSinks) // observability hook: health, channel fill
	deadLogged := 0
	chainIn := merged
	if b.prefix > 0 {
		out := make(chan message, 1)
		ps := &parallelStage{ops: b.ops[:b.prefix], workers: b.workers, in: merged, out: out}
		g.Go(func() error { return ps.run(gctx) })
		chainIn = out
	}
	ch := &chain{ops: b.ops, from: b.prefix, nSources: len(b.sources), in: chainIn, sinks: b.sinks, dead: b.dead, stats: stats,
		now: opts.Now, reports: chainReports, done: inputDone,
		onDead: func(d pipeline.DeadLetter) {
			stats.DeadLetter.Records.Add(1)
			if deadLogged < 10 {
				deadLogged++
				logger.Warn("dead letter (no dead_letter output configured)", "reason", d.Reason, "err", d.Error, "component", d.Component, "origin", d.Record.Origin.Name, "offset", d.Record.Origin.Offset)
			}
		}}
	for _, s := range b.sources {
		s.out, s.align = merged, align
		g.Go(func() error { return s.run(gctx) })
	}
	g.Go(func() error { return ch.run(gctx) })
	for _, s := range allSinks {
		g.Go(func() error { return s.run(gctx) })
	}

	co := newCoordinator(spec, store, last, stats, b, allSinks, opts, logger)
	g.Go(func() error {
		defer cancel() // when the coordinator is done, every stage stops
		return co.run(gctx, stop, inputDone, chainReports, sinkReports)
	})
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// lockDir takes an exclusive lock on a pipeline's data directory, so two
// processes never run the same pipeline over the same state; the lock file
// names its holder, for the refusal of the next.
func lockDir(dir string, owner lockOwner) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another weir process"
		if o, rerr := readOwner(f); rerr == nil {
			holder = "another weir process (" + o.describe() + ")"
		}
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by %s (%w)", dir, holder, err)
	}
	b, _ := json.Marshal(owner)
	if f.Truncate(0) == nil {
		f.WriteAt(append(b, '\n'), 0) // for the refusal's message only
	}
	return func() { f.Close() }, nil
}
