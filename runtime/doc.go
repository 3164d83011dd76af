// Package runtime runs pipelines: one goroutine per source, one for the
// operator chain, one per sink, joined by bounded channels that carry
// batches and, in band, checkpoint barriers and end-of-input markers. A slow
// sink therefore slows the sources (backpressure) and memory stays bounded.
//
// The chain's leading stateless operators (parse, filter, map; see
// pipeline.Stateless) run ahead of it on Options.Workers goroutines
// (GOMAXPROCS by default), one batch each, and the batches are put back in
// stream order, control messages in their places, before the rest of the
// chain (parallelStage). Parsing, usually the costliest step, so uses every
// core while the output stays what one goroutine would write.
//
// Exactly-once follows Flink's asynchronous barrier snapshotting with
// two-phase-commit sinks, in one process:
//
//  1. Every checkpoint_interval the coordinator asks each source stage to
//     inject a barrier between two batches. A source that cannot replay
//     (stdin, queues) has already written every record it passed on to the
//     ingest WAL (group-committed fsync) and acknowledged upstream.
//  2. Barriers from several sources are aligned (a source that sent barrier
//     k waits until every source has), so the operator chain sees all
//     records before barrier k and none after; it snapshots operator state.
//  3. Each sink pre-commits (fsync a staging file, flush a transaction) and
//     returns a token.
//  4. The coordinator writes the checkpoint (positions, states, tokens)
//     with temp file, fsync, rename, fsync dir — and only then tells sinks
//     to commit. Commit is idempotent, so recovery simply re-commits the
//     last checkpoint's tokens, discards later staging, restores operator
//     state and seeks sources (or replays the WAL) to the saved positions.
//
// A barrier, file by file (the one place to change alignment is
// barrier.go; the one place to change what a checkpoint does is
// coordinator.go):
//
//   - run.go starts the stages (built by build.go) and the coordinator;
//   - coordinator.go triggers checkpoint k: a barrierRequest to every
//     source stage;
//   - source_stage.go injects the barrier between two batches, with the
//     source's position, and waits in the aligner (barrier.go) until every
//     source has sent barrier k;
//   - parallel.go passes it through the stateless workers in its place;
//   - chain.go collects one per source (barrier.go, collector), snapshots
//     every operator, reports to the coordinator and sends the barrier on;
//   - sink_stage.go pre-commits each sink and reports its token;
//   - coordinator.go completes: checkpoint_store.go saves it durably, then
//     the sinks commit, at-least-once sources are acknowledged and ingest
//     WALs truncated.
//
// Redeliveries and outputs. A WAL-fed source drops a message whose id is in
// its seen-id set (seen_ids.go), bounded by the source's dedupe_window and
// kept across WAL truncation in a seen-id file. Before it builds anything,
// a pipeline locks its data directory and every output its sinks own on
// disk (output_lock.go), so that no second weir process runs over either.
//
// Splits and tasks. A source that reads several splits at once (Kafka
// partitions, files) reports their changes after each Read; the source
// stage sends them in band (msgSplits: additions and the splits known to
// exist before the batch; caught-up, removed and ended splits and their
// progress after it) and the chain hands them to the
// operators that keep per-split watermarks (pipeline.SplitHandler). When
// the pipeline reads a consumer group into a sink that keeps tasks
// (pipeline.TaskStore; tasks.go), every partition is a task: the source
// claims it through Build.ClaimTask before reading it, aligned keyed
// operators run one instance per task (task_operator.go), the barrier
// carries every task's offset, the chain adds each task's state
// (chain.truths), and the sink commits them with its output. A commit
// refused with pipeline.ErrFenced restarts the pipeline (RunPipeline).
//
// Run a configuration:
//
//	cfg, err := pipeline.LoadFile("pipelines.yaml")
//	...
//	err = runtime.Run(ctx, cfg, nil, stop, runtime.Options{Logger: logger})
//
// Closing stop takes a final checkpoint and returns nil; cancelling ctx
// stops at once and keeps the last checkpoint.
//
// Around that core: Supervisor runs a configuration and reloads it (a
// changed pipeline takes a final checkpoint and restarts; an invalid edit
// is reported and nothing stops); Metrics exposes every pipeline's Stats as
// OpenTelemetry instruments read only when collected, so the per-record
// path pays nothing; Telemetry exports them (Prometheus, OTLP) with a span
// per checkpoint; Admin serves /metrics, /healthz and /readyz; and
// NewLogHandler writes slog records with secrets redacted.
package runtime
