package sinks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	// It is rendered with pipeline.Template.RenderPath: each value is
	// escaped to stay inside its path segment (`user=../../x` writes
	// out/%2E%2E%2F..%2Fx.jsonl, inside out/). A record whose path cannot
	// be rendered (an expression error, an empty value, a segment over
	// pipeline.MaxPathSegment bytes) goes to the dead-letter output.
	Path *pipeline.Template `yaml:"path"`
	// MaxBytes rolls to a new part once a file reaches this size; 0 never.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxAge rolls to a new part once a file is this old (wall clock); 0 never.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxOpenFiles bounds the files open at once for templated paths.
	MaxOpenFiles int `yaml:"max_open_files"`
	// BufferBytes is the write buffer per open file.
	BufferBytes int `yaml:"buffer_bytes"`
	// Compression is none (default), gzip or zstd: the file is a sequence
	// of complete members or frames (see file_compress.go). The path is
	// used as written: give it the extension (.jsonl.gz, .jsonl.zst).
	Compression string `yaml:"compression"`
}

// OutputPath implements pipeline.OutputPather.
func (c *FileConfig) OutputPath() string {
	if c.Path == nil {
		return ""
	}
	return c.Path.Source
}

// OwnedOutput implements pipeline.OutputOwner: the file, or for a
// templated path the directory its literal text ends in (out/ for
// out/{{ date(ts) }}/{{ service }}.jsonl), whose tree the values fill.
func (c *FileConfig) OwnedOutput() (pipeline.OwnedOutput, bool) {
	if c.Path == nil || c.Path.Source == "" {
		return pipeline.OwnedOutput{}, false
	}
	src := c.Path.Source
	if i := strings.Index(src, "{{"); i >= 0 {
		return pipeline.OwnedOutput{Path: filepath.Dir(src[:i]), Tree: true}, true
	}
	return pipeline.OwnedOutput{Path: filepath.Clean(src)}, true
}

// Validate implements pipeline.Validator.
func (c *FileConfig) Validate() error {
	switch {
	case c.Path == nil || c.Path.Source == "":
		return errors.New("file: `path` is required")
	case strings.HasSuffix(c.Path.Source, "/"):
		return fmt.Errorf("file: path %q ends in \"/\": it names a directory, not a file", c.Path.Source)
	case c.MaxBytes < 0 || c.MaxAge < 0:
		return errors.New("file: max_bytes and max_age must not be negative")
	case c.MaxOpenFiles < 1:
		return errors.New("file: max_open_files must be at least 1")
	case c.BufferBytes < 4096:
		return errors.New("file: buffer_bytes must be at least 4096")
	case c.Compression != "" && c.Compression != CompressionNone && c.Compression != CompressionGzip && c.Compression != CompressionZstd:
		return fmt.Errorf("file: compression: %q is not one of none, gzip, zstd", c.Compression)
	}
	return nil
}

