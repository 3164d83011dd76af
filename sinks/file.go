package sinks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weirhq/weir/internal/durable"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("file", "JSON lines to files; exactly-once by staged appends", true, func() *FileConfig {
		return &FileConfig{MaxOpenFiles: 64, BufferBytes: 256 << 10}
	})
}

// FileConfig configures the file sink.
type FileConfig struct {
	// Path of the output file; may hold {{ expression }} templates
	// (`out/{{ date(ts) }}/errors.jsonl`) to spread records over files.
	Path *pipeline.Template `yaml:"path"`
	// MaxBytes rolls to a new part once a file reaches this size; 0 never.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxAge rolls to a new part once a file is this old (wall clock); 0 never.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxOpenFiles bounds the files open at once for templated paths.
	MaxOpenFiles int `yaml:"max_open_files"`
	// BufferBytes is the write buffer per open file.
	BufferBytes int `yaml:"buffer_bytes"`
}

// Validate implements pipeline.Validator.
func (c *FileConfig) Validate() error {
	switch {
	case c.Path == nil || c.Path.Source == "":
		return errors.New("file: `path` is required")
	case c.MaxBytes < 0 || c.MaxAge < 0:
		return errors.New("file: max_bytes and max_age must not be negative")
	case c.MaxOpenFiles < 1:
		return errors.New("file: max_open_files must be at least 1")
	case c.BufferBytes < 4096:
		return errors.New("file: buffer_bytes must be at least 4096")
	}
	return nil
}

// NewSink implements pipeline.SinkConfig.
func (c *FileConfig) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	s := &FileSink{cfg: *c, path: c.Path.Clone(), exactly: b.Guarantee == pipeline.ExactlyOnce,
		sync: b.Guarantee != pipeline.AtMostOnce, now: b.Now, streams: map[string]*fileStream{}, seqs: map[string]int{}}
	if s.now == nil {
		s.now = time.Now
	}
	s.constant = s.path.IsConstant()
	if s.exactly {
		dir, err := b.MkDir()
		if err != nil {
			return nil, fmt.Errorf("file: create staging dir: %w", err)
		}
		s.stagingDir = filepath.Join(dir, "staging")
		if err := os.MkdirAll(s.stagingDir, 0o755); err != nil {
			return nil, fmt.Errorf("file: create staging dir: %w", err)
		}
		s.stagePrefix = fmt.Sprintf("%x", time.Now().UnixNano())
	}
	return s, nil
}

// FileSink writes records as JSON lines.
//
// Under exactly_once, what is written between two checkpoints goes to a
// staging file; PreCommit fsyncs it and returns a token that names, per
// part, the staging file, the final file, the offset at which its bytes
// belong and their length. Commit appends the staged bytes to the final
// file at that offset (truncating anything beyond it first) and fsyncs: it
// is idempotent, because a final file already at offset+length is left
// alone. Final files therefore only ever hold committed data, under their
// final names, byte-identical to an uninterrupted run. Under at_least_once
// the sink appends to the final files directly and fsyncs at checkpoints.
type FileSink struct {
	cfg      FileConfig
	path     *pipeline.Template
	constant bool
	exactly  bool
	sync     bool
	now      func() time.Time

	stagingDir  string
	stagePrefix string
	stageSeq    int

	streams map[string]*fileStream // by rendered path
	seqs    map[string]int         // part number per rendered path, across restarts
	pending []stagedPart           // closed staging files not yet in a token
	lineBuf []byte
	pathBuf []byte
	clock   int64 // LRU clock for max_open_files
}

type fileStream struct {
	base   string // rendered path
	final  string // current part's file name
	size   int64  // bytes in the final file once everything written is committed
	opened time.Time
	used   int64

	f      *os.File // staging file (exactly_once) or final file
	w      *bufio.Writer
	offset int64 // exactly_once: where the staging file's bytes go in final
	staged int64 // exactly_once: bytes written to the staging file
	stage  string
}

type stagedPart struct {
	Staging string `json:"staging"`
	Final   string `json:"final"`
	Offset  int64  `json:"offset"`
	Length  int64  `json:"length"`
}

type fileToken struct {
	Parts []stagedPart   `json:"parts"`
	Seqs  map[string]int `json:"seqs,omitempty"`
}

func (s *FileSink) rolling() bool { return s.cfg.MaxBytes > 0 || s.cfg.MaxAge > 0 }

