package sinks

import (
	"bufio"
	"context"
	"io"
	"os"

	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("stdout", "JSON lines to standard output (at-least-once)", false, func() *StdoutConfig { return &StdoutConfig{} })
}

// StdoutConfig configures the stdout sink. It has no options: records are
// written as JSON lines, flushed at every checkpoint and at the end.
type StdoutConfig struct{}

// NewSink implements pipeline.SinkConfig.
func (c *StdoutConfig) NewSink(pipeline.Build) (pipeline.Sink, error) {
	return NewStdout(os.Stdout), nil
}

// NewStdout returns the stdout sink writing to w (tests pass a buffer).
func NewStdout(w io.Writer) *Stdout { return &Stdout{w: bufio.NewWriterSize(w, 64<<10)} }

// Stdout writes JSON lines to a writer. A terminal cannot take back what it
// showed, so it is at-least-once: exactly_once pipelines refuse it.
type Stdout struct {
	w   *bufio.Writer
	buf []byte
}

// Write implements pipeline.Sink.
func (s *Stdout) Write(_ context.Context, b *pipeline.Batch) error {
	for _, r := range b.Records {
		s.buf = r.AppendJSON(s.buf[:0])
		s.buf = append(s.buf, '\n')
		if _, err := s.w.Write(s.buf); err != nil {
			return err
		}
	}
	return nil
}

// Flush implements pipeline.Flusher.
func (s *Stdout) Flush(context.Context) error { return s.w.Flush() }

// Close implements pipeline.Sink.
func (s *Stdout) Close(context.Context) error { return s.w.Flush() }
