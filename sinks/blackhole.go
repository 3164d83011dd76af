package sinks

import (
	"context"
	"sync/atomic"

	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("blackhole", "discard every record (benchmarks; Flink's blackhole connector)", true,
		func() *BlackholeConfig { return &BlackholeConfig{} })
}

// BlackholeConfig is the `blackhole` sink, which discards what it is given,
// as Flink's blackhole connector does in the Nexmark benchmark's reference
// runs: a measurement of a pipeline without the cost of any output.
//
//	sinks:
//	  - blackhole: {}
//
// Records are not encoded. As nothing is ever visible, every checkpoint
// commits trivially, and the sink keeps exactly_once.
type BlackholeConfig struct{}

// NewSink implements pipeline.SinkConfig.
func (c *BlackholeConfig) NewSink(pipeline.Build) (pipeline.Sink, error) { return &Blackhole{}, nil }

// Blackhole is the running blackhole sink.
type Blackhole struct {
	records atomic.Int64 // records discarded; read from any goroutine
}

// Records returns how many records the sink has discarded. Safe for
// concurrent use.
func (s *Blackhole) Records() int64 { return s.records.Load() }

// Write implements pipeline.Sink.
func (s *Blackhole) Write(_ context.Context, b *pipeline.Batch) error {
	s.records.Add(int64(len(b.Records)))
	return nil
}

// PreCommit implements pipeline.Committer: there is nothing to stage.
func (s *Blackhole) PreCommit(context.Context, uint64) ([]byte, error) { return nil, nil }

// Commit implements pipeline.Committer.
func (s *Blackhole) Commit(context.Context, []byte) error { return nil }

// Recover implements pipeline.Committer.
func (s *Blackhole) Recover(context.Context, []byte) error { return nil }

// Close implements pipeline.Sink.
func (s *Blackhole) Close(context.Context) error { return nil }
