package runtime

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/weirhq/weir/pipeline"
)

type operatorInstance struct {
	id   string
	op   pipeline.Operator
	wm   pipeline.WatermarkHandler
	spl  pipeline.SplitHandler
	snap pipeline.Snapshotter
	fin  pipeline.Finisher
	tick pipeline.Ticker
	// copies are the instances a parallelStage runs, one per worker;
	// copies[0] is op.
	copies []pipeline.Operator

	stats *ComponentStats // observability hook: records in/out (metrics.go)
}

// chain is the stage that runs the operators, in order, on one goroutine,
// and fans the result out to the sinks.
type chain struct {
	ops      []*operatorInstance
	from     int // batches from in have been through ops[:from] already (parallelStage)
	nSources int
	in       <-chan message
	sinks    []*sinkStage
	dead     *sinkStage // nil: dead letters are counted and logged only
	stats    *Stats
	now      func() time.Time
	onDead   func(pipeline.DeadLetter) // used when dead is nil
	reports  chan<- chainReport
	done     chan<- struct{} // closed once every input ended and was flushed

	collect collector // barriers per checkpoint id, until every source's came (barrier.go)
	eofs    int
}

func (c *chain) run(ctx context.Context) error {
	c.collect = newCollector(c.nSources)
	var tick <-chan time.Time
	for _, o := range c.ops {
		if o.tick != nil {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			tick = t.C
			break
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick:
			for i, o := range c.ops {
				if o.tick == nil {
					continue
				}
				b := &pipeline.Batch{}
				if err := o.tick.Tick(ctx, now, b); err != nil {
					return fmt.Errorf("%s: tick: %w", o.id, err)
				}
				if err := c.processFrom(ctx, i+1, b); err != nil {
					return err
				}
			}
		case m := <-c.in:
			var err error
			switch m.kind {
			case msgBatch:
				err = c.processFrom(ctx, c.from, m.batch)
			case msgBarrier:
				err = c.onBarrier(ctx, m)
			case msgEOF:
				err = c.onEOF(ctx)
			case msgWatermark:
				err = c.onWatermark(ctx, m)
			case msgSplits:
				err = c.onSplits(ctx, m)
			}
			if err != nil {
				return err
			}
		}
	}
}

// processFrom runs ops[from:] on b and emits the result.
func (c *chain) processFrom(ctx context.Context, from int, b *pipeline.Batch) error {
	began := time.Now() // observability hook: batch latency
	for _, o := range c.ops[from:] {
		if len(b.Records) == 0 {
			break
		}
		o.stats.In.Add(int64(len(b.Records)))
		if err := o.op.Process(ctx, b); err != nil {
			return fmt.Errorf("%s: %w", o.id, err)
		}
		o.stats.addOut(len(b.Records))
	}
	c.stats.Chain.Latency.Observe(time.Since(began))
	return c.emit(ctx, b)
}

func (c *chain) onBarrier(ctx context.Context, m message) error {
	b := m.barrier
	rep := c.collect.add(m)
	if rep == nil {
		return nil
	}
	// Aligned: everything before the barrier has been processed.
	rep.aligned = time.Now()
	rep.states = make([][]byte, len(c.ops))
	perTask := map[string]map[string][]byte{} // task operator id → task → state
	for i, o := range c.ops {
		if o.snap == nil {
			continue
		}
		var st []byte
		var err error
		if to, ok := o.op.(*taskOperator); ok {
			// One snapshot serves the local checkpoint and the truths.
			var tasks map[string][]byte
			if tasks, err = to.SnapshotTasks(); err == nil {
				perTask[to.id] = tasks
				st, err = encodeTaskStates(tasks)
			}
		} else {
			st, err = o.snap.Snapshot()
		}
		if err != nil {
			return fmt.Errorf("%s: snapshot: %w", o.id, err)
		}
		rep.states[i] = st
	}
	truths := c.truths(rep.tasks, perTask)
	rep.snapshotted = time.Now()
	select {
	case c.reports <- *rep:
	case <-ctx.Done():
		return nil
	}
	return c.broadcast(ctx, message{kind: msgBarrier, barrier: &barrier{id: b.id, final: b.final, truths: truths}})
}

