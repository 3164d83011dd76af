package runtime

import (
	"sync/atomic"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// ComponentStats counts what one component has done. Fields are updated
// atomically by the component's stage and may be read at any time.
type ComponentStats struct {
	ID         string
	Records    atomic.Int64 // records out (sources, operators) or written (sinks)
	Dead       atomic.Int64 // records this component sent to the dead-letter output
	Duplicates atomic.Int64 // redeliveries dropped by message id (WAL-fed sources)

	// Observability hooks (metrics, health; see metrics.go). Set while
	// the pipeline is built, before Stats.Running reports true.
	In      atomic.Int64      // operators: records given to Process
	Latency DurationHistogram // operator chain: Process time per batch; sinks: Write time per batch
	late    func() int64      // operators with Late() int64 (windows)
	lag     func() int64      // sources implementing pipeline.Lagger
	walSize func() int64      // sources fed through the ingest WAL: its size in bytes
	// splitLags: sources implementing pipeline.SplitLagger.
	splitLags func() map[string]int64
	// splitWatermarks: operators implementing pipeline.SplitWatermarker.
	splitWatermarks func() map[pipeline.SplitID]time.Time
}

func (c *ComponentStats) addOut(n int)  { c.Records.Add(int64(n)) }
func (c *ComponentStats) addDuplicate() { c.Duplicates.Add(1) }

// Stats is a running pipeline's live figures.
type Stats struct {
	Pipeline   string
	Sources    []*ComponentStats
	Sinks      []*ComponentStats
	DeadLetter ComponentStats // dead letters written (or dropped when no dead_letter is configured)

	Checkpoints        atomic.Int64
	CheckpointFailures atomic.Int64
	lastCheckpoint     atomic.Int64 // unix nanoseconds
	lastDuration       atomic.Int64 // nanoseconds
	lastSize           atomic.Int64 // bytes

	// Observability hooks (metrics, health; see metrics.go).
	Operators          []*ComponentStats // one per operator, in order; set while building
	Chain              ComponentStats    // the operator chain as a whole (batch latency)
	CheckpointDuration DurationHistogram // every completed checkpoint
	queues             []queueGauge      // stage input channels; set before running
	state              atomic.Int32      // a PipelineState
	started            time.Time         // set before running
}

// LastCheckpoint returns when the last checkpoint completed (zero if none),
// how long it took and its size in bytes.
func (s *Stats) LastCheckpoint() (at time.Time, took time.Duration, size int) {
	ns := s.lastCheckpoint.Load()
	if ns == 0 {
		return time.Time{}, 0, 0
	}
	return time.Unix(0, ns), time.Duration(s.lastDuration.Load()), int(s.lastSize.Load())
}

// In returns the records read by all sources.
func (s *Stats) In() int64 {
	var n int64
	for _, c := range s.Sources {
		n += c.Records.Load()
	}
	return n
}

// Out returns the records written by the first sink.
func (s *Stats) Out() int64 {
	if len(s.Sinks) == 0 {
		return 0
	}
	return s.Sinks[0].Records.Load()
}
