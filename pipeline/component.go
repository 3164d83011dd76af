package pipeline

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Guarantee is a pipeline's delivery promise.
type Guarantee string

// The delivery guarantees; see DESIGN.md "Delivery guarantees".
const (
	ExactlyOnce Guarantee = "exactly_once"
	AtLeastOnce Guarantee = "at_least_once"
	AtMostOnce  Guarantee = "at_most_once"
)

// Build is what a component's constructor receives: who it is, where it may
// keep files, and how to log. It is passed by value and may be kept.
type Build struct {
	Pipeline  string    // pipeline name
	Component string    // stable id, e.g. "app-errors/sinks[0]/file"; used in dead letters and metrics
	Index     int       // position within its list (sources[i], sinks[i])
	Guarantee Guarantee // the pipeline's guarantee
	// Dir is a directory private to this component under data_dir, stable
	// across restarts (staging files, local state). Call MkDir before use.
	Dir    string
	Logger *slog.Logger // never nil
	// CheckpointInterval is the pipeline's checkpoint interval.
	CheckpointInterval time.Duration
	// BatchSize is the most records a source should put in one batch.
	BatchSize int
	// Now is the wall clock; tests replace it.
	Now func() time.Time
	// RequestCheckpoint asks the runtime for a checkpoint now and waits
	// until one that covers every batch the source has returned from Read
	// so far is durable and committed. A Kafka source calls it before giving
	// up partitions in a rebalance. It must not be called from the
	// goroutine that calls Read (the batches it waits for would never be
	// handed on); call it from a callback such as franz-go's
	// OnPartitionsRevoked. Nil outside the runtime.
	RequestCheckpoint func(ctx context.Context) error
	// ClaimTask, when not nil, makes the source's splits tasks (see
	// TaskState): a TaskSource calls it for each partition it is assigned,
	// before reading it, and starts at the claim's offset when one was
	// found. Nil when the pipeline has no TaskStore sink.
	ClaimTask TaskClaimer
	// KeepTasks is set on the one sink that keeps the pipeline's task
	// truths (a TaskStore whose configuration said KeepsTasks): it must
	// lay out its staging for that before the first Recover.
	KeepTasks bool
	// GroupFence, set with KeepTasks, returns the task source's consumer
	// group membership now (see Fence).
	GroupFence func() Fence
}

// MkDir creates b.Dir (and parents) and returns it.
func (b Build) MkDir() (string, error) {
	return b.Dir, os.MkdirAll(b.Dir, 0o755)
}

// Path resolves a path from the configuration: relative paths are relative
// to the working directory weir runs in.
func (b Build) Path(p string) string { return filepath.Clean(p) }

// AckFunc acknowledges a batch upstream (an AMQP ack, an MQTT PUBACK). The
// runtime calls it once the batch is safe to forget: written to the WAL
// under exactly_once, committed by every sink under at_least_once, on
// receipt under at_most_once. It is called from a goroutine other than the
// source's reader, at most once, in batch order.
type AckFunc func(ctx context.Context) error

// Source produces records.
//
// Read and Position are called from one goroutine; Close may be called from
// another once Read has returned.
type Source interface {
	// Read appends the next records to b.Records (up to about the source's
	// batch size) and returns. It blocks until at least one record is
	// available or ctx is done; it may return an empty batch. It returns
	// io.EOF, with no records, once finite input is exhausted. Records that
	// cannot be read (a line over the length limit) go to b.Dead.
	// The returned AckFunc, when not nil, acknowledges exactly these records.
	Read(ctx context.Context, b *Batch) (AckFunc, error)
	Close(ctx context.Context) error
}

// Positioned is implemented by sources that can replay from a position
// (files, Kafka). Sources that cannot are fed through the WAL by the runtime
// under exactly_once.
type Positioned interface {
	// Position returns the position just after the last record returned by
	// Read, as opaque bytes (JSON by convention). Called between Reads.
	Position() ([]byte, error)
	// Seek restores a position returned by Position, before the first Read.
	Seek(ctx context.Context, pos []byte) error
}

// WatermarkSource is implemented by sources that know their own event-time
// progress (Kafka partitions, a generator). After each Read the runtime
// asks for the watermark and, when it has advanced, passes it downstream in
// band, after the batch: "no record older than this will follow from this
// source".
type WatermarkSource interface {
	Watermark() (wm time.Time, ok bool)
}