// NewSink implements pipeline.SinkConfig. Under at_least_once it first cuts
// every file the last run wrote after its last flush back to the length
// flushed then (see FileSink).
func (c *FileConfig) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	s := &FileSink{cfg: *c, path: c.Path.Clone(), checkPath: c.Path.Clone(), exactly: b.Guarantee == pipeline.ExactlyOnce,
		sync: b.Guarantee != pipeline.AtMostOnce, now: b.Now, logger: b.Logger,
		streams: map[string]*fileStream{}, seqs: map[string]int{}, started: map[string]time.Time{}, ends: map[string]int64{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.constant = s.path.IsConstant()
	s.compress = c.Compression == CompressionGzip || c.Compression == CompressionZstd
	switch b.Guarantee {
	case pipeline.ExactlyOnce:
		dir, err := b.MkDir()
		if err != nil {
			return nil, fmt.Errorf("file: create staging dir: %w", err)
		}
		s.stagingDir = filepath.Join(dir, "staging")
		if err := os.MkdirAll(s.stagingDir, 0o755); err != nil {
			return nil, fmt.Errorf("file: create staging dir: %w", err)
		}
		s.stagePrefix = fmt.Sprintf("%x", time.Now().UnixNano())
	case pipeline.AtLeastOnce:
		if b.Dir == "" {
			break
		}
		s.stateDir = b.Dir
		if err := s.restoreFlushed(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// FileSink writes records as JSON lines.
//
// Under exactly_once, what is written to one output file between two
// checkpoints goes to one staging file of its own under the component's
// directory, whatever the number of times max_open_files closes and
// reopens it. PreCommit fsyncs the staging files and returns a token that
// names, per output file, the staging file, the offset at which its bytes
// belong (the output file's length once every earlier token is committed)
// and their length. Commit appends the staged bytes to the output file at
// that offset (truncating anything beyond it first) and fsyncs: it is
// idempotent, because a file already at offset+length is left alone. Output
// files therefore only ever hold committed data, under their final names,
// byte-identical to an uninterrupted run. The offset of a file's next part
// is the end of its part in a token not yet committed, if there is one,
// and its length on disk otherwise.
//
// Under at_least_once the sink appends to the output files directly. At
// each checkpoint Flush fsyncs every file written since the last one and
// then records their lengths (and part numbers) in flushed.json in the
// component's directory; the next run cuts those files back to these
// lengths before anything else, so what a crash left half-written after the
// last flush is gone (those records are written again from the last
// checkpoint). A file first written after the last flush is not in the
// record: if it does not end with a newline, its unterminated last line is
// cut when the sink next opens it.
//
// Write, Flush, PreCommit, Commit, Recover and Close run on the sink's
// goroutine; Check may run concurrently on another (it only uses checkPath,
// under checkMu).
type FileSink struct {
	cfg      FileConfig
	path     *pipeline.Template // rendered by Write
	constant bool
	exactly  bool
	sync     bool
	now      func() time.Time
	logger   *slog.Logger

	checkMu   sync.Mutex         // guards checkPath and checkBuf
	checkPath *pipeline.Template // Check's own clone of the path template
	checkBuf  []byte

	stagingDir  string // exactly_once
	stagePrefix string
	stageSeq    int
	stateDir    string // at_least_once: where flushed.json lives

	// streams holds every output file written since the last checkpoint
	// (and, under at_least_once, every file still open), by cleaned base
	// path. Only the ones in open have a file descriptor and a buffer.
	streams map[string]*fileStream
	open    []*fileStream        // at most cfg.MaxOpenFiles
	buffers []*bufio.Writer      // free buffers of closed streams
	seqs    map[string]int       // part number per base path, when rolling; in tokens and flushed.json
	started map[string]time.Time // max_age: when each base path's current part got its first record
	// ends holds, per output file, its length once the parts of tokens
	// returned by PreCommit but not yet committed have landed (exactly_once).
	ends    map[string]int64
	rolled  []stagedPart // exactly_once: parts finished by a roll since the last PreCommit
	flushed bool         // at_least_once: flushed.json lists files
	lineBuf []byte
	pathBuf []byte
	clock   int64 // LRU clock for max_open_files
	readBuf []byte
	// compress: cfg.Compression is gzip or zstd; encoders are the free
	// compressors of streams whose member ended.
	compress bool
	encoders []memberWriter
}

// fileStream is one output file written since the last checkpoint.
type fileStream struct {
	base  string // cleaned rendered path
	final string // current part's file name
	size  int64  // the output file's length once everything written is committed (flushed)
	used  int64  // LRU clock of the last write
	dirty bool   // written since the last checkpoint

	f   *os.File      // staging file (exactly_once) or output file; nil when closed
	w   *bufio.Writer // nil when closed
	enc memberWriter  // compression: the member being written into w; nil between members

	// exactly_once: this checkpoint's staging file for final.
	stage    string // "" until the first write since the last checkpoint
	offset   int64  // where the staged bytes go in final
	staged   int64  // bytes written to the staging file
	unsynced bool   // closed by max_open_files without fsync
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

// fileFlushed is flushed.json (at_least_once): the length of every file
// written in the interval before the last flush, and the part numbers.
type fileFlushed struct {
	Files map[string]int64 `json:"files"`
	Seqs  map[string]int   `json:"seqs,omitempty"`
}

const fileFlushedName = "flushed.json"

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

// Check implements pipeline.RecordChecker: a record whose path cannot be
// rendered (`{{ date(ts) }}` of a record without ts, an empty value, a
// segment too long: see pipeline.Template.RenderPath) goes to the
// dead-letter output instead of stopping the pipeline. (A rendered path
// always names a file: values are never empty and never hold "/", and
// Validate refuses a path that ends in "/".)
func (s *FileSink) Check(r *pipeline.Record) error {
	if s.constant {
		return nil
	}
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	var err error
	s.checkBuf, err = s.checkPath.RenderPath(s.checkBuf[:0], r)
	if err != nil {
		return fmt.Errorf("file: path: %w", err)
	}
	return nil
}

// Write implements pipeline.Sink. A path that cannot be rendered is an
// error (Check keeps such records away when the runtime calls it).
func (s *FileSink) Write(_ context.Context, b *pipeline.Batch) error {
	var cur *fileStream
	for _, r := range b.Records {
		if cur == nil || !s.constant {
			st, err := s.target(r, cur)
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
			cur = nil
		}
	}
	return nil
}

// target returns the stream r goes to; prev, the previous record's, when
// the path is the same.
func (s *FileSink) target(r *pipeline.Record, prev *fileStream) (*fileStream, error) {
	if s.constant {
		return s.stream(s.path.Source)
	}
	var err error
	s.pathBuf, err = s.path.RenderPath(s.pathBuf[:0], r)
	if err != nil {
		return nil, fmt.Errorf("file: path for record %s@%d: %w", r.Origin.Name, r.Origin.Offset, err)
	}
	if prev != nil && string(s.pathBuf) == prev.base {
		return prev, nil
	}
	return s.stream(string(s.pathBuf))
}

// stream returns the stream of base, starting one (and rolling by age)
// as needed.
func (s *FileSink) stream(base string) (*fileStream, error) {
	s.clock++
	st := s.streams[base]
	if st == nil {
		if clean := filepath.Clean(base); clean != base {
			base = clean
			st = s.streams[base]
		}
	}
	if s.cfg.MaxAge > 0 {
		if t, ok := s.started[base]; ok && s.now().Sub(t) >= s.cfg.MaxAge {
			if st != nil {
				if err := s.roll(st); err != nil {
					return nil, err
				}
			} else {
				s.seqs[base]++
				delete(s.started, base)
			}
			st = nil
		}
	}
	if st == nil {
		final := base
		if s.rolling() {
			if s.seqs[base] == 0 {
				s.seqs[base] = 1
			}
			final = s.partName(base, s.seqs[base])
		}
		st = &fileStream{base: base, final: final}
		if s.exactly {
			size, ok := s.ends[final]
			if !ok {
				var err error
				if size, err = fileSize(final); err != nil {
					return nil, err
				}
			}
			st.size = size
		} else if err := s.openOutput(st); err != nil {
			return nil, err
		}
		s.streams[base] = st
	}
	st.used = s.clock
	return st, nil
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
		if err := s.reopen(st); err != nil {
			return err
		}
	}
	if s.compress {
		// size and staged count the compressed bytes as they reach w.
		if err := s.writeCompressed(st, line); err != nil {
			return err
		}
	} else {
		if _, err := st.w.Write(line); err != nil {
			return fmt.Errorf("file: write %s: %w", st.final, err)
		}
		st.size += int64(len(line))
		st.staged += int64(len(line))
	}
	if !st.dirty && s.cfg.MaxAge > 0 {
		if _, ok := s.started[st.base]; !ok {
			s.started[st.base] = s.now()
		}
	}
	st.dirty = true
	return nil
}

// attach gives st an open file f and a buffer; the caller made room.
func (s *FileSink) attach(st *fileStream, f *os.File) {
	st.f = f
	if n := len(s.buffers); n > 0 {
		st.w, s.buffers = s.buffers[n-1], s.buffers[:n-1]
		st.w.Reset(f)
	} else {
		st.w = bufio.NewWriterSize(f, s.cfg.BufferBytes)
	}
	s.open = append(s.open, st)
}

// makeRoom closes the least recently used open file while max_open_files
// are open. Closing is cheap: the buffer is written out, nothing is
// fsynced (PreCommit or Flush does that, once per file and checkpoint).
func (s *FileSink) makeRoom() error {
	for len(s.open) >= s.cfg.MaxOpenFiles {
		oldest := 0
		for i, st := range s.open {
			if st.used < s.open[oldest].used {
				oldest = i
			}
		}
		if err := s.detach(s.open[oldest], false); err != nil {
			return err
		}
	}
	return nil
}

// detach writes out st's buffer and closes its file, fsyncing it first
// when sync is set.
func (s *FileSink) detach(st *fileStream, sync bool) error {
	if st.f == nil {
		return nil
	}
	i := slices.Index(s.open, st)
	s.open = slices.Delete(s.open, i, i+1)
	err := s.endMember(st)
	if err == nil {
		err = st.w.Flush()
	}
	if err != nil {
		err = fmt.Errorf("file: write %s: %w", st.final, err)
	} else if sync {
		if err = st.f.Sync(); err != nil {
			err = fmt.Errorf("file: fsync %s: %w", st.final, err)
		}
	}
	if cerr := st.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("file: close %s: %w", st.final, cerr)
	}
	st.w.Reset(nil)
	s.buffers = append(s.buffers, st.w)
	st.f, st.w = nil, nil
	st.unsynced = st.dirty && !sync
	return err
}

// reopen opens a stream's file again after max_open_files closed it (or,
// under exactly_once, opens this checkpoint's staging file).
func (s *FileSink) reopen(st *fileStream) error {
	if err := s.makeRoom(); err != nil {
		return err
	}
	var f *os.File
	var err error
	switch {
	case s.exactly && st.stage == "":
		s.stageSeq++
		st.stage = filepath.Join(s.stagingDir, fmt.Sprintf("%s-%06d.part", s.stagePrefix, s.stageSeq))
		st.offset, st.staged = st.size, 0
		f, err = os.OpenFile(st.stage, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	case s.exactly:
		f, err = os.OpenFile(st.stage, os.O_WRONLY|os.O_APPEND, 0o644)
	default:
		f, err = os.OpenFile(st.final, os.O_WRONLY|os.O_APPEND, 0o644)
	}
	if err != nil {
		return fmt.Errorf("file: open: %w", err)
	}
	s.attach(st, f)
	return nil
}

// openOutput opens a new stream's output file for appending (at_least_once
// and at_most_once) and sets its size. A file that does not end with a
// newline was torn by a crash: its unterminated last line is cut.
func (s *FileSink) openOutput(st *fileStream) error {
	if err := s.makeRoom(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(st.final), 0o755); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	f, err := os.OpenFile(st.final, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("file: open: %w", err)
	}
	cut := s.cutTornLine
	if s.compress {
		cut = s.cutTornMember
	}
	size, err := cut(f, st.final)
	if err != nil {
		f.Close()
		return err
	}
	st.size = size
	s.attach(st, f)
	return nil
}

// cutTornLine truncates f after its last newline when it does not end with
// one, and returns its length.
func (s *FileSink) cutTornLine(f *os.File, name string) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("file: %w", err)
	}
	size := fi.Size()
	if size == 0 {
		return 0, nil
	}
	if cap(s.readBuf) == 0 {
		s.readBuf = make([]byte, 64<<10)
	}
	if _, err := f.ReadAt(s.readBuf[:1], size-1); err != nil {
		return 0, fmt.Errorf("file: read %s: %w", name, err)
	}
	if s.readBuf[0] == '\n' {
		return size, nil
	}
	end := size - 1
	for end > 0 {
		n := min(end, int64(len(s.readBuf)))
		buf := s.readBuf[:n]
		if _, err := f.ReadAt(buf, end-n); err != nil {
			return 0, fmt.Errorf("file: read %s: %w", name, err)
		}
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if err := f.Truncate(end); err != nil {
		return 0, fmt.Errorf("file: cut torn line of %s: %w", name, err)
	}
	s.logger.Warn("file: cut an unterminated last line (torn by a crash); its record is written again", "file", name, "bytes", size-end)
	return end, nil
}

// syncPath fsyncs a closed file.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("file: fsync %s: %w", path, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("file: fsync %s: %w", path, err)
	}
	return nil
}

// finishStage makes st's staging file durable and closed, and returns its
// part (exactly_once).
func (s *FileSink) finishStage(st *fileStream) (stagedPart, error) {
	if st.f != nil {
		// Detaching ends a compressed member: its last bytes count.
		err := s.detach(st, true)
		return stagedPart{Staging: st.stage, Final: st.final, Offset: st.offset, Length: st.staged}, err
	}
	p := stagedPart{Staging: st.stage, Final: st.final, Offset: st.offset, Length: st.staged}
	if st.unsynced {
		if err := syncPath(st.stage); err != nil {
			return p, err
		}
		st.unsynced = false
	}
	return p, nil
}

// roll finishes st's current part; the next record for its base path
// starts the next part.
func (s *FileSink) roll(st *fileStream) error {
	if s.exactly {
		if st.stage != "" {
			p, err := s.finishStage(st)
			if err != nil {
				return err
			}
			s.rolled = append(s.rolled, p)
		}
	} else {
		if err := s.detach(st, s.sync); err != nil {
			return err
		}
		if st.unsynced && s.sync {
			if err := syncPath(st.final); err != nil {
				return err
			}
		}
	}
	s.seqs[st.base]++
	delete(s.started, st.base)
	delete(s.streams, st.base)
	return nil
}

// Flush implements pipeline.Flusher (at_least_once, at_most_once):
// everything written is in the files when it returns, fsynced under
// at_least_once, and flushed.json holds the files' lengths.
func (s *FileSink) Flush(context.Context) error {
	var lengths map[string]int64
	if s.stateDir != "" {
		lengths = map[string]int64{}
	}
	for base, st := range s.streams {
		switch {
		case st.f != nil:
			if err := s.endMember(st); err != nil {
				return err
			}
			if err := st.w.Flush(); err != nil {
				return fmt.Errorf("file: write %s: %w", st.final, err)
			}
			if s.sync && st.dirty {
				if err := st.f.Sync(); err != nil {
					return fmt.Errorf("file: fsync %s: %w", st.final, err)
				}
			}
		case st.unsynced && s.sync:
			if err := syncPath(st.final); err != nil {
				return err
			}
		}
		if lengths != nil && st.dirty {
			lengths[st.final] = st.size
		}
		st.dirty, st.unsynced = false, false
		if st.f == nil {
			delete(s.streams, base)
		}
	}
	if lengths == nil || (len(lengths) == 0 && !s.flushed) {
		return nil
	}
	return s.saveFlushed(lengths)
}

func (s *FileSink) saveFlushed(lengths map[string]int64) error {
	st := fileFlushed{Files: lengths}
	if s.rolling() {
		st.Seqs = s.seqs
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	if err := os.MkdirAll(s.stateDir, 0o755); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	if err := durable.WriteFile(filepath.Join(s.stateDir, fileFlushedName), data); err != nil {
		return fmt.Errorf("file: record flushed lengths: %w", err)
	}
	s.flushed = len(lengths) > 0
	return nil
}

// restoreFlushed cuts the files of flushed.json back to their flushed
// lengths and restores the part numbers (at_least_once, at start).
func (s *FileSink) restoreFlushed() error {
	path := filepath.Join(s.stateDir, fileFlushedName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("file: read flushed lengths: %w", err)
	}
	var st fileFlushed
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("file: read flushed lengths %s: %w", path, err)
	}
	for name, n := range st.Files {
		size, err := fileSize(name)
		if err != nil {
			return err
		}
		switch {
		case size > n:
			if err := os.Truncate(name, n); err != nil {
				return fmt.Errorf("file: cut %s to its flushed length: %w", name, err)
			}
			s.logger.Info("file: cut what was written after the last flush; it is written again", "file", name, "bytes", size-n)
		case size < n:
			s.logger.Warn("file: shorter than its flushed length; was it changed outside weir?", "file", name, "bytes", size, "flushed", n)
		}
	}
	for k, v := range st.Seqs {
		s.seqs[k] = v
	}
	s.flushed = len(st.Files) > 0
	return nil
}

// PreCommit implements pipeline.Committer.
func (s *FileSink) PreCommit(context.Context, uint64) ([]byte, error) {
	parts := s.rolled
	for _, st := range s.streams {
		if st.stage == "" {
			continue
		}
		p, err := s.finishStage(st)
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	if len(parts) > 0 {
		if err := durable.SyncDir(s.stagingDir); err != nil {
			return nil, fmt.Errorf("file: fsync staging dir: %w", err)
		}
	}
	slices.SortFunc(parts, func(a, b stagedPart) int { return strings.Compare(a.Final, b.Final) })
	for _, p := range parts {
		s.ends[p.Final] = p.Offset + p.Length
	}
	tok := fileToken{Parts: parts}
	if s.rolling() {
		tok.Seqs = s.seqs
	}
	data, err := json.Marshal(tok)
	clear(s.streams)
	s.rolled = nil
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
		if e, ok := s.ends[p.Final]; ok && e == p.Offset+p.Length {
			delete(s.ends, p.Final)
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
// recovery; otherwise it is written out (not fsynced).
func (s *FileSink) Close(context.Context) error {
	var errs []error
	for _, st := range s.open {
		if !s.exactly {
			errs = append(errs, s.endMember(st), st.w.Flush())
		}
		errs = append(errs, st.f.Close())
		st.f, st.w = nil, nil
	}
	s.open = nil
	return errors.Join(errs...)
}
