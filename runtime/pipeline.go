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

	"github.com/weirhq/weir/internal/killpoint"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/wal"
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

func componentDir(pipeDir string, c *pipeline.Component) string {
	r := strings.NewReplacer("[", "-", "]", "", "/", "-")
	return filepath.Join(pipeDir, r.Replace(c.ID))
}

// walOpenError adds to an error from opening the ingest WAL in dir, when
// the log is damaged in the middle (a torn tail Open repairs by itself),
// the command that reports the damage and what can be done about it.
func walOpenError(dir string, err error) error {
	var ce *wal.CorruptionError
	if !errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("%w (the log is damaged in the middle, not torn at its end, so weir will not start on it: run `weir wal verify %s` for the report and what to do)", err, dir)
}

// ingestSegmentSize is the segment size of ingest WALs; 0 is the WAL's
// default (64 MiB). Tests make it small to see segments truncated.
var ingestSegmentSize int64

// built holds a pipeline's constructed components.
type built struct {
	sources []*sourceStage
	ops     []*operatorInstance
	prefix  int // ops[:prefix] are stateless and run in a parallelStage
	workers int
	sinks   []*sinkStage
	dead    *sinkStage
	wals    []*wal.Log
	closers []func(context.Context) error
	// requests carries RequestCheckpoint calls to the coordinator.
	requests chan checkpointRequest
}

// checkpointRequest is a RequestCheckpoint call: it is answered by the first
// checkpoint whose barriers came after the first reads[i] Reads of every
// source i.
type checkpointRequest struct {
	reads []uint64
	done  chan error
}

func (r checkpointRequest) coveredBy(c *chainReport) bool {
	for i, n := range r.reads {
		if c.forwarded[i] < n {
			return false
		}
	}
	return true
}