// SplitChange says how a source's set of splits (Record.Split) changed.
// Event-time operators keep one watermark per split and take the minimum
// over the splits that hold it back (DESIGN.md, "Time and windows"):
//
//   - an Added split holds the watermark where it is until its first
//     record, so a partition whose records are still on their way never
//     sees them made late by a partition fetched ahead of it;
//   - a CaughtUp split has nothing more to read for now (a Kafka partition
//     at its end offset, a followed file at its end): it stops holding the
//     watermark until its next record, as an idle split does. When every
//     split is caught up or idle, the watermark is the largest of theirs;
//   - a Removed split sends no more records (a revoked partition, a file
//     read to its end): it is forgotten;
//   - Reset says Added is the source's whole set: every other split of the
//     source (one restored from a checkpoint, say) is forgotten, with its
//     sub-splits.
//
// A split may have sub-splits, named "split|sub": the records of one Kafka
// partition of a repartition topic, say, that came from one split upstream
// (see SplitTask). A sub-split holds the watermark as a split does; the
// first sub-split of an announced split takes over its hold, and removing
// the split removes its sub-splits.
type SplitChange struct {
	Reset    bool
	Added    []string
	CaughtUp []string
	Removed  []string
	// Finished says the Removed splits have ended (a file read to its
	// end): no process will read more of them. Otherwise a removed split
	// may go on elsewhere (a revoked partition, in the process it moved
	// to). Event-time operators forget removed splits either way; a
	// repartition tells its second stage only of ended ones.
	Finished bool
	// Known lists every split of the source that exists, read here or by
	// another process (the partitions of a Kafka source's topics), once,
	// before the first records. Event-time operators ignore it: a
	// repartition announces them all to its second stage, which holds its
	// watermark for each from the start, whichever process reads it.
	Known []string
	// Progress moves splits on as a record with that event time would,
	// without a record: a split whose records go elsewhere (another
	// partition of a repartition topic) still lets the watermark advance.
	// Sent after the batch, as CaughtUp is.
	Progress []SplitProgress
}

// SplitProgress says that Split has reached event time Time.
type SplitProgress struct {
	Split string
	Time  time.Time
}

// SplitTask returns the split a sub-split belongs to ("t/3" for
// "t/3|0:logs/1"), which is also its task when splits are tasks; a split
// that is not a sub-split is returned as it is.
func SplitTask(split string) string {
	if i := strings.IndexByte(split, '|'); i >= 0 {
		return split[:i]
	}
	return split
}

// Empty reports whether c changes nothing.
func (c SplitChange) Empty() bool {
	return !c.Reset && len(c.Added) == 0 && len(c.Known) == 0 && len(c.CaughtUp) == 0 && len(c.Removed) == 0 && len(c.Progress) == 0
}

// SplitSource is implemented by sources that read several splits in
// parallel and tag records with Record.Split (Kafka partitions, files).
// After each Read the runtime asks for the changes since the previous call
// and passes them downstream in band: Reset and Added before the batch's
// records, CaughtUp and Removed after them. A source that does not
// implement it is one split (Split is empty).
type SplitSource interface {
	SplitChanges() SplitChange
}

// SplitHandler is implemented by operators that keep per-split event-time
// state (windows, dedupe). OnSplits runs in stream order with the index of
// the source the change came from; it may append records to b (windows a
// removed split no longer holds back fire). It reports whether the operators
// after it should see the change too: true when its output records keep
// their Split (dedupe), false when it makes new records (windows).
type SplitHandler interface {
	OnSplits(ctx context.Context, source int, c SplitChange, b *Batch) (forward bool, err error)
}

// Operator transforms batches. It runs on one goroutine: no locking needed.
type Operator interface {
	// Process rewrites b in place: it may drop, change, add or replace
	// records, and appends records it cannot process to b.Dead (a bad
	// record never stops the pipeline). An error stops the pipeline and is
	// for failures that are not the data's fault.
	Process(ctx context.Context, b *Batch) error
}

// Stateless is implemented by operators whose output for a batch depends on
// that batch alone (parse, filter, map): Process keeps nothing from one
// batch to the next. Stateless reports whether this instance is so; an
// operator that wraps a stateless one and adds state returns false.
//
// The runtime runs a pipeline's leading stateless operators on several
// goroutines, one instance each (one NewOperator call per goroutine), on
// different batches at once, and puts the batches back in stream order
// before the operators after them: the output is the same as on one
// goroutine. An operator that also implements Snapshotter, Finisher,
// Ticker, WatermarkHandler or SplitHandler is never run so.
type Stateless interface {
	Operator
	Stateless() bool
}

// Snapshotter is implemented by operators that keep state across batches
// (windows, dedupe). Snapshot runs when a checkpoint barrier passes the
// operator; Restore runs once, before the first Process, on recovery.
type Snapshotter interface {
	Snapshot() ([]byte, error)
	Restore(state []byte) error
}

