package runtime

// Checkpoint traces: the coordinator records when each phase of a
// checkpoint ended and hands the timings to Options.OnCheckpoint once the
// checkpoint completed or failed; CheckpointSpans turns them into one
// OpenTelemetry span per checkpoint with a child per phase, after the
// fact, with explicit timestamps. Nothing of this runs per record.

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/weirhq/weir/pipeline"
)

// CheckpointTrace is the timeline of one checkpoint.
type CheckpointTrace struct {
	Pipeline string
	ID       uint64
	// Final marks the last checkpoint before a graceful stop or the end
	// of finite input.
	Final bool
	// Start is when the coordinator injected the barriers.
	Start time.Time
	// Aligned is when the operator chain had the barrier from every
	// source (barrier alignment); Snapshotted when it had taken every
	// operator's state. Zero when the checkpoint failed before.
	Aligned, Snapshotted time.Time
	// Sinks is each sink's pre-commit (or flush, without two-phase
	// commit), in the order the sinks answered.
	Sinks []SinkPhase
	// Saved is when the checkpoint file was durable; Committed when
	// every sink had committed. Zero when the checkpoint failed before.
	Saved, Committed time.Time
	// End is when the checkpoint completed or failed.
	End time.Time
	// Size is the checkpoint file's size in bytes.
	Size int
	// Err is why the checkpoint failed; nil when it completed.
	Err error
}

// SinkPhase is one sink's part of a checkpoint.
type SinkPhase struct {
	Component  string // "sinks[0]/file", "dead_letter"
	Began, End time.Time
}

// checkpointTiming is what the coordinator records while a checkpoint is
// under way.
type checkpointTiming struct {
	sinks            []sinkReport
	saved, committed time.Time
	size             int
}

// traceCheckpoint hands the checkpoint's timings to opts.OnCheckpoint.
func traceCheckpoint(opts Options, spec *pipeline.Spec, sinks []*sinkStage, cur *inflight, err error) {
	if opts.OnCheckpoint == nil || cur == nil {
		return
	}
	t := CheckpointTrace{Pipeline: spec.Name, ID: cur.id, Final: cur.final, Start: cur.start,
		Saved: cur.timing.saved, Committed: cur.timing.committed, End: time.Now(), Size: cur.timing.size, Err: err}
	if cur.chain != nil {
		t.Aligned, t.Snapshotted = cur.chain.aligned, cur.chain.snapshotted
	}
	for _, r := range cur.timing.sinks {
		id := ""
		if r.index < len(sinks) {
			id = sinks[r.index].stats.ID
		}
		t.Sinks = append(t.Sinks, SinkPhase{Component: id, Began: r.began, End: r.ended})
	}
	opts.OnCheckpoint(t)
}

// CheckpointSpans returns an Options.OnCheckpoint function that records
// each checkpoint as a span named "checkpoint" with children "barrier
// alignment", "snapshot", one "pre-commit" per sink, "save" (the durable
// checkpoint write) and "commit". Attributes: weir.pipeline,
// weir.checkpoint.id, weir.checkpoint.final, weir.checkpoint.size.
func CheckpointSpans(tracer trace.Tracer) func(CheckpointTrace) {
	return func(t CheckpointTrace) {
		ctx, root := tracer.Start(context.Background(), "checkpoint", trace.WithTimestamp(t.Start),
			trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(AttrPipeline.String(t.Pipeline),
				attribute.Int64("weir.checkpoint.id", int64(t.ID)),
				attribute.Bool("weir.checkpoint.final", t.Final)))
		child := func(name string, from, to time.Time, attrs ...attribute.KeyValue) {
			if from.IsZero() || to.IsZero() {
				return
			}
			_, sp := tracer.Start(ctx, name, trace.WithTimestamp(from), trace.WithAttributes(attrs...))
			sp.End(trace.WithTimestamp(to))
		}
		child("barrier alignment", t.Start, t.Aligned)
		child("snapshot", t.Aligned, t.Snapshotted)
		for _, s := range t.Sinks {
			child("pre-commit", s.Began, s.End, AttrComponent.String(s.Component))
		}
		last := t.Snapshotted
		for _, s := range t.Sinks {
			if s.End.After(last) {
				last = s.End
			}
		}
		child("save", last, t.Saved)
		child("commit", t.Saved, t.Committed)
		if t.Size > 0 {
			root.SetAttributes(attribute.Int("weir.checkpoint.size", t.Size))
		}
		if t.Err != nil {
			root.RecordError(t.Err)
			root.SetStatus(codes.Error, "checkpoint failed")
		}
		root.End(trace.WithTimestamp(t.End))
	}
}