func (b *built) requestCheckpoint(ctx context.Context) error {
	req := checkpointRequest{done: make(chan error, 1)}
	for _, s := range b.sources {
		req.reads = append(req.reads, s.returned.Load())
	}
	done := req.done
	select {
	case b.requests <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *built) close(ctx context.Context, logger *slog.Logger) {
	for i := len(b.closers) - 1; i >= 0; i-- {
		if err := b.closers[i](ctx); err != nil {
			logger.Warn("close", "err", err)
		}
	}
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
	return coordinate(ctx, spec, store, last, stats, b, stop, opts, logger)
}

func build(ctx context.Context, cfg *pipeline.Config, spec *pipeline.Spec, dir string, last *Checkpoint,
	stats *Stats, opts Options, logger *slog.Logger, b *built) error {
	mk := func(c *pipeline.Component, idx int) pipeline.Build {
		return pipeline.Build{
			Pipeline: spec.Name, Component: spec.Name + "/" + c.ID, Index: idx, Guarantee: spec.Guarantee,
			Dir: componentDir(dir, c), Logger: logger.With("component", c.ID),
			CheckpointInterval: spec.CheckpointInterval, BatchSize: spec.BatchSize, Now: opts.Now,
			RequestCheckpoint: b.requestCheckpoint,
		}
	}
	tk, err := newTasks(spec, dir, logger)
	if err != nil {
		return err
	}
	state := func(list func(*Checkpoint) []ComponentState, id string) []byte {
		if last == nil {
			return nil
		}
		st, _ := findState(list(last), id)
		return st
	}
	walSync, _ := wal.ParseSyncMode(spec.WALSync)

	for i, c := range spec.Sources {
		bd := mk(c, i)
		if tk != nil {
			bd.ClaimTask = tk.claim
		}
		src, err := c.Config.(pipeline.SourceConfig).NewSource(bd)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", c.Pos, c.ID, err)
		}
		b.closers = append(b.closers, src.Close)
		cs := &ComponentStats{ID: c.ID}
		stats.Sources = append(stats.Sources, cs)
		cs.lag = lagOf(src) // observability hook: source lag
		if l, ok := src.(pipeline.SplitLagger); ok {
			cs.splitLags = l.SplitLags // observability hook: per-split lag
		}
		st := &sourceStage{idx: i, id: bd.Component, src: src, guarantee: spec.Guarantee,
			batchSize: spec.BatchSize, logger: logger, stats: cs, trigger: make(chan barrierRequest, 1)}
		pos := state(func(c *Checkpoint) []ComponentState { return c.Sources }, c.ID)
		if p, ok := src.(pipeline.Positioned); ok {
			st.positioned, st.startPos = p, pos
			if pos != nil {
				if err := p.Seek(ctx, pos); err != nil {
					return fmt.Errorf("%s: seek to checkpointed position: %w", bd.Component, err)
				}
			}
		} else if spec.Guarantee == pipeline.ExactlyOnce {
			walDir := filepath.Join(bd.Dir, "wal")
			l, err := wal.Open(walDir, wal.Options{Sync: walSync, Logger: bd.Logger, SegmentSize: ingestSegmentSize})
			if err != nil {
				return fmt.Errorf("%s: open ingest WAL: %w", bd.Component, walOpenError(walDir, err))
			}
			b.wals = append(b.wals, l)
			b.closers = append(b.closers, func(context.Context) error { return l.Close() })
			win := pipeline.DefaultDedupeWindow()
			if w, ok := c.Config.(pipeline.DedupeWindower); ok {
				win = w.SeenIDWindow()
			}
			st.wal, st.seen, st.now = l, newIDSet(win), opts.Now
			st.seenFile = filepath.Join(bd.Dir, seenIDsFile)
			if err := loadSeenIDs(st.seenFile, st.seen, opts.Now()); err != nil {
				return fmt.Errorf("%s: %w", bd.Component, err)
			}
			cs.walSize = l.Size // observability hook: WAL size (O(1), no directory scan)
			st.walFrom = l.FirstIndex()
			if pos != nil {
				var wp walPosition
				if err := json.Unmarshal(pos, &wp); err != nil {
					return fmt.Errorf("%s: checkpointed WAL position: %w", bd.Component, err)
				}
				st.walFrom = wp.WALIndex
			}
			st.startPos, _ = json.Marshal(walPosition{WALIndex: st.walFrom})
		}
		b.sources = append(b.sources, st)
	}

	if tk != nil && !tk.hasSource(b.sources) {
		tk = nil // no source's splits are tasks
	}
	var lastTask *taskOperator
	for i, c := range spec.Operators {
		bd := mk(c, i)
		op, err := c.Config.(pipeline.OperatorConfig).NewOperator(bd)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", c.Pos, c.ID, err)
		}
		if tk != nil && tk.perTask(spec, c, op) {
			to := &taskOperator{id: c.ID, newOp: func() (pipeline.Operator, error) {
				return c.Config.(pipeline.OperatorConfig).NewOperator(bd)
			}, tasks: map[string]*taskInstance{}, restore: &tk.restores}
			op, lastTask = to, to
		}
		oi := &operatorInstance{id: bd.Component, op: op, stats: observeOperator(stats, c.ID, op)}
		oi.wm, _ = op.(pipeline.WatermarkHandler)
		oi.spl, _ = op.(pipeline.SplitHandler)
		oi.snap, _ = op.(pipeline.Snapshotter)
		oi.fin, _ = op.(pipeline.Finisher)
		oi.tick, _ = op.(pipeline.Ticker)
		oi.copies = []pipeline.Operator{op}
		if b.prefix == i && opts.Workers > 1 && parallelizable(oi) {
			// One more instance per extra worker, each from its own
			// NewOperator call, so they share nothing mutable.
			for len(oi.copies) < opts.Workers {
				cp, err := c.Config.(pipeline.OperatorConfig).NewOperator(bd)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", c.Pos, c.ID, err)
				}
				oi.copies = append(oi.copies, cp)
			}
			b.prefix, b.workers = i+1, opts.Workers
		}
		for _, op := range oi.copies {
			if cl, ok := op.(interface{ Close(context.Context) error }); ok {
				b.closers = append(b.closers, cl.Close)
			}
		}
		if oi.snap != nil {
			if st := state(func(c *Checkpoint) []ComponentState { return c.Operators }, c.ID); st != nil {
				if err := oi.snap.Restore(st); err != nil {
					return permanentError{fmt.Errorf("%s: restore state: %w. If its configuration changed on purpose, `weir state reset --pipeline %s --operator %s` drops this state, and the next run starts the operator empty from the last committed positions (what the state held is lost); otherwise put the configuration back",
						bd.Component, err, spec.Name, c.ID)}
				}
			}
		}
		b.ops = append(b.ops, oi)
	}
	if lastTask != nil {
		lastTask.last = true
	}

	mkSink := func(c *pipeline.Component, idx int, cs *ComponentStats, keepTasks bool) (*sinkStage, error) {
		bd := mk(c, idx)
		bd.KeepTasks = keepTasks
		if keepTasks {
			bd.GroupFence = tk.fence
		}
		sk, err := c.Config.(pipeline.SinkConfig).NewSink(bd)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", c.Pos, c.ID, err)
		}
		b.closers = append(b.closers, sk.Close)
		s := &sinkStage{index: idx, id: bd.Component, sink: sk, stats: cs,
			in: make(chan message, 4), commits: make(chan commitRequest)}
		s.flusher, _ = sk.(pipeline.Flusher)
		s.checker, _ = sk.(pipeline.RecordChecker)
		if cm, ok := sk.(pipeline.Committer); ok && spec.Guarantee == pipeline.ExactlyOnce {
			s.committer = cm
			if keepTasks {
				ts, ok := sk.(pipeline.TaskStore)
				if !ok {
					return nil, fmt.Errorf("%s: its configuration keeps tasks, and the sink is not a TaskStore", bd.Component)
				}
				s.tasks, tk.store = ts, ts
			}
			tok := state(func(c *Checkpoint) []ComponentState { return c.Sinks }, c.ID)
			if err := cm.Recover(ctx, tok); err != nil {
				return nil, fmt.Errorf("%s: recover: %w", bd.Component, err)
			}
		}
		return s, nil
	}
	for i, c := range spec.Sinks {
		cs := &ComponentStats{ID: c.ID}
		stats.Sinks = append(stats.Sinks, cs)
		s, err := mkSink(c, i, cs, tk != nil && tk.index == i)
		if err != nil {
			return err
		}
		b.sinks = append(b.sinks, s)
	}
	if spec.DeadLetter != nil {
		s, err := mkSink(spec.DeadLetter, len(spec.Sinks), &stats.DeadLetter, false)
		if err != nil {
			return err
		}
		b.dead = s
	}
	return nil
}

