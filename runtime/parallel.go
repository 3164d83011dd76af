package runtime

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/weirhq/weir/pipeline"
)

// parallelStage runs a pipeline's leading stateless operators (parse,
// filter, map, ...) on several goroutines at once, one batch each, and
// hands the batches on in the order they arrived: the chain after it sees
// exactly the stream it would see if it ran those operators itself.
//
// Control messages (barriers, watermarks, end of input) keep their place in
// the stream: they wait in the order queue behind the batches sent before
// them, so a barrier still reaches the chain after every record read before
// it. The stateless operators have no state to snapshot, so checkpoints are
// unchanged.
//
//	in ─▶ dispatch ─┬─▶ worker 0 ─┐
//	                ├─▶ worker 1 ─┼─▶ collect (in order) ─▶ out
//	                └── order ────┘
type parallelStage struct {
	ops     []*operatorInstance // the stateless prefix; each has one copy per worker
	workers int
	in      <-chan message
	out     chan<- message
}

// parallelJob is one message in flight. done is closed once the workers
// have processed it (at once for a control message).
type parallelJob struct {
	m    message
	err  error
	done chan struct{}
}

func (p *parallelStage) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	jobs := make(chan *parallelJob, p.workers)
	// order bounds the batches in flight between dispatch and collect to
	// one per worker (plus the one each end holds), so memory stays bounded
	// as on any stage channel; twice that measured no faster and 10 MB
	// larger on p1-filter.
	order := make(chan *parallelJob, p.workers)
	g.Go(func() error {
		defer close(jobs)
		defer close(order)
		for {
			var m message
			var ok bool
			select {
			case <-ctx.Done():
				return nil
			case m, ok = <-p.in:
				if !ok {
					return nil
				}
			}
			j := &parallelJob{m: m, done: make(chan struct{})}
			batch := m.kind == msgBatch
			if !batch {
				close(j.done) // a control message only keeps its place
			}
			select {
			case order <- j:
			case <-ctx.Done():
				return nil
			}
			if !batch {
				continue
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return nil
			}
		}
	})
	for w := range p.workers {
		g.Go(func() error {
			for j := range jobs {
				j.err = p.process(ctx, w, j.m.batch)
				close(j.done)
			}
			return nil
		})
	}
	g.Go(func() error {
		for j := range order {
			select {
			case <-j.done:
			case <-ctx.Done():
				return nil
			}
			if j.err != nil {
				return j.err
			}
			select {
			case p.out <- j.m:
			case <-ctx.Done():
				return nil
			}
		}
		return nil
	})
	return g.Wait()
}

// process runs worker w's copies of the stateless operators on b.
func (p *parallelStage) process(ctx context.Context, w int, b *pipeline.Batch) error {
	for _, o := range p.ops {
		if len(b.Records) == 0 {
			break
		}
		o.stats.In.Add(int64(len(b.Records)))
		if err := o.copies[w].Process(ctx, b); err != nil {
			return fmt.Errorf("%s: %w", o.id, err)
		}
		o.stats.addOut(len(b.Records))
	}
	return nil
}

// parallelizable reports whether an operator may run as several instances
// in a parallelStage.
func parallelizable(o *operatorInstance) bool {
	s, ok := o.op.(pipeline.Stateless)
	return ok && s.Stateless() && o.snap == nil && o.fin == nil && o.tick == nil && o.wm == nil && o.spl == nil
}