// partName is base when the sink never rolls, and base with a part number
// before the extension otherwise: errors.jsonl → errors-000001.jsonl.
func (s *FileSink) partName(base string, seq int) string {
	if !s.rolling() {
		return base
	}
	ext := filepath.Ext(base)
	return fmt.Sprintf("%s-%06d%s", strings.TrimSuffix(base, ext), seq, ext)
}

// Write implements pipeline.Sink.
func (s *FileSink) Write(_ context.Context, b *pipeline.Batch) error {
	var cur *fileStream
	for _, r := range b.Records {
		if cur == nil || !s.constant {
			base := s.path.Source
			if !s.constant {
				var err error
				s.pathBuf, err = s.path.Render(s.pathBuf[:0], r)
				if err != nil {
					return fmt.Errorf("file: render path: %w", err)
				}
				base = string(s.pathBuf)
			}
			st, err := s.stream(base)
			if err != nil {
				return err
			}
			cur = st
		}
		s.lineBuf = r.AppendJSON(s.lineBuf[:0])
		s.lineBuf = append(s.lineBuf, '\n')
		if err := s.write(cur, s.lineBuf); err != nil {
			return err
		}
		if s.cfg.MaxBytes > 0 && cur.size >= s.cfg.MaxBytes {
			if err := s.roll(cur); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *FileSink) stream(base string) (*fileStream, error) {
	s.clock++
	st := s.streams[base]
	if st != nil && s.cfg.MaxAge > 0 && s.now().Sub(st.opened) >= s.cfg.MaxAge && st.size > 0 {
		if err := s.roll(st); err != nil {
			return nil, err
		}
		st = nil
	}
	if st == nil {
		if len(s.streams) >= s.cfg.MaxOpenFiles {
			if err := s.evictOldest(); err != nil {
				return nil, err
			}
		}
		seq := s.seqs[base]
		if seq == 0 {
			seq = 1
			s.seqs[base] = seq
		}
		st = &fileStream{base: base, final: s.partName(base, seq), opened: s.now()}
		size, err := fileSize(st.final)
		if err != nil {
			return nil, err
		}
		st.size = size + s.pendingLen(st.final)
		s.streams[base] = st
	}
	st.used = s.clock
	return st, nil
}

// pendingLen is what closed staging files will add to final once committed.
func (s *FileSink) pendingLen(final string) int64 {
	var n int64
	for _, p := range s.pending {
		if p.Final == final {
			n += p.Length
		}
	}
	return n
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("file: %w", err)
	}
	return fi.Size(), nil
}

func (s *FileSink) write(st *fileStream, line []byte) error {
	if st.f == nil {
		if err := s.open(st); err != nil {
			return err
		}
	}
	if _, err := st.w.Write(line); err != nil {
		return fmt.Errorf("file: write %s: %w", st.final, err)
	}
	st.size += int64(len(line))
	st.staged += int64(len(line))
	return nil
}

func (s *FileSink) open(st *fileStream) error {
	if err := os.MkdirAll(filepath.Dir(st.final), 0o755); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	var err error
	if s.exactly {
		s.stageSeq++
		st.stage = filepath.Join(s.stagingDir, fmt.Sprintf("%s-%06d.part", s.stagePrefix, s.stageSeq))
		st.f, err = os.OpenFile(st.stage, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		st.offset, st.staged = st.size, 0
	} else {
		st.f, err = os.OpenFile(st.final, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
	if err != nil {
		return fmt.Errorf("file: open: %w", err)
	}
	if st.w == nil {
		st.w = bufio.NewWriterSize(st.f, s.cfg.BufferBytes)
	} else {
		st.w.Reset(st.f)
	}
	return nil
}

// closeFile flushes, fsyncs and closes a stream's open file; a staging file
// becomes a pending part of the next token.
func (s *FileSink) closeFile(st *fileStream) error {
	if st.f == nil {
		return nil
	}
	if err := st.w.Flush(); err != nil {
		return fmt.Errorf("file: write %s: %w", st.final, err)
	}
	if s.sync {
		if err := st.f.Sync(); err != nil {
			return fmt.Errorf("file: fsync %s: %w", st.final, err)
		}
	}
	if err := st.f.Close(); err != nil {
		return fmt.Errorf("file: close %s: %w", st.final, err)
	}
	st.f = nil
	if s.exactly {
		s.pending = append(s.pending, stagedPart{Staging: st.stage, Final: st.final, Offset: st.offset, Length: st.staged})
	}
	return nil
}

func (s *FileSink) roll(st *fileStream) error {
	if err := s.closeFile(st); err != nil {
		return err
	}
	s.seqs[st.base]++
	delete(s.streams, st.base)
	return nil
}

func (s *FileSink) evictOldest() error {
	var oldest *fileStream
	for _, st := range s.streams {
		if oldest == nil || st.used < oldest.used {
			oldest = st
		}
	}
	if err := s.closeFile(oldest); err != nil {
		return err
	}
	delete(s.streams, oldest.base)
	return nil
}

// Flush implements pipeline.Flusher (at_least_once): everything written is
// on disk when it returns.
func (s *FileSink) Flush(context.Context) error {
	for _, st := range s.streams {
		if st.f == nil {
			continue
		}
		if err := st.w.Flush(); err != nil {
			return fmt.Errorf("file: write %s: %w", st.final, err)
		}
		if s.sync {
			if err := st.f.Sync(); err != nil {
				return fmt.Errorf("file: fsync %s: %w", st.final, err)
			}
		}
	}
	return nil
}

// PreCommit implements pipeline.Committer.
func (s *FileSink) PreCommit(context.Context, uint64) ([]byte, error) {
	for _, st := range s.streams {
		if err := s.closeFile(st); err != nil {
			return nil, err
		}
	}
	tok := fileToken{Parts: s.pending, Seqs: s.seqs}
	data, err := json.Marshal(tok)
	s.pending = nil
	return data, err
}

// Commit implements pipeline.Committer.
func (s *FileSink) Commit(_ context.Context, token []byte) error {
	var tok fileToken
	if err := json.Unmarshal(token, &tok); err != nil {
		return fmt.Errorf("file: bad commit token: %w", err)
	}
	for _, p := range tok.Parts {
		if err := applyPart(p); err != nil {
			return err
		}
	}
	return nil
}

// applyPart appends a staged part to its final file, idempotently.
func applyPart(p stagedPart) error {
	size, err := fileSize(p.Final)
	if err != nil {
		return err
	}
	switch {
	case size >= p.Offset+p.Length:
		// Committed before (this is a replay of the commit).
		if err := os.Remove(p.Staging); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("file: %w", err)
		}
		return nil
	case size < p.Offset:
		return fmt.Errorf("file: %s holds %d bytes but %d were committed before this checkpoint: was it changed outside weir?", p.Final, size, p.Offset)
	}
	src, err := os.Open(p.Staging)
	if err != nil {
		return fmt.Errorf("file: staged data for %s is missing: %w", p.Final, err)
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(p.Final), 0o755); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	dst, err := os.OpenFile(p.Final, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	err = func() error {
		if err := dst.Truncate(p.Offset); err != nil {
			return err
		}
		if _, err := dst.Seek(p.Offset, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(dst, src, p.Length); err != nil {
			return err
		}
		return dst.Sync()
	}()
	if err != nil {
		// Keep the visible file clean (a full disk leaves part of the
		// append); recovery re-applies the whole part.
		_ = dst.Truncate(p.Offset)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("file: commit %s: %w", p.Final, err)
	}
	if size == 0 {
		if err := durable.SyncDir(filepath.Dir(p.Final)); err != nil {
			return fmt.Errorf("file: %w", err)
		}
	}
	if err := os.Remove(p.Staging); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("file: %w", err)
	}
	return nil
}

// Recover implements pipeline.Committer: it re-commits the last
// checkpoint's parts and deletes every staging file written after it.
func (s *FileSink) Recover(ctx context.Context, token []byte) error {
	if token != nil {
		if err := s.Commit(ctx, token); err != nil {
			return err
		}
		var tok fileToken
		_ = json.Unmarshal(token, &tok)
		for k, v := range tok.Seqs {
			s.seqs[k] = v
		}
	}
	entries, err := os.ReadDir(s.stagingDir)
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(s.stagingDir, e.Name())); err != nil {
			return fmt.Errorf("file: discard uncommitted staging: %w", err)
		}
	}
	return nil
}

// Close implements pipeline.Sink. It never commits: under exactly_once,
// data not covered by a checkpoint stays staged and is discarded on
// recovery; otherwise it is flushed.
func (s *FileSink) Close(context.Context) error {
	var errs []error
	for _, st := range s.streams {
		if st.f == nil {
			continue
		}
		if !s.exactly {
			errs = append(errs, st.w.Flush())
		}
		errs = append(errs, st.f.Close())
		st.f = nil
	}
	return errors.Join(errs...)
}
