package sources

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("dead_letters", "the original bytes of the dead letters in a dead-letter file, for a replay", func() *DeadLettersConfig {
		return &DeadLettersConfig{}
	})
}

// DeadLettersConfig is the `dead_letters:` source, which `weir
// replay-dead-letters` uses to feed dead letters back into their pipeline
// once their cause is fixed:
//
//   - dead_letters:
//     path: out/dead.jsonl     # a dead-letter file, as the file sink writes one
//     reasons: [parse]         # only these reasons (default all)
//     components: [app/operators[0]/parse]  # only from these components (default all)
//     pipeline: app            # only from this pipeline's components (default all)
//
// Each dead letter with its original bytes (`value`, or `value_base64`)
// becomes a record holding those bytes, as the source first read them; a
// dead letter made by an operator (a `record` of fields, no bytes) cannot
// be replayed and is skipped, and counted. The file is read up to the
// length it had when the replay started (kept in the position), so the
// dead letters the replay writes itself are never read again. The position
// is the byte offset in the file, so the replay resumes where its last
// checkpoint was and exactly_once holds as for any replayable source: each
// dead letter is replayed into the committed output once.
type DeadLettersConfig struct {
	Path       string   `yaml:"path"`
	Reasons    []string `yaml:"reasons"`
	Components []string `yaml:"components"`
	Pipeline   string   `yaml:"pipeline"`
}

// Validate implements pipeline.Validator.
func (c *DeadLettersConfig) Validate() error {
	if c.Path == "" {
		return errors.New("dead_letters: `path` is required")
	}
	return nil
}

// NewSource implements pipeline.SourceConfig.
func (c *DeadLettersConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	batch := b.BatchSize
	if batch <= 0 {
		batch = pipeline.DefaultBatchSize
	}
	now := b.Now
	if now == nil {
		now = time.Now
	}
	return &deadLetterSource{cfg: *c, batch: batch, index: b.Index, now: now, logger: b.Logger}, nil
}

type deadLetterSource struct {
	cfg    DeadLettersConfig
	batch  int
	index  int
	now    func() time.Time
	logger *slog.Logger // may be nil

	f      *os.File
	r      *bufio.Reader
	pos    deadLetterPosition
	seeked bool
	// Skipped counts dead letters that cannot be replayed (no bytes).
	Skipped int
}

// deadLetterPosition is the source's position: the next byte to read,
// the line number of that byte, and where the file ended when the replay
// began.
type deadLetterPosition struct {
	Offset int64 `json:"offset"`
	Line   int64 `json:"line"`
	End    int64 `json:"end"`
}

// deadLetter is the part of a dead-letter record a replay reads.
type deadLetter struct {
	Reason      string `json:"reason"`
	Component   string `json:"component"`
	Value       *string
	ValueBase64 []byte `json:"value_base64"`
}

// fixEnd sets where reading stops, on a fresh start: the file's length now.
func (s *deadLetterSource) fixEnd() error {
	if s.seeked {
		return nil
	}
	fi, err := os.Stat(s.cfg.Path)
	if err != nil {
		return fmt.Errorf("dead_letters: %w", err)
	}
	s.pos = deadLetterPosition{End: fi.Size()}
	s.seeked = true
	return nil
}

func (s *deadLetterSource) open() error {
	if s.f != nil {
		return nil
	}
	if err := s.fixEnd(); err != nil {
		return err
	}
	f, err := os.Open(s.cfg.Path)
	if err != nil {
		return fmt.Errorf("dead_letters: %w", err)
	}
	if _, err := f.Seek(s.pos.Offset, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("dead_letters: %w", err)
	}
	s.f, s.r = f, bufio.NewReaderSize(io.LimitReader(f, s.pos.End-s.pos.Offset), 64<<10)
	return nil
}

// Read implements pipeline.Source.
func (s *deadLetterSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	for len(b.Records) < s.batch {
		start := s.pos.Offset
		line, err := s.r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] != '\n' {
			// A last line without its newline (the end fixed at the start
			// cut it, or a torn write): not a whole dead letter.
			line, err = nil, io.EOF
		}
		if len(line) > 0 {
			s.pos.Offset += int64(len(line))
			s.pos.Line++
			if r, ok := s.record(line, start); ok {
				b.Records = append(b.Records, r)
			}
		}
		if errors.Is(err, io.EOF) {
			if len(b.Records) > 0 {
				return nil, nil
			}
			if s.Skipped > 0 && s.logger != nil {
				s.logger.Info("dead_letters: skipped dead letters made by an operator (they have no original bytes to replay)", "count", s.Skipped)
			}
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("dead_letters: read %s: %w", s.cfg.Path, err)
		}
	}
	return nil, nil
}

// record turns one dead-letter line into the record to replay, when it is
// selected and has its bytes.
func (s *deadLetterSource) record(line []byte, offset int64) (*pipeline.Record, bool) {
	var d deadLetter
	if err := json.Unmarshal(line, &d); err != nil {
		return nil, false // not a dead letter
	}
	if len(s.cfg.Reasons) > 0 && !slices.Contains(s.cfg.Reasons, d.Reason) ||
		s.cfg.Pipeline != "" && !strings.HasPrefix(d.Component, s.cfg.Pipeline+"/") {
		return nil, false
	}
	if len(s.cfg.Components) > 0 && !slices.ContainsFunc(s.cfg.Components, func(c string) bool {
		return d.Component == c || strings.HasSuffix(d.Component, "/"+c)
	}) {
		return nil, false
	}
	var value []byte
	switch {
	case d.Value != nil:
		value = []byte(*d.Value)
	case d.ValueBase64 != nil:
		value = d.ValueBase64
	default:
		s.Skipped++
		return nil, false
	}
	return &pipeline.Record{Value: value, Time: s.now(), Source: s.index,
		Origin: pipeline.Origin{Name: s.cfg.Path, Offset: offset, Line: s.pos.Line}}, true
}

// Position implements pipeline.Positioned.
func (s *deadLetterSource) Position() ([]byte, error) {
	if err := s.fixEnd(); err != nil {
		return nil, err
	}
	return json.Marshal(s.pos)
}

// Seek implements pipeline.Positioned.
func (s *deadLetterSource) Seek(_ context.Context, pos []byte) error {
	var p deadLetterPosition
	if err := json.Unmarshal(pos, &p); err != nil {
		return fmt.Errorf("dead_letters: bad position: %w", err)
	}
	s.pos, s.seeked = p, true
	return nil
}

// Close implements pipeline.Source.
func (s *deadLetterSource) Close(context.Context) error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
