package sources

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("file",
		"read lines from files matching globs: to the end (follow: false) or tailing them across rotation (follow: true)",
		func() *FileConfig { return NewFileConfig() })
}

const (
	// fingerprintBytes is how much of a file's head identifies it, so a
	// reused inode is not mistaken for the file it replaced.
	fingerprintBytes = 1 << 10
	// maxReadWait is the longest a follow-mode Read waits for data before
	// returning an empty batch: the runtime needs control back regularly to
	// inject checkpoint barriers.
	maxReadWait = 200 * time.Millisecond
	// reasonCorrupt is the dead-letter reason for compressed input that
	// cannot be decompressed.
	reasonCorrupt = "corrupt"
	// gzipReadBuffer is the buffered read size under a gzip decompressor.
	gzipReadBuffer = 256 << 10
)

// FileConfig is the `file` source:
//
//	sources:
//	  - file:
//	      paths: ["logs/*.log", "archive/**/*.log.gz"]
//	      exclude: ["*.tmp"]
//	      follow: true
//
// Every line (terminated by "\n"; a "\r" before it is dropped too) becomes a
// record whose Value is the line, whose Origin is the file's path, the byte
// offset where the line starts and its 1-based line number, and whose Time
// is the wall clock when it was read.
//
// The source is replayable (pipeline.Positioned): its position names every
// file by device, inode and a fingerprint of its first KiB, with the offset
// after the last line returned, so a restart resumes each file exactly
// there, finds a file renamed while weir was down (also into a directory
// right below its own, as logrotate's olddir does), and notices an inode
// reused by a different file.
//
// Files are told apart by that fingerprint as well as by inode, as Vector
// does, so that rotation by copy delivers every line once:
//
//   - A file that appears after another was tracked, and starts with the
//     same bytes (its first KiB, decompressed for a gzip file, or all of it
//     when shorter) is a copy: copytruncate's app.log.1, or compress's
//     app.log.1.gz. A plain copy must also be no longer than the original
//     and end with the same bytes at the same offset. It is not read from
//     its start: while the original is intact it is not read at all (a
//     plain copy that grows apart from the original is read as its own
//     file, from its start); when the original is read to its end and
//     forgotten, the copy is read from its own end on.
//   - When a tracked file is truncated or rewritten in place (copytruncate),
//     its copy is looked for among the files Paths match and the rotated
//     names next to it, even when Paths do not match them: files in its
//     directory and in the directories right below it whose names start
//     with its name up to the first dot (app.log.1, app.log-20240101,
//     app-20240101.log, old/app.log.1, app.log.1.gz). The copy's lines
//     from the offset read up to are read first, then the truncated file
//     from its start. A restart does the same for a file that was
//     truncated, rewritten or removed while weir was down, from its
//     checkpointed offset.
//   - Not read: what copytruncate itself loses (lines written between its
//     copy and its truncation), a file created and rotated away within one
//     GlobInterval (weir never saw it), and a copy put elsewhere than next
//     to the file or right below it that Paths do not match. A file that
//     starts with the same KiB as a truncated or removed one (a long fixed
//     banner) can be taken for its copy.
//
// Construct it with NewFileConfig (the registry does), which sets the
// defaults given below.
type FileConfig struct {
	// Paths are the globs of the files to read (required). Patterns use
	// filepath.Match syntax per path element, plus `**` for any number of
	// directories. Relative paths are relative to weir's working directory.
	Paths []string `yaml:"paths"`
	// Exclude are globs of files not to read, even when Paths match them.
	// A pattern without a "/" matches the file name ("*.gz"), any other the
	// whole path.
	Exclude []string `yaml:"exclude"`
	// Follow false (the default) reads every matching file to its end, in
	// sorted path order, then Read returns io.EOF: a backfill. The last line
	// of a file is read even without a final newline. Files that appear
	// during the run are not read. Running the same pipeline again reads
	// only what was appended since.
	//
	// Follow true tails the files forever: files that start matching are
	// picked up (every GlobInterval), a line is returned only once its
	// newline is written, rotation by rename (the renamed file is read to
	// its end, then the new file at the path from its start) and by
	// copytruncate (the lines not yet read are read from the copy, then the
	// truncated file from its start; see above) are followed. A file that
	// appears empty while others are tracked is opened by the first scan
	// that finds data in it, so that a copy caught before its first bytes
	// is not taken for a new file.
	Follow bool `yaml:"follow"`
	// StartAt is where reading starts in the files found when the source
	// first starts without a checkpoint: "beginning" (default) or "end"
	// (skip what is there; with follow: true, only lines written from now
	// on are read). Files that appear later, or after a restart from a
	// checkpoint, are always read from their beginning, so nothing written
	// while weir runs or is down is skipped.
	StartAt string `yaml:"start_at"`
	// MaxLineBytes is the longest line accepted, in bytes, not counting the
	// line terminator; default 1 MiB. A longer line goes to the dead-letter
	// output with reason "too_long" and only its first bytes (at most
	// 1 KiB); it is never held whole in memory.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// GlobInterval is how often follow mode looks for new matching files
	// and for renamed ones; default 1s.
	GlobInterval time.Duration `yaml:"glob_interval"`
	// PollInterval is how often follow mode looks for new data once every
	// file is at its end; default 250ms.
	PollInterval time.Duration `yaml:"poll_interval"`
	// RotateWait is how long follow mode keeps reading a file that no
	// longer matches Paths (renamed by rotation, or deleted) after it last
	// grew, for writers that still have it open; then its last line, even
	// without a newline, is returned and the file is closed. Default 5s.
	RotateWait time.Duration `yaml:"rotate_wait"`
	// Gzip says which files are gzip-compressed: "auto" (default: names
	// ending in .gz), "true" (all) or "false" (none). Compressed files are
	// read decompressed, offsets count decompressed bytes, and a restart
	// re-reads and skips up to its offset; follow mode reads a compressed
	// file to the end of its stream and does not tail it.
	Gzip string `yaml:"gzip"`

	readBuffer int // read buffer size; tests make it small to exercise refills
}

