package runtime

import (
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

// AckFunc is pipeline.AckFunc, named here for brevity.
type AckFunc = pipeline.AckFunc
