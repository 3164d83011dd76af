package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/wal"
)

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

func (b *built) close(ctx context.Context, logger *slog.Logger) {
	for i := len(b.closers) - 1; i >= 0; i-- {
		if err := b.closers[i](ctx); err != nil {
			logger.Warn("close", "err", err)
		}
	}
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