// NewFileConfig returns a file source configuration for the given globs
// with every default set.
func NewFileConfig(paths ...string) *FileConfig {
	return &FileConfig{
		Paths:        paths,
		StartAt:      "beginning",
		MaxLineBytes: defaultMaxLineBytes,
		GlobInterval: time.Second,
		PollInterval: 250 * time.Millisecond,
		RotateWait:   5 * time.Second,
		Gzip:         "auto",
	}
}

// Validate implements pipeline.Validator.
func (c *FileConfig) Validate() error {
	if len(c.Paths) == 0 {
		return errors.New("paths: at least one glob is required, as in paths: [\"logs/*.log\"]")
	}
	for _, p := range c.Paths {
		if _, err := compileGlob(p); err != nil {
			return fmt.Errorf("paths: %q: %w", p, err)
		}
	}
	for _, p := range c.Exclude {
		if _, err := compileGlob(p); err != nil {
			return fmt.Errorf("exclude: %q: %w", p, err)
		}
	}
	switch c.StartAt {
	case "beginning", "end":
	default:
		return fmt.Errorf("start_at: %q is not one of beginning, end", c.StartAt)
	}
	switch c.Gzip {
	case "auto", "true", "false":
	default:
		return fmt.Errorf("gzip: %q is not one of auto, true, false", c.Gzip)
	}
	if c.MaxLineBytes < 1 || c.MaxLineBytes > 1<<30 {
		return fmt.Errorf("max_line_bytes: want 1 to 1073741824, got %d", c.MaxLineBytes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"glob_interval", c.GlobInterval}, {"poll_interval", c.PollInterval}, {"rotate_wait", c.RotateWait}} {
		if d.v <= 0 {
			return fmt.Errorf("%s: want a positive duration such as 1s, got %v", d.name, d.v)
		}
	}
	return nil
}

