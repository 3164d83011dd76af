package runtime

import (
	"sync"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// msgKind tells what a message on a stage channel carries. Control messages
// travel in band with batches, so their order relative to records is the
// order of the stream.
type msgKind uint8

const (
	msgBatch     msgKind = iota // batch: records (and dead letters) in stream order
	msgBarrier                  // barrier: checkpoint marker
	msgEOF                      // source: this input has ended
	msgWatermark                // source: event time has reached wm
	msgSplits                   // source: its set of splits changed (splits)
)

type message struct {
	kind    msgKind
	batch   *pipeline.Batch
	barrier *barrier
	source  int // for msgEOF, msgBarrier, msgWatermark and msgSplits from a source stage
	wm      time.Time
	splits  pipeline.SplitChange
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

// AckFunc is pipeline.AckFunc, named here for brevity.
type AckFunc = pipeline.AckFunc

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
