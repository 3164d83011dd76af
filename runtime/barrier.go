package runtime

import (
	"sync"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Barriers: the checkpoint markers, and how they are aligned. A barrier's
// way through the runtime is told in coordinator.go.

// barrierRequest asks a source stage to inject a barrier.
type barrierRequest struct {
	id    uint64
	final bool
}

// barrier is a checkpoint marker. One is injected at every source; the
// operator chain aligns them and sends one on to every sink.
type barrier struct {
	id    uint64
	final bool // the last checkpoint before a graceful stop

	// Filled by the source stage that sends it:
	position  []byte    // the source's position after everything before the barrier
	acks      []AckFunc // at_least_once: acks to run once this checkpoint commits
	forwarded uint64    // how many of the source's Reads are before the barrier
	// tasks: the next offset of every task the source owns at the barrier
	// (a TaskSource).
	tasks map[string]int64

	// Filled by the chain for the sinks: the checkpoint's task truths.
	truths []pipeline.TaskState
}

// aligner implements barrier alignment for a channel with several senders
// (Flink's aligned checkpoints, in one process): a sender that has sent
// barrier k blocks in wait(k) until every sender has sent barrier k. Then
// every record sent before barrier k, by any sender, is ahead of the last
// barrier k in the channel, and nothing sent after it is: the receiver can
// snapshot on the last barrier k it reads.
type aligner struct {
	n int

	mu      sync.Mutex // guards arrived
	arrived map[uint64]*alignState
}

type alignState struct {
	count int
	done  chan struct{}
}

func newAligner(n int) *aligner {
	return &aligner{n: n, arrived: map[uint64]*alignState{}}
}

func (a *aligner) state(id uint64) *alignState {
	s, ok := a.arrived[id]
	if !ok {
		s = &alignState{done: make(chan struct{})}
		a.arrived[id] = s
	}
	return s
}

// arrive records that one sender has sent barrier id; it returns the
// channel that is closed once all have.
func (a *aligner) arrive(id uint64) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.state(id)
	s.count++
	if s.count == a.n {
		close(s.done)
		delete(a.arrived, id)
	}
	return s.done
}

// chainReport is what the operator chain tells the coordinator when a
// barrier has aligned: every source's position and every operator's state.
type chainReport struct {
	id        uint64
	final     bool
	positions [][]byte
	forwarded []uint64 // per source: Reads before the barrier
	states    [][]byte
	acks      []AckFunc
	tasks     map[string]int64 // every source's task offsets

	aligned, snapshotted time.Time // observability hook: checkpoint trace (metrics_trace.go)
}

// collector gathers, at the chain, the barrier of one checkpoint from every
// source (the aligner has already made them arrive back to back).
type collector struct {
	nSources int
	pending  map[uint64]*chainReport
	arrived  map[uint64]int
}

func newCollector(nSources int) collector {
	return collector{nSources: nSources, pending: map[uint64]*chainReport{}, arrived: map[uint64]int{}}
}

// add takes one source's barrier (m.kind == msgBarrier). It returns the
// checkpoint's report, with every source's position, once the last source's
// barrier has come, and nil before.
func (c *collector) add(m message) *chainReport {
	b := m.barrier
	rep := c.pending[b.id]
	if rep == nil {
		rep = &chainReport{id: b.id, final: b.final, positions: make([][]byte, c.nSources), forwarded: make([]uint64, c.nSources)}
		c.pending[b.id] = rep
	}
	rep.positions[m.source] = b.position
	rep.forwarded[m.source] = b.forwarded
	for task, off := range b.tasks {
		if rep.tasks == nil {
			rep.tasks = map[string]int64{}
		}
		rep.tasks[task] = off
	}
	rep.acks = append(rep.acks, b.acks...)
	c.arrived[b.id]++
	if c.arrived[b.id] < c.nSources {
		return nil
	}
	delete(c.pending, b.id)
	delete(c.arrived, b.id)
	return rep
}