// NewSource implements pipeline.SourceConfig.
func (c *FileConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	s := &fileSource{
		cfg:   *c,
		build: b,
		now:   b.Now,
		log:   b.Logger,
		batch: b.BatchSize,
		byID:  map[fileID]*tailFile{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", b.Component)
	if s.batch <= 0 {
		s.batch = pipeline.DefaultBatchSize
	}
	s.pool.size = c.readBuffer
	if s.pool.size <= 0 {
		s.pool.size = defaultReadBuffer
	}
	for _, p := range c.Paths {
		g, _ := compileGlob(b.Path(p))
		s.include = append(s.include, g)
	}
	for _, p := range c.Exclude {
		g, _ := compileGlob(p)
		s.exclude = append(s.exclude, g)
	}
	return s, nil
}

// fileID identifies a file across renames: device and inode where the
// system has them, else its path.
type fileID struct {
	Dev, Ino uint64
	path     string // set only when the system has no inodes
}

func idFor(fi fs.FileInfo, path string) fileID {
	if id, ok := identityOf(fi); ok {
		return id
	}
	return fileID{path: absPath(path)}
}

// tailFile is one file the source tracks.
type tailFile struct {
	path  string // where it was last seen
	id    fileID
	fp    uint64 // FNV-1a of the first fpLen bytes
	fpLen int
	gz    bool

	f  *os.File  // nil while closed
	rd io.Reader // f, or a decompressor over f
	lr lineReader

	atEnd     bool      // start_at end: position at the end when first opened
	done      bool      // read to its end for good (finite mode; a gzip stream that ended)
	size      int64     // gzip, done: the compressed size then, to recognise it unchanged
	orphan    bool      // follow: no matching path holds it any more
	idleSince time.Time // follow, orphan: when data was last read
	gzRetry   bool      // follow: an incomplete gzip stream, reopened when it grows
	gzSize    int64     // follow, gzRetry: its compressed size when it failed
	drop      bool      // follow: forget after this poll

	announced bool // follow: reported as a split (pipeline.SplitChange.Added)
	caughtUp  bool // follow: reported caught up, and nothing read since

	// Rotation by copy (file_rotation.go).
	firstScan   int       // the scan that found it; 0: restored from a checkpoint
	copyOf      *tailFile // parked: a copy of this intact file, not read or checkpointed while it lives
	copyPending bool      // too short to tell whether it is a copy: decided once it grows
	pendingSize int64     // parked or pending: its size when last checked
	reopen      bool      // follow: a copy that continues a rotated file, opened by the next poll
}

// fileSource is the running `file` source.
//
// Everything is used by the reader goroutine only (Read, Position, Seek),
// except Close, which the runtime calls once Read has returned.
type fileSource struct {
	cfg     FileConfig
	build   pipeline.Build
	now     func() time.Time
	log     *slog.Logger
	batch   int
	include []fileGlob
	exclude []fileGlob
	pool    bufferPool

	files    []*tailFile          // finite: in sorted path order
	byID     map[fileID]*tailFile // the same files, by identity
	cur      int                  // finite: files[cur] is being read; follow: where the next poll starts
	started  bool                 // the first scan has run
	restored bool                 // Seek restored a checkpoint
	scans    int                  // scans run so far (tailFile.firstScan)
	eof      bool                 // finite: every file is done

	nextGlob, nextPoll time.Time
	pollNow            bool              // follow: the last poll stopped on a full batch
	timer              *time.Timer       // follow: reused for waits
	openFailed         map[string]string // follow: last open error per path, to log each once
	fpBuf              [fingerprintBytes]byte

	gen, posGen uint64 // gen changes with any positional state; pos encodes posGen
	pos         []byte

	splits pipeline.SplitChange // not yet taken by SplitChanges
}

func (s *fileSource) isGzip(path string) bool {
	switch s.cfg.Gzip {
	case "true":
		return true
	case "false":
		return false
	}
	return strings.HasSuffix(strings.ToLower(path), ".gz")
}

func (s *fileSource) newTailFile(path string, id fileID) *tailFile {
	tf := &tailFile{path: path, id: id, gz: s.isGzip(path)}
	tf.lr = newLineReader("file", path, s.build.Component, s.build.Index, s.now, s.cfg.MaxLineBytes, s.pool.size)
	tf.lr.split = id.split()
	return tf
}

// split is the file's split name (Record.Split): its identity, which a
// rename does not change.
func (id fileID) split() string {
	if id.path != "" {
		return id.path
	}
	return strconv.FormatUint(id.Dev, 10) + ":" + strconv.FormatUint(id.Ino, 10)
}

// SplitChanges implements pipeline.SplitSource. Every file is a split.
// With follow: true, a file is announced when it is opened, is caught up
// whenever a poll reads it to its end, and is removed when it is finished
// (a rotated file after rotate_wait, a gzip stream) or forgotten; the
// first Read resets the splits a checkpoint restored. With follow: false
// the files are read one after the other: each is a split from its first
// line until its end, where it is removed.
func (s *fileSource) SplitChanges() pipeline.SplitChange {
	c := s.splits
	s.splits = pipeline.SplitChange{}
	return c
}

// announce reports tf as a split that will send records (follow mode).
func (s *fileSource) announce(tf *tailFile) {
	if s.cfg.Follow && !tf.announced {
		tf.announced, tf.caughtUp = true, false
		s.splits.Added = append(s.splits.Added, tf.lr.split)
	}
}

// retire reports that tf will send no more records.
func (s *fileSource) retire(tf *tailFile) {
	if !s.cfg.Follow || tf.announced {
		tf.announced = false
		s.splits.Removed, s.splits.Finished = append(s.splits.Removed, tf.lr.split), true
	}
}

func (s *fileSource) add(tf *tailFile) {
	s.files = append(s.files, tf)
	s.byID[tf.id] = tf
	s.gen++
}

// matches returns the paths the globs match, minus excluded ones, sorted.
func (s *fileSource) matches() []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range s.include {
		for _, p := range g.expand() {
			if seen[p] || s.excluded(p) {
				continue
			}
			seen[p] = true
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func (s *fileSource) excluded(p string) bool {
	for _, g := range s.exclude {
		if g.match(p) {
			return true
		}
	}
	return false
}

// Read implements pipeline.Source. It appends at most the batch size of
// records, each Value a fresh copy that is never modified afterwards. With
// follow false it reads the files one after the other and returns io.EOF,
// with no records, once all are done. With follow true it never ends: when
// no file has a complete new line it waits at most about 200 ms, then
// returns an empty batch so the runtime regains control.
func (s *fileSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !s.started {
		if err := s.start(b); err != nil {
			return nil, err
		}
	}
	if s.cfg.Follow {
		return nil, s.readFollow(ctx, b)
	}
	return nil, s.readFinite(b)
}

// start runs the first scan: restored files are opened (follow mode) and
// matching files not yet known are added.
func (s *fileSource) start(b *pipeline.Batch) error {
	s.started = true
	s.splits.Reset = true
	s.scans = 1
	if s.cfg.Follow {
		for _, tf := range s.files {
			if tf.done || tf.f != nil {
				continue
			}
			if err := s.open(tf); err != nil {
				s.openError(tf, err)
			}
		}
		s.compact()
		s.scan(b, time.Now(), !s.restored)
		s.nextGlob = time.Now().Add(s.cfg.GlobInterval)
		s.pollNow = true
		return nil
	}
	for _, p := range s.matches() {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		id := idFor(fi, p)
		if s.byID[id] != nil {
			continue // restored, or the same file under two names
		}
		tf := s.newTailFile(p, id)
		tf.firstScan = s.scans
		tf.atEnd = !s.restored && s.cfg.StartAt == "end"
		switch s.checkCopy(tf, fi) {
		case copyParked:
			s.add(tf)
			continue
		case copyContinues:
			continue
		}
		s.add(tf)
	}
	slices.SortStableFunc(s.files, func(a, b *tailFile) int { return strings.Compare(a.path, b.path) })
	if len(s.files) == 0 {
		s.log.Warn("file: no file matches paths", "paths", s.cfg.Paths)
	}
	return nil
}

// readFinite reads the files one after the other, each to its end.
func (s *fileSource) readFinite(b *pipeline.Batch) error {
	for len(b.Records) < s.batch {
		if s.cur >= len(s.files) {
			if len(b.Records)+len(b.Dead) > 0 {
				return nil
			}
			if !s.eof {
				s.eof = true
				s.pool.free = nil
			}
			return io.EOF
		}
		tf := s.files[s.cur]
		if tf.done || tf.copyOf != nil {
			s.cur++
			continue
		}
		if tf.f == nil {
			err := s.open(tf)
			switch {
			case err == nil:
			case isGone(err):
				s.log.Warn("file: skipping a file that disappeared or was replaced before it was read", "path", tf.path, "error", err)
				tf.done = true
				continue
			case isGzipError(err):
				s.gzipFailed(tf, b, err)
				continue
			default:
				return fmt.Errorf("file: open %s: %w", tf.path, err)
			}
			if tf.done {
				continue
			}
		}
		tf.lr.acquire(&s.pool)
		eof, err := tf.lr.read(tf.rd, b, s.batch, true)
		s.gen++
		if err != nil {
			if isDataError(tf, err) {
				s.gzipFailed(tf, b, err)
				continue
			}
			return fmt.Errorf("file: read %s: %w", tf.path, err)
		}
		if !eof || (len(b.Records) >= s.batch && tf.lr.buffered() > 0) {
			return nil // full; an incomplete last line waits for room
		}
		tf.lr.flushPartial(b)
		s.finish(tf)
		s.cur++
	}
	return nil
}

// finish marks a file read to its end for good and closes it.
func (s *fileSource) finish(tf *tailFile) {
	tf.done = true
	s.retire(tf)
	if tf.gz && tf.f != nil {
		if fi, err := tf.f.Stat(); err == nil {
			tf.size = fi.Size()
		}
	}
	s.closeFile(tf)
	s.gen++
}

func (s *fileSource) closeFile(tf *tailFile) {
	if tf.f != nil {
		_ = tf.f.Close()
		tf.f, tf.rd = nil, nil
	}
	tf.lr.release(&s.pool)
}

// readFollow polls the files until it has records or maxReadWait passed.
func (s *fileSource) readFollow(ctx context.Context, b *pipeline.Batch) error {
	deadline := time.Now().Add(maxReadWait)
	for {
		now := time.Now()
		if !now.Before(s.nextGlob) {
			s.scan(b, now, false)
			s.nextGlob = now.Add(s.cfg.GlobInterval)
			s.pollNow = true
		}
		if s.pollNow || !now.Before(s.nextPoll) {
			full, err := s.poll(b, now)
			if err != nil {
				return err
			}
			s.pollNow = full
			if !full {
				s.nextPoll = now.Add(s.cfg.PollInterval)
			}
			if len(b.Records)+len(b.Dead) > 0 {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !now.Before(deadline) {
			return nil
		}
		wake := deadline
		for _, t := range [...]time.Time{s.nextPoll, s.nextGlob} {
			if t.Before(wake) {
				wake = t
			}
		}
		s.sleep(ctx, wake.Sub(now))
	}
}

func (s *fileSource) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	if s.timer == nil {
		s.timer = time.NewTimer(d)
	} else {
		s.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		s.timer.Stop()
	case <-s.timer.C:
	}
}

// poll reads what the files have, orphans (rotated files) first so their
// last lines come before their successors' first, then the others round
// robin from where the last poll stopped. full reports that it stopped
// because the batch was full.
func (s *fileSource) poll(b *pipeline.Batch, now time.Time) (full bool, err error) {
	defer s.compact()
	for _, tf := range s.files {
		if tf.orphan {
			if full, err := s.pollFile(tf, b, now); full || err != nil {
				return full, err
			}
		}
	}
	n := len(s.files)
	for k := range n {
		i := (s.cur + k) % n
		tf := s.files[i]
		if tf.orphan {
			continue
		}
		full, err := s.pollFile(tf, b, now)
		if full || err != nil {
			s.cur = (i + 1) % n
			return full, err
		}
	}
	return false, nil
}

// pollFile reads one file in follow mode until its end or a full batch.
func (s *fileSource) pollFile(tf *tailFile, b *pipeline.Batch, now time.Time) (full bool, err error) {
	if tf.copyOf != nil || tf.copyPending {
		return false, nil // parked, or not known yet to be no copy
	}
	if tf.f == nil && tf.reopen && !tf.done {
		if err := s.open(tf); err != nil {
			if isGzipError(err) {
				s.gzipFailed(tf, b, err)
			} else {
				s.openError(tf, err)
			}
		}
	}
	if tf.f == nil || tf.done {
		if tf.orphan {
			tf.drop = true
		}
		return false, nil
	}
	if !tf.gz {
		// Before reading on from where the last poll stopped, make sure
		// the file was not truncated and written past that offset since.
		if fi, err := tf.f.Stat(); err == nil && fi.Size() != tf.lr.readPos && s.rewrittenFile(tf.f, tf, fi.Size()) {
			if full, err := s.rotated(tf, b, now); full || err != nil {
				return full, err
			}
		}
	}
	tf.lr.acquire(&s.pool)
	defer tf.lr.release(&s.pool)
	for {
		before, consumed := tf.lr.readPos, tf.lr.offset
		eof, err := tf.lr.read(tf.rd, b, s.batch, true)
		if tf.lr.offset != consumed {
			// Lines were returned, maybe from what an earlier read
			// buffered without reading the file again: the position moved.
			s.gen++
		}
		if tf.lr.readPos != before {
			tf.idleSince, tf.caughtUp = now, false
			s.gen++
			s.refreshFingerprint(tf, tf.lr.readPos)
		}
		if err != nil {
			if isDataError(tf, err) {
				s.gzipFailed(tf, b, err)
				return false, nil
			}
			return false, fmt.Errorf("file: read %s: %w", tf.path, err)
		}
		if !eof {
			return true, nil
		}
		if tf.gz { // a gzip stream that ended is complete: not tailed
			if len(b.Records) >= s.batch && tf.lr.buffered() > 0 {
				return true, nil
			}
			tf.lr.flushPartial(b)
			s.finish(tf)
			return false, nil
		}
		if fi, err := tf.f.Stat(); err == nil && fi.Size() < tf.lr.readPos {
			if full, err := s.rotated(tf, b, now); full || err != nil {
				return full, err
			}
			continue // read it again from the start
		}
		if tf.announced && !tf.caughtUp {
			tf.caughtUp = true
			s.splits.CaughtUp = append(s.splits.CaughtUp, tf.lr.split)
		}
		break
	}
	if tf.orphan && now.Sub(tf.idleSince) >= s.cfg.RotateWait {
		if len(b.Records) >= s.batch && tf.lr.buffered() > 0 {
			return true, nil
		}
		tf.lr.flushPartial(b)
		s.closeFile(tf)
		tf.drop = true
		s.log.Debug("file: finished a rotated file", "path", tf.path)
	}
	return len(b.Records) >= s.batch, nil
}

// rotated handles a plain file found truncated or rewritten in place
// (copytruncate): its copy, if one is found, reads the lines the file no
// longer holds first, then the file starts over at 0.
func (s *fileSource) rotated(tf *tailFile, b *pipeline.Batch, now time.Time) (full bool, err error) {
	c := s.rotatedInPlace(tf)
	if c == nil {
		return false, nil
	}
	return s.pollFile(c, b, now)
}

// restart reads a plain file again from its start.
func (s *fileSource) restart(tf *tailFile) {
	if tf.f != nil {
		if _, err := tf.f.Seek(0, io.SeekStart); err != nil {
			s.log.Warn("file: seek to start", "path", tf.path, "error", err)
		}
	}
	tf.lr.reset(0, 1, false)
	tf.fpLen = 0
	s.refreshFingerprint(tf, math.MaxInt64) // what it holds already
	s.gen++
}

// compact forgets dropped files; the copies parked under them take over.
func (s *fileSource) compact() {
	for _, tf := range s.files {
		if tf.drop {
			s.release(tf)
		}
	}
	out := s.files[:0]
	for _, tf := range s.files {
		if tf.drop {
			s.closeFile(tf)
			if !tf.done {
				s.retire(tf)
			}
			delete(s.byID, tf.id)
			s.gen++
			continue
		}
		out = append(out, tf)
	}
	clear(s.files[len(out):])
	s.files = out
	if s.cur >= len(s.files) {
		s.cur = 0
	}
}

// scan (follow mode) adds files that match now, notices files renamed to
// another matching path or away from every matching path (orphans), and
// retries incomplete gzip files that grew. initial applies start_at.
func (s *fileSource) scan(b *pipeline.Batch, now time.Time, initial bool) {
	s.scans++
	seen := make(map[*tailFile]bool, len(s.files))
	for _, p := range s.matches() {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		id := idFor(fi, p)
		if tf := s.byID[id]; tf != nil {
			seen[tf] = true
			s.rescan(b, tf, p, fi)
			continue
		}
		tf := s.newTailFile(p, id)
		tf.firstScan = s.scans
		tf.atEnd = initial && s.cfg.StartAt == "end"
		switch s.checkCopy(tf, fi) {
		case copyParked:
			s.add(tf)
			seen[tf] = true
			continue
		case copyContinues:
			seen[s.byID[id]] = true
			continue
		case copyUndecided:
			tf.copyPending, tf.pendingSize = true, fi.Size()
			s.add(tf)
			seen[tf] = true
			continue
		}
		if err := s.open(tf); err != nil {
			switch {
			case isGzipError(err):
				s.add(tf)
				s.gzipFailed(tf, b, err)
			case !isGone(err):
				s.openError(tf, err) // not tracked: retried as new by the next scan
			}
			continue
		}
		delete(s.openFailed, p)
		s.add(tf)
		seen[tf] = true
	}
	for _, tf := range s.files {
		if !seen[tf] && !tf.orphan {
			tf.orphan, tf.idleSince = true, now
			s.log.Debug("file: file no longer matches paths; reading it to its end", "path", tf.path)
		}
	}
	s.compact()
}

// rescan updates a known file found at path p with info fi.
func (s *fileSource) rescan(b *pipeline.Batch, tf *tailFile, p string, fi fs.FileInfo) {
	if tf.path != p {
		tf.path, tf.lr.name = p, p
		s.gen++
	}
	tf.orphan = false
	switch {
	case tf.copyOf != nil && (fi.Size() == tf.pendingSize || s.recheckCopy(tf, fi.Size())):
		// Parked: read only once its original is truncated.
	case tf.copyPending:
		if fi.Size() == tf.pendingSize {
			break
		}
		tf.pendingSize = fi.Size()
		if s.checkCopy(tf, fi) != notCopy {
			break
		}
		tf.copyPending = false
		if err := s.open(tf); err != nil {
			if isGzipError(err) {
				s.gzipFailed(tf, b, err)
			} else {
				s.openError(tf, err)
			}
		}
	case tf.f == nil && !tf.done && (!tf.gzRetry || fi.Size() != tf.gzSize):
		// Not open: an incomplete gzip stream that grew, or a file that
		// could not be opened before.
		tf.gzRetry = false
		if err := s.open(tf); err != nil {
			if isGzipError(err) {
				s.gzipFailed(tf, b, err)
			} else {
				s.openError(tf, err)
			}
		}
	case tf.f != nil && !tf.gz:
		// A file rewritten in place (truncated, then written past the
		// old offset before a poll saw it short) has a new head.
		if tf.fpLen > 0 && s.rewrittenFile(tf.f, tf, fi.Size()) {
			s.rotatedInPlace(tf)
		}
		s.refreshFingerprint(tf, fi.Size())
	}
}

// openError handles a failure to open a file in follow mode: a file that
// is gone is forgotten; otherwise the error is logged once and a tracked
// file stays closed until a scan opens it. A tracked file whose path now
// holds another file was renamed since its path was last seen (rotation
// between a restore and the first open, or between two scans): it stays
// tracked, so that the next scan finds it by identity under its new name
// and opens it there, at its offset; no scan finding it makes it an
// orphan, forgotten then.
func (s *fileSource) openError(tf *tailFile, err error) {
	if errors.Is(err, errReplaced) && !tf.orphan {
		return
	}
	if isGone(err) {
		tf.drop = true
		return
	}
	if s.openFailed == nil {
		s.openFailed = map[string]string{}
	}
	if s.openFailed[tf.path] != err.Error() {
		s.openFailed[tf.path] = err.Error()
		s.log.Warn("file: cannot open; will retry", "path", tf.path, "error", err)
	}
}

var errReplaced = errors.New("file was replaced")

// isGone reports an error meaning the file is no longer there to read.
func isGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, errReplaced)
}

// gzipError marks a failure to decompress (bad data, not I/O).
type gzipError struct{ err error }

func (e gzipError) Error() string { return "decompress: " + e.err.Error() }
func (e gzipError) Unwrap() error { return e.err }

// isGzipError reports a decompression failure from open.
func isGzipError(err error) bool {
	var ge gzipError
	return errors.As(err, &ge)
}

// isDataError reports whether a read error of tf is bad compressed data
// rather than a failing disk: the decompressor's errors are not path errors.
func isDataError(tf *tailFile, err error) bool {
	var pe *fs.PathError
	return tf.gz && !errors.As(err, &pe)
}

// gzipFailed handles a compressed file that cannot be (fully) decompressed.
// In follow mode a stream cut short is probably still being written: it is
// closed and reopened once it grows. Otherwise what was read stands, a dead
// letter with reason "corrupt" reports the rest, and the file is done.
func (s *fileSource) gzipFailed(tf *tailFile, b *pipeline.Batch, err error) {
	var size int64 = -1
	if tf.f != nil {
		if fi, serr := tf.f.Stat(); serr == nil {
			size = fi.Size()
		}
	} else if fi, serr := os.Stat(tf.path); serr == nil {
		size = fi.Size()
	}
	offset, line, skip := tf.lr.offset, tf.lr.line, tf.lr.skip
	s.closeFile(tf)
	tf.lr.reset(offset, line, skip) // drop the incomplete line read so far
	s.gen++
	if s.cfg.Follow && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
		tf.gzRetry, tf.gzSize = true, size
		return
	}
	if size == 0 { // an empty file holds no stream at all
		tf.done, tf.size = true, 0
		return
	}
	s.log.Warn("file: cannot decompress; skipping the rest of the file", "path", tf.path, "offset", offset, "error", err)
	r := &pipeline.Record{
		Time:   s.now(),
		Source: s.build.Index,
		Origin: pipeline.Origin{Name: tf.path, Offset: offset, Line: line},
	}
	b.Reject(r, s.build.Component, reasonCorrupt, fmt.Errorf("file: %s: decompress at offset %d: %w", tf.path, offset, err))
	tf.done, tf.size = true, size
}

// open opens a tracked file and positions its reader at the reader's
// offset. It fails with errReplaced when the path now holds another file.
func (s *fileSource) open(tf *tailFile) error {
	f, err := os.Open(tf.path)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return err
	}
	if idFor(fi, tf.path) != tf.id {
		_ = f.Close()
		return errReplaced
	}
	if tf.fpLen < fingerprintBytes {
		if fp, n, err := s.fingerprint(f, fingerprintBytes); err == nil {
			tf.fp, tf.fpLen = fp, n
		}
	}
	if tf.atEnd {
		tf.atEnd = false
		if tf.gz {
			tf.done, tf.size = true, fi.Size()
			_ = f.Close()
			return nil
		}
		skip := false
		if size := fi.Size(); size > 0 {
			var last [1]byte
			if _, err := f.ReadAt(last[:], size-1); err == nil && last[0] != '\n' {
				skip = true // start at the next line, not inside this one
			}
		}
		tf.lr.reset(fi.Size(), 0, skip) // line numbers are unknown
	}
	off := tf.lr.offset
	if tf.gz {
		zr, err := gzip.NewReader(bufio.NewReaderSize(f, gzipReadBuffer))
		if err == nil && off > 0 {
			_, err = io.CopyN(io.Discard, zr, off)
		}
		if err != nil {
			_ = f.Close()
			return gzipError{err}
		}
		tf.rd = zr
	} else {
		if off > 0 {
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				_ = f.Close()
				return err
			}
		}
		tf.rd = f
	}
	tf.f = f
	tf.lr.readPos = off
	tf.reopen = false
	s.gen++
	s.announce(tf)
	return nil
}

// fingerprint hashes the first up to n bytes of f.
func (s *fileSource) fingerprint(f *os.File, n int) (uint64, int, error) {
	buf := s.fpBuf[:min(n, fingerprintBytes)]
	got, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return 0, 0, err
	}
	return hashHead(buf[:got]), got, nil
}

func hashHead(b []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64()
}

// refreshFingerprint extends the fingerprint of a plain file that was
// shorter than fingerprintBytes when last fingerprinted, once it holds
// more (size: what it is known to hold now). The fingerprint is what finds
// the file's copy if it is truncated, so it is taken whether or not the
// lines were read yet.
func (s *fileSource) refreshFingerprint(tf *tailFile, size int64) {
	if tf.gz || tf.f == nil || tf.fpLen >= fingerprintBytes || size <= int64(tf.fpLen) {
		return
	}
	if fp, n, err := s.fingerprint(tf.f, fingerprintBytes); err == nil && n > tf.fpLen {
		tf.fp, tf.fpLen = fp, n
		s.gen++
	}
}

// Close implements pipeline.Source: it closes every open file.
func (s *fileSource) Close(context.Context) error {
	for _, tf := range s.files {
		s.closeFile(tf)
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	return nil
}