// WatermarkHandler is implemented by operators that act on watermarks from
// sources (event-time windows). OnWatermark runs in stream order, between
// the batches around it, with the index of the source it came from; it may
// append records to b. Operators that do not implement it pass watermarks
// on unchanged to the operators after them.
type WatermarkHandler interface {
	OnWatermark(ctx context.Context, source int, wm time.Time, b *Batch) error
}

// Finisher is implemented by operators that hold records back (windows):
// Finish runs once when every source has reached the end of its input and
// appends whatever is held to b.
type Finisher interface {
	Finish(ctx context.Context, b *Batch) error
}

// Ticker is implemented by operators that act on the passage of wall-clock
// time (idle-source timeouts). Tick runs on the operator's goroutine, about
// every 100 ms while the pipeline runs, and may append records to b.
type Ticker interface {
	Tick(ctx context.Context, now time.Time, b *Batch) error
}

// Sink consumes records. Write, PreCommit, Commit, Flush and Close are called
// from one goroutine.
type Sink interface {
	// Write takes b.Records; the sink must not keep b after returning (it
	// may keep the records). An error stops the pipeline; the last good
	// checkpoint is kept.
	Write(ctx context.Context, b *Batch) error
	Close(ctx context.Context) error
}

// Committer is the two-phase-commit protocol that exactly_once needs.
type Committer interface {
	// PreCommit makes everything written so far durable but not yet
	// visible (a fsynced staging file, an open transaction) and returns a
	// token that says how to make it visible.
	PreCommit(ctx context.Context, checkpoint uint64) (token []byte, err error)
	// Commit makes a pre-committed token visible. It is idempotent: a
	// second Commit of the same token, in this process or after a restart,
	// changes nothing.
	Commit(ctx context.Context, token []byte) error
	// Recover runs once before the first Write. token is the sink's token
	// in the last complete checkpoint (nil on a fresh start): commit it
	// again, and discard anything staged after it.
	Recover(ctx context.Context, token []byte) error
}

// Flusher is implemented by sinks that buffer: Flush makes everything
// written so far durable. at_least_once flushes at every checkpoint before
// sources are acknowledged.
type Flusher interface {
	Flush(ctx context.Context) error
}

// RecordChecker is implemented by sinks with a fixed schema. The runtime
// calls Check before Write; a record that fails goes to the dead-letter
// output with reason "schema" instead of to this sink.
type RecordChecker interface {
	Check(r *Record) error
}

// SourceConfig is a source's decoded YAML configuration.
type SourceConfig interface {
	NewSource(b Build) (Source, error)
}

// OperatorConfig is an operator's decoded YAML configuration. NewOperator
// may be called more than once (parallel instances); each call returns an
// independent operator.
type OperatorConfig interface {
	NewOperator(b Build) (Operator, error)
}

// OutputPather is implemented by configurations of sinks that write to a
// path: OutputPath is the path (or directory) as configured, template
// text included; empty when it is not a file path (stdout). `weir
// validate` refuses two sinks with the same one.
type OutputPather interface {
	OutputPath() string
}

// OwnedOutput is what a sink writes on the local file system, for the
// run-time lock that keeps every other weir process off it (see
// runtime/output_lock.go): one file (and its rolled parts), or a whole
// directory tree (a parquet or arrow output directory, the literal
// directory of a templated file path).
type OwnedOutput struct {
	Path string // as the sink resolves it (Build.Path)
	Tree bool   // Path is a directory, owned with everything below it
}

// OutputOwner is implemented by configurations of sinks that write to
// the local file system; ok is false when this configuration does not
// (arrow's `path: "-"`).
type OutputOwner interface {
	OwnedOutput() (o OwnedOutput, ok bool)
}

// SinkConfig is a sink's decoded YAML configuration.
type SinkConfig interface {
	NewSink(b Build) (Sink, error)
}

// Validator is implemented by configurations that check themselves after
// decoding (defaults already applied).
type Validator interface {
	Validate() error
}

// GuaranteeWarner is implemented by source configurations that keep a
// delivery guarantee only on a condition the configuration cannot check,
// such as a setting of the publishers. GuaranteeWarning returns what a
// user running the source under g should know, naming the key or setting
// that closes the gap, or "" when there is nothing to say. The warning
// lands in Config.Warnings: `weir validate` prints it and `weir run` logs
// it.
type GuaranteeWarner interface {
	GuaranteeWarning(g Guarantee) string
}

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
