package pipeline

import "time"

// Optional capabilities that weir's metrics read (runtime/metrics.go).
// Like the other optional interfaces, they are found by type assertion on
// the running component. Their methods are called from the metrics
// goroutine while the component runs, so they must be safe for concurrent
// use (an atomic load is the usual implementation).

// Lagger is implemented by sources that know how far behind their input
// they are: Kafka's consumer lag in messages, a file source's unread bytes.
// Lag returns the backlog in the source's own unit, documented by the
// source; it is exported as the weir.source.lag gauge.
type Lagger interface {
	Lag() int64
}

// SplitLagger is implemented by sources that read several splits
// (SplitSource) and know the backlog of each: a Kafka partition's end
// offset minus the offset after the last record Read returned. SplitLags
// returns a new map, owned by the caller, from split name (Record.Split)
// to backlog, in the same unit as Lag; a split whose backlog is not known
// yet is left out. It is exported as the weir.source.split.lag gauge.
type SplitLagger interface {
	SplitLags() map[string]int64
}

// SplitID names one split of a pipeline's input: the index of the source
// that reads it (Record.Source) and its name within that source
// (Record.Split). Two sources may each have a split "logs/0".
type SplitID struct {
	Source int
	Split  string
}

// SplitWatermarker is implemented by event-time operators that keep one
// watermark per split (windows, dedupe; see SplitHandler). SplitWatermarks
// returns a new map, owned by the caller, from each split to its own
// watermark: the largest event time seen from it minus the operator's
// bounded out-of-orderness, as of the end of the operator's last call
// (Process, OnSplits, Tick, Restore). A split announced but without a
// record yet is left out; one that is idle or caught up stays, with the
// watermark it had, until the source removes it. The operator's own
// watermark is the minimum over the splits that hold it back. It is
// exported as the weir.operator.split.watermark gauge.
type SplitWatermarker interface {
	SplitWatermarks() map[SplitID]time.Time
}

// LateCounter is implemented by operators that drop records arriving after
// their allowed lateness (windows): Late returns how many so far, exported
// as the weir.records.late counter.
type LateCounter interface {
	Late() int64
}
