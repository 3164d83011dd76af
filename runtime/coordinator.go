package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/weirhq/weir/internal/killpoint"
	"github.com/weirhq/weir/pipeline"
)

// The checkpoint coordinator: it triggers checkpoints (on the interval, on
// a RequestCheckpoint, at a stop and at the end of the input), gathers the
// chain's report and every sink's pre-commit token, and completes the
// checkpoint: save it durably, commit the sinks, acknowledge the
// at-least-once sources and truncate the ingest WALs, in that order.
//
// A barrier's path, file by file: coordinator.trigger asks every source
// stage (source_stage.go) to inject one; sources align on it (barrier.go,
// aligner); the chain collects one per source (barrier.go, collector),
// snapshots its operators (chain.go) and sends its report here and the
// barrier on to the sinks; each sink pre-commits and reports its token
// (sink_stage.go); complete makes the checkpoint durable
// (checkpoint_store.go) and commits.

var errPipelineStopped = errors.New("runtime: pipeline stopped")

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

// requestCheckpoint is pipeline.Build.RequestCheckpoint: it returns once a
// checkpoint covering every Read returned so far has committed.
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

// coordinator runs on one goroutine; at most one checkpoint is in flight.
type coordinator struct {
	spec   *pipeline.Spec
	store  *CheckpointStore
	stats  *Stats
	b      *built
	sinks  []*sinkStage // the sinks, then the dead-letter output
	opts   Options
	logger *slog.Logger

	nextID uint64
	cur    *inflight
	// waiting: RequestCheckpoint calls, answered by the first completed
	// checkpoint that covers the reads they name.
	waiting []checkpointRequest
	// finalWanted: a stop or the end of the input asked for a final
	// checkpoint; finalSent: its barriers are out; inputDone: every source
	// ended (the final checkpoint then records InputDone).
	finalWanted, finalSent, inputDone bool
}

func newCoordinator(spec *pipeline.Spec, store *CheckpointStore, last *Checkpoint, stats *Stats, b *built,
	sinks []*sinkStage, opts Options, logger *slog.Logger) *coordinator {
	c := &coordinator{spec: spec, store: store, stats: stats, b: b, sinks: sinks, opts: opts, logger: logger, nextID: 1}
	if last != nil {
		c.nextID = last.ID + 1
	}
	return c
}

// run is the coordinator's loop. It returns nil after the final checkpoint
// or when ctx ends, and the error of a checkpoint that failed.
func (c *coordinator) run(ctx context.Context, stop <-chan struct{}, inputDone <-chan struct{},
	chainReports <-chan chainReport, sinkReports <-chan sinkReport) error {
	ticker := time.NewTicker(c.spec.CheckpointInterval)
	defer ticker.Stop()
	defer func() {
		for _, w := range c.waiting {
			w.done <- errPipelineStopped
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			if c.cur == nil && !c.finalSent {
				c.trigger(false)
			}
		case w := <-c.b.requests:
			if c.finalSent {
				w.done <- errPipelineStopped
				continue
			}
			c.waiting = append(c.waiting, w)
			if c.cur == nil {
				c.trigger(false)
			}
		case <-stop:
			stop = nil
			c.wantFinal()
		case <-inputDone:
			inputDone, c.inputDone = nil, true
			c.wantFinal()
		case rep := <-chainReports:
			c.cur.chain = &rep
		case rep := <-sinkReports:
			c.cur.tokens[rep.index] = rep.token
			c.cur.timing.sinks = append(c.cur.timing.sinks, rep) // observability hook: trace
			c.cur.answers++
		}
		if c.cur == nil || c.cur.chain == nil || c.cur.answers < len(c.sinks) {
			continue
		}
		cur := c.cur
		err := c.complete(ctx, cur)
		traceCheckpoint(c.opts, c.spec, c.sinks, cur, err) // observability hook
		if err != nil {
			c.stats.CheckpointFailures.Add(1)
			return err
		}
		c.answer(cur)
		if cur.final {
			return nil
		}
		c.cur = nil
		switch {
		case c.finalWanted:
			c.trigger(true)
		case len(c.waiting) > 0:
			c.trigger(false)
		}
	}
}

// trigger starts checkpoint nextID: every source stage injects its barrier.
func (c *coordinator) trigger(final bool) {
	c.cur = &inflight{id: c.nextID, final: final, start: c.opts.Now(), tokens: make([][]byte, len(c.sinks))}
	c.nextID++
	c.finalSent = final
	for _, s := range c.b.sources {
		s.trigger <- barrierRequest{id: c.cur.id, final: final}
	}
}

