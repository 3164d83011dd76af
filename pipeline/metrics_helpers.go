package pipeline

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

// LateCounter is implemented by operators that drop records arriving after
// their allowed lateness (windows): Late returns how many so far, exported
// as the weir.records.late counter.
type LateCounter interface {
	Late() int64
}
