package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("stdin", "read lines from standard input until it ends",
		func() *StdinConfig { return NewStdinConfig() })
}

// stdinReadBuffer is the stdin source's read buffer size.
const stdinReadBuffer = 256 << 10

// StdinConfig is the `stdin` source:
//
//	sources:
//	  - stdin: { max_line_bytes: 65536 }
//
// Every line of standard input (terminated by "\n"; a "\r" before it is
// dropped too; the last line may lack one) becomes a record whose Value is
// the line, whose Origin is {Name: "stdin", Offset: the byte offset of the
// line, Line: its 1-based number} and whose Time is the wall clock when it
// was read. Read returns io.EOF once input ends.
//
// Stdin cannot be replayed, so the source is not pipeline.Positioned: under
// exactly_once the runtime writes its records to the WAL before they go on.
type StdinConfig struct {
	// MaxLineBytes is the longest line accepted, in bytes, not counting the
	// line terminator; default 1 MiB. A longer line goes to the dead-letter
	// output with reason "too_long" and only its first bytes (at most
	// 1 KiB); it is never held whole in memory.
	MaxLineBytes int `yaml:"max_line_bytes"`

	// Reader, when not nil, is read instead of os.Stdin (tests, embedders).
	// The source never closes it.
	Reader io.Reader `yaml:"-"`
}

// NewStdinConfig returns a stdin source configuration with its defaults.
func NewStdinConfig() *StdinConfig {
	return &StdinConfig{MaxLineBytes: defaultMaxLineBytes}
}

// Validate implements pipeline.Validator.
func (c *StdinConfig) Validate() error {
	if c.MaxLineBytes < 1 || c.MaxLineBytes > 1<<30 {
		return fmt.Errorf("max_line_bytes: want 1 to 1073741824, got %d", c.MaxLineBytes)
	}
	return nil
}

// NewSource implements pipeline.SourceConfig.
func (c *StdinConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	r := c.Reader
	if r == nil {
		r = os.Stdin
	}
	now := b.Now
	if now == nil {
		now = time.Now
	}
	batch := b.BatchSize
	if batch <= 0 {
		batch = pipeline.DefaultBatchSize
	}
	log := b.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &stdinSource{
		r:     r,
		lr:    newLineReader("stdin", "stdin", b.Component, b.Index, now, c.MaxLineBytes, stdinReadBuffer),
		batch: batch,
		log:   log,
		out:   make(chan *pipeline.Batch, 1),
		stop:  make(chan struct{}),
	}, nil
}

// stdinSource reads in a goroutine of its own, because a read from a pipe
// or terminal cannot be interrupted: Read then waits on a channel it can
// give up on when ctx ends or when maxReadWait passes, so the runtime
// regains control for checkpoint barriers however quiet the input.
type stdinSource struct {
	r     io.Reader
	lr    lineReader // owned by the reading goroutine
	batch int
	log   *slog.Logger

	startOnce sync.Once
	out       chan *pipeline.Batch // reader goroutine → Read; closed after the last batch
	err       error                // why out was closed (io.EOF at the end); written before close(out)
	stop      chan struct{}        // closed by Close: the goroutine exits at its next send
	closeOnce sync.Once
	timer     *time.Timer // used by Read only
	ended     bool        // Read saw out closed
}

// Read implements pipeline.Source. It waits at most about 200 ms for
// input and may return an empty batch.
func (s *stdinSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	if s.ended {
		return nil, s.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err // whatever else is ready: select would pick at random
	}
	s.startOnce.Do(func() { go s.run() })
	if s.timer == nil {
		s.timer = time.NewTimer(maxReadWait)
	} else {
		s.timer.Reset(maxReadWait)
	}
	defer s.timer.Stop()
	select {
	case got, ok := <-s.out:
		if !ok {
			s.ended = true
			return nil, s.err
		}
		b.Records = append(b.Records, got.Records...)
		b.Dead = append(b.Dead, got.Dead...)
		return nil, nil
	case <-s.timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run reads input into batches until it ends, fails or Close is called.
func (s *stdinSource) run() {
	pool := bufferPool{size: stdinReadBuffer}
	s.lr.acquire(&pool)
	err := s.loop()
	if errors.Is(err, errStopped) {
		return // nobody is reading any more: out stays open
	}
	s.err = err
	close(s.out)
}

var errStopped = errors.New("stdin: source closed")

func (s *stdinSource) loop() error {
	for {
		b := &pipeline.Batch{}
		eof, err := s.lr.read(s.r, b, s.batch, false)
		if err != nil {
			if serr := s.send(b); serr != nil {
				return serr
			}
			return fmt.Errorf("stdin: read: %w", err)
		}
		if eof {
			if len(b.Records) >= s.batch && s.lr.buffered() > 0 {
				if err := s.send(b); err != nil {
					return err
				}
				b = &pipeline.Batch{}
			}
			s.lr.flushPartial(b)
			if err := s.send(b); err != nil {
				return err
			}
			return io.EOF
		}
		if err := s.send(b); err != nil {
			return err
		}
	}
}

func (s *stdinSource) send(b *pipeline.Batch) error {
	if len(b.Records)+len(b.Dead) == 0 {
		return nil
	}
	select {
	case s.out <- b:
		return nil
	case <-s.stop:
		return errStopped
	}
}

// Close implements pipeline.Source. A read blocked on input returns only
// when input arrives or ends; the reading goroutine then exits without
// delivering it.
func (s *stdinSource) Close(context.Context) error {
	s.closeOnce.Do(func() { close(s.stop) })
	return nil
}