// wantFinal asks for the final checkpoint: now, or after the one in flight.
func (c *coordinator) wantFinal() {
	c.finalWanted = true
	if c.cur == nil && !c.finalSent {
		c.trigger(true)
	}
}

// answer tells the RequestCheckpoint calls that cur covers that it has
// committed.
func (c *coordinator) answer(cur *inflight) {
	still := c.waiting[:0]
	for _, w := range c.waiting {
		if cur.final || w.coveredBy(cur.chain) {
			w.done <- nil
		} else {
			still = append(still, w)
		}
	}
	c.waiting = still
}

// complete makes a checkpoint durable, then commits the sinks, acknowledges
// at-least-once sources and trims the ingest WAL.
func (c *coordinator) complete(ctx context.Context, cur *inflight) error {
	size, err := c.save(cur)
	if err != nil {
		return err
	}
	cur.timing.saved, cur.timing.size = time.Now(), size // observability hook: trace
	killpoint.Hit(killpoint.CheckpointSaved)
	if err := c.commit(ctx, cur); err != nil {
		return err
	}
	cur.timing.committed = time.Now() // observability hook: trace
	killpoint.Hit(killpoint.CheckpointCommitted)
	c.acknowledge(ctx, cur)
	c.truncate(cur)
	took := time.Since(cur.start)
	c.stats.CheckpointDuration.Observe(took)
	c.stats.Checkpoints.Add(1)
	c.stats.lastCheckpoint.Store(time.Now().UnixNano())
	c.stats.lastDuration.Store(int64(took))
	c.stats.lastSize.Store(int64(size))
	c.logger.Debug("checkpoint", "id", cur.id, "final", cur.final, "took", took, "bytes", size)
	return nil
}

// save writes the checkpoint (positions, operator states, sink tokens)
// durably; it returns its size.
func (c *coordinator) save(cur *inflight) (int, error) {
	spec := c.spec
	cp := &Checkpoint{Version: 1, Pipeline: spec.Name, ID: cur.id, Time: time.Now().UTC(),
		InputDone: c.inputDone && cur.final}
	for i, comp := range spec.Sources {
		cp.Sources = append(cp.Sources, ComponentState{ID: comp.ID, State: cur.chain.positions[i]})
	}
	for i, comp := range spec.Operators {
		if st := cur.chain.states[i]; st != nil {
			cp.Operators = append(cp.Operators, ComponentState{ID: comp.ID, State: st})
		}
	}
	comps := append([]*pipeline.Component(nil), spec.Sinks...)
	if spec.DeadLetter != nil {
		comps = append(comps, spec.DeadLetter)
	}
	for i, comp := range comps {
		if cur.tokens[i] != nil {
			cp.Sinks = append(cp.Sinks, ComponentState{ID: comp.ID, State: cur.tokens[i]})
		}
	}
	return c.store.Save(cp)
}

// commit commits every two-phase sink's pre-commit token of a saved
// checkpoint. Commit is idempotent: recovery commits the last checkpoint's
// tokens again.
func (c *coordinator) commit(ctx context.Context, cur *inflight) error {
	for i, s := range c.sinks {
		if s.committer != nil && cur.tokens[i] != nil {
			if err := s.commit(ctx, cur.tokens[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// acknowledge runs the at-least-once sources' acks of a committed
// checkpoint. A failed ack is logged: the message comes again, and is
// dropped or written again as the guarantee allows.
func (c *coordinator) acknowledge(ctx context.Context, cur *inflight) {
	for _, ack := range cur.chain.acks {
		if err := ack(ctx); err != nil && ctx.Err() == nil {
			c.logger.Warn("acknowledge after checkpoint", "checkpoint", cur.id, "err", err)
		}
	}
}

// truncate trims every ingest WAL up to the committed checkpoint's
// position, saving the message ids of dropped segments first.
func (c *coordinator) truncate(cur *inflight) {
	for i, s := range c.b.sources {
		if s.wal == nil {
			continue
		}
		var wp walPosition
		if json.Unmarshal(cur.chain.positions[i], &wp) != nil {
			continue
		}
		if s.wal.FirstIndexAfter(wp.WALIndex) > s.wal.FirstIndex() {
			// Segments go: their message ids first go to the seen-id file.
			if err := saveSeenIDs(s.seenFile, s.seen.below(wp.WALIndex)); err != nil {
				c.logger.Warn("trim ingest WAL: kept, as its message ids could not be saved", "component", s.id, "err", err)
				continue
			}
		}
		if err := s.wal.TruncateBefore(wp.WALIndex); err != nil {
			c.logger.Warn("trim ingest WAL", "err", err)
		}
	}
}