// truths returns the checkpoint's task truths: each owned task's offset
// and its state in every per-task operator (perTask: operator id → task →
// state); nil without tasks.
func (c *chain) truths(offsets map[string]int64, perTask map[string]map[string][]byte) []pipeline.TaskState {
	if len(offsets) == 0 {
		return nil
	}
	out := make([]pipeline.TaskState, 0, len(offsets))
	for _, task := range slices.Sorted(maps.Keys(offsets)) {
		ts := pipeline.TaskState{Task: task, Offset: offsets[task]}
		for id, states := range perTask {
			if st, ok := states[task]; ok {
				if ts.States == nil {
					ts.States = map[string][]byte{}
				}
				ts.States[id] = st
			}
		}
		out = append(out, ts)
	}
	return out
}

// onWatermark hands a source's watermark to every operator that handles
// watermarks, in order; what one emits passes through the operators after
// it.
func (c *chain) onWatermark(ctx context.Context, m message) error {
	for i, o := range c.ops {
		if o.wm == nil {
			continue
		}
		b := &pipeline.Batch{}
		if err := o.wm.OnWatermark(ctx, m.source, m.wm, b); err != nil {
			return fmt.Errorf("%s: watermark: %w", o.id, err)
		}
		if len(b.Records) > 0 || len(b.Dead) > 0 {
			if err := c.processFrom(ctx, i+1, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// onSplits hands a source's split change to the operators that keep
// per-split state, in order, until one that does not forward it (its
// output records no longer carry splits); what one emits passes through
// the operators after it.
func (c *chain) onSplits(ctx context.Context, m message) error {
	for i, o := range c.ops {
		if o.spl == nil {
			continue
		}
		b := &pipeline.Batch{}
		forward, err := o.spl.OnSplits(ctx, m.source, m.splits, b)
		if err != nil {
			return fmt.Errorf("%s: splits: %w", o.id, err)
		}
		if len(b.Records) > 0 || len(b.Dead) > 0 {
			if err := c.processFrom(ctx, i+1, b); err != nil {
				return err
			}
		}
		if !forward {
			return nil
		}
	}
	return nil
}

func (c *chain) onEOF(ctx context.Context) error {
	c.eofs++
	if c.eofs < c.nSources {
		return nil
	}
	// Every input has ended: flush what operators hold, in order, each
	// flush passing through the operators after it.
	for i, o := range c.ops {
		if o.fin == nil {
			continue
		}
		b := &pipeline.Batch{}
		if err := o.fin.Finish(ctx, b); err != nil {
			return fmt.Errorf("%s: finish: %w", o.id, err)
		}
		if err := c.processFrom(ctx, i+1, b); err != nil {
			return err
		}
	}
	if err := c.broadcast(ctx, message{kind: msgEOF}); err != nil {
		return err
	}
	close(c.done)
	return nil
}

// emit sends records to every sink (minus those a sink's schema refuses)
// and dead letters to the dead-letter sink.
func (c *chain) emit(ctx context.Context, b *pipeline.Batch) error {
	dead := b.Dead
	if len(b.Records) > 0 {
		shared := len(c.sinks) > 1
		for _, s := range c.sinks {
			recs := b.Records
			if s.checker != nil {
				recs = make([]*pipeline.Record, 0, len(b.Records))
				for _, r := range b.Records {
					if err := s.checker.Check(r); err != nil {
						dead = append(dead, pipeline.DeadLetter{Record: r, Reason: "schema", Error: err.Error(), Component: s.id})
						continue
					}
					recs = append(recs, r)
				}
			}
			if shared {
				// Sinks run concurrently and reading a lazily decoded field
				// caches it: decode everything once, here, so sinks only read.
				for _, r := range recs {
					r.Fields().DecodeAll()
				}
				recs = append([]*pipeline.Record(nil), recs...)
			}
			if len(recs) == 0 {
				continue
			}
			if err := s.send(ctx, message{kind: msgBatch, batch: &pipeline.Batch{Records: recs}}); err != nil {
				return err
			}
		}
	}
	if len(dead) == 0 {
		return nil
	}
	if c.dead == nil {
		for _, d := range dead {
			c.onDead(d)
		}
		return nil
	}
	now := c.now()
	recs := make([]*pipeline.Record, len(dead))
	for i, d := range dead {
		recs[i] = d.DeadLetterRecord(now)
	}
	return c.dead.send(ctx, message{kind: msgBatch, batch: &pipeline.Batch{Records: recs}})
}

func (c *chain) broadcast(ctx context.Context, m message) error {
	for _, s := range c.sinks {
		if err := s.send(ctx, m); err != nil {
			return err
		}
	}
	if c.dead != nil {
		return c.dead.send(ctx, m)
	}
	return nil
}
