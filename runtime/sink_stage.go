package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// sinkReport is a sink's answer to a barrier: its pre-commit token (nil for
// sinks that only flush).
type sinkReport struct {
	id    uint64
	index int // position in the coordinator's sink list
	token []byte

	began, ended time.Time // observability hook: pre-commit span (metrics_trace.go)
}

type commitRequest struct {
	token []byte
	done  chan error
}

// sinkStage runs one sink on its own goroutine: it writes batches, answers
// barriers (pre-commit or flush) and, between batches, commits what the
// coordinator says is checkpointed. All calls into the sink happen on this
// goroutine.
type sinkStage struct {
	index     int
	id        string
	sink      pipeline.Sink
	committer pipeline.Committer // set under exactly_once
	tasks     pipeline.TaskStore // set on the sink that keeps the task truths
	flusher   pipeline.Flusher
	checker   pipeline.RecordChecker
	stats     *ComponentStats

	in      chan message
	commits chan commitRequest
	reports chan<- sinkReport
}

func (s *sinkStage) send(ctx context.Context, m message) error {
	select {
	case s.in <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *sinkStage) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case req := <-s.commits:
			req.done <- s.committer.Commit(ctx, req.token)
		case m := <-s.in:
			switch m.kind {
			case msgBatch:
				n := len(m.batch.Records)
				began := time.Now() // observability hook: batch latency
				if err := s.sink.Write(ctx, m.batch); err != nil {
					return fmt.Errorf("%s: write: %w", s.id, err)
				}
				s.stats.Latency.Observe(time.Since(began))
				s.stats.addOut(n)
			case msgBarrier:
				rep := sinkReport{id: m.barrier.id, index: s.index, began: time.Now()}
				switch {
				case s.tasks != nil:
					tok, err := s.tasks.PreCommitTasks(ctx, m.barrier.id, m.barrier.truths)
					if err != nil {
						return fmt.Errorf("%s: pre-commit checkpoint %d: %w", s.id, m.barrier.id, err)
					}
					rep.token = tok
				case s.committer != nil:
					tok, err := s.committer.PreCommit(ctx, m.barrier.id)
					if err != nil {
						return fmt.Errorf("%s: pre-commit checkpoint %d: %w", s.id, m.barrier.id, err)
					}
					rep.token = tok
				case s.flusher != nil:
					if err := s.flusher.Flush(ctx); err != nil {
						return fmt.Errorf("%s: flush: %w", s.id, err)
					}
				}
				rep.ended = time.Now()
				select {
				case s.reports <- rep:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}

// commit asks the stage to commit token and waits for the result.
func (s *sinkStage) commit(ctx context.Context, token []byte) error {
	req := commitRequest{token: token, done: make(chan error, 1)}
	select {
	case s.commits <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		if err != nil {
			return fmt.Errorf("%s: commit: %w", s.id, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