var errPipelineStopped = errors.New("runtime: pipeline stopped")

// inflight is the checkpoint being taken.
type inflight struct {
	id      uint64
	final   bool
	start   time.Time
	chain   *chainReport
	tokens  [][]byte
	answers int
	timing  checkpointTiming // observability hook: trace (metrics_trace.go)
}

func coordinate(ctx context.Context, spec *pipeline.Spec, store *CheckpointStore, last *Checkpoint,
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

	nextID := uint64(1)
	if last != nil {
		nextID = last.ID + 1
	}
	g.Go(func() error {
		defer cancel() // when the coordinator is done, every stage stops
		ticker := time.NewTicker(spec.CheckpointInterval)
		defer ticker.Stop()
		var cur *inflight
		// waiting: RequestCheckpoint calls, answered by the first completed
		// checkpoint that covers the reads they name.
		var waiting []checkpointRequest
		defer func() {
			for _, w := range waiting {
				w.done <- errPipelineStopped
			}
		}()
		finalWanted, finalSent, done := false, false, false
		trigger := func(final bool) {
			cur = &inflight{id: nextID, final: final, start: opts.Now(), tokens: make([][]byte, len(allSinks))}
			nextID++
			finalSent = final
			for _, s := range b.sources {
				s.trigger <- barrierRequest{id: cur.id, final: final}
			}
		}
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-ticker.C:
				if cur == nil && !finalSent {
					trigger(false)
				}
			case w := <-b.requests:
				if finalSent {
					w.done <- errPipelineStopped
					continue
				}
				waiting = append(waiting, w)
				if cur == nil {
					trigger(false)
				}
			case <-stop:
				stop = nil
				finalWanted = true
				if cur == nil && !finalSent {
					trigger(true)
				}
			case <-inputDone:
				inputDone, done, finalWanted = nil, true, true
				if cur == nil && !finalSent {
					trigger(true)
				}
			case rep := <-chainReports:
				cur.chain = &rep
			case rep := <-sinkReports:
				cur.tokens[rep.index] = rep.token
				cur.timing.sinks = append(cur.timing.sinks, rep) // observability hook: trace
				cur.answers++
			}
			if cur == nil || cur.chain == nil || cur.answers < len(allSinks) {
				continue
			}
			err := complete(gctx, spec, store, stats, b, allSinks, cur, done && cur.final, logger)
			traceCheckpoint(opts, spec, allSinks, cur, err) // observability hook
			if err != nil {
				stats.CheckpointFailures.Add(1)
				return err
			}
			still := waiting[:0]
			for _, w := range waiting {
				if cur.final || w.coveredBy(cur.chain) {
					w.done <- nil
				} else {
					still = append(still, w)
				}
			}
			waiting = still
			if cur.final {
				return nil
			}
			cur = nil
			switch {
			case finalWanted:
				trigger(true)
			case len(waiting) > 0:
				trigger(false)
			}
		}
	})
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// complete makes a checkpoint durable, then commits the sinks, acknowledges
// at-least-once sources and trims the ingest WAL.
func complete(ctx context.Context, spec *pipeline.Spec, store *CheckpointStore, stats *Stats, b *built,
	sinks []*sinkStage, cur *inflight, inputDone bool, logger *slog.Logger) error {
	c := &Checkpoint{Version: 1, Pipeline: spec.Name, ID: cur.id, Time: time.Now().UTC(), InputDone: inputDone}
	for i, comp := range spec.Sources {
		c.Sources = append(c.Sources, ComponentState{ID: comp.ID, State: cur.chain.positions[i]})
	}
	for i, comp := range spec.Operators {
		if st := cur.chain.states[i]; st != nil {
			c.Operators = append(c.Operators, ComponentState{ID: comp.ID, State: st})
		}
	}
	comps := append([]*pipeline.Component(nil), spec.Sinks...)
	if spec.DeadLetter != nil {
		comps = append(comps, spec.DeadLetter)
	}
	for i, comp := range comps {
		if cur.tokens[i] != nil {
			c.Sinks = append(c.Sinks, ComponentState{ID: comp.ID, State: cur.tokens[i]})
		}
	}
	size, err := store.Save(c)
	if err != nil {
		return err
	}
	cur.timing.saved, cur.timing.size = time.Now(), size // observability hook: trace
	killpoint.Hit(killpoint.CheckpointSaved)
	for i, s := range sinks {
		if s.committer != nil && cur.tokens[i] != nil {
			if err := s.commit(ctx, cur.tokens[i]); err != nil {
				return err
			}
		}
	}
	cur.timing.committed = time.Now() // observability hook: trace
	killpoint.Hit(killpoint.CheckpointCommitted)
	for _, ack := range cur.chain.acks {
		if err := ack(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("acknowledge after checkpoint", "checkpoint", cur.id, "err", err)
		}
	}
	for i, s := range b.sources {
		if s.wal == nil {
			continue
		}
		var wp walPosition
		if json.Unmarshal(cur.chain.positions[i], &wp) == nil {
			if s.wal.FirstIndexAfter(wp.WALIndex) > s.wal.FirstIndex() {
				// Segments go: their message ids first go to the seen-id file.
				if err := saveSeenIDs(s.seenFile, s.seen.below(wp.WALIndex)); err != nil {
					logger.Warn("trim ingest WAL: kept, as its message ids could not be saved", "component", s.id, "err", err)
					continue
				}
			}
			if err := s.wal.TruncateBefore(wp.WALIndex); err != nil {
				logger.Warn("trim ingest WAL", "err", err)
			}
		}
	}
	took := time.Since(cur.start)
	stats.CheckpointDuration.Observe(took)
	stats.Checkpoints.Add(1)
	stats.lastCheckpoint.Store(time.Now().UnixNano())
	stats.lastDuration.Store(int64(took))
	stats.lastSize.Store(int64(size))
	logger.Debug("checkpoint", "id", cur.id, "final", cur.final, "took", took, "bytes", size)
	return nil
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
