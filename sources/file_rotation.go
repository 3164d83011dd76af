package sources

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// How the `file` source follows rotation that copies a file instead of
// renaming it (logrotate's copytruncate, and compress, which replaces a
// rotated file by a gzipped copy):
//
//   - A copy is recognised by its head: its first bytes (decompressed, for a
//     gzip file) hash to a tracked file's fingerprint (fp over fpLen bytes),
//     or, when shorter than that, equal the tracked file's first bytes.
//   - A copy that appears while its original is intact (the copy of
//     copytruncate before the truncation, a gzipped copy before the rotated
//     file is deleted) is parked: tracked, not read, not checkpointed (a
//     restart finds it again). A plain copy must also be no longer than the
//     original and end with the same bytes at the same offset, so that a
//     file that merely starts like another is not taken for its copy; one
//     that grows is checked again, and read from its start once it no
//     longer holds what the original holds.
//   - When the original is found truncated or rewritten, the copy takes
//     over where the original was read up to: it is read from the
//     original's offset, so the lines the original no longer holds are read
//     once, and the original starts over at 0. When the original is
//     forgotten after being read to its end, its copies are read from their
//     own end on.
//   - Truncated, rewritten or gone while weir was down: Seek looks for the
//     copy by the checkpointed fingerprint among the files the globs match
//     and the rotated names next to the file (rotatedNames).
//   - An empty file found while files are tracked is undecided until it
//     holds data: a copy caught before its first byte is not a new file.

// copyVerdict is what checkCopy decided about a file that appeared.
type copyVerdict int

const (
	notCopy       copyVerdict = iota // read it as a file of its own
	copyParked                       // a copy of an intact tracked file: not read while that file lives
	copyContinues                    // its original was truncated: it is tracked, continuing the original
	copyUndecided                    // empty, or a gzip stream too short to tell: decide once it grows
)

// lostTail is where reading stood in a file that was truncated, rewritten
// or removed: its copy continues from there.
type lostTail struct {
	id     fileID
	path   string
	fp     uint64
	fpLen  int
	offset int64
	line   int64
	skip   bool
}

func (tf *tailFile) lost() lostTail {
	return lostTail{id: tf.id, path: tf.path, fp: tf.fp, fpLen: tf.fpLen,
		offset: tf.lr.offset, line: tf.lr.line, skip: tf.lr.skip}
}

// copyCandidate is a file that may be the copy of a lost file.
type copyCandidate struct {
	tf   *tailFile // tracked: parked or pending; nil: not tracked yet
	path string
	fi   fs.FileInfo
	gz   bool
	full bool // it holds data past the lost offset (or is compressed: unknown)
}

// betterCopy orders candidates: one that holds the lost data, a plain file
// before a compressed one, the newest, then preferPath.
func betterCopy(a, b copyCandidate) bool {
	if a.full != b.full {
		return a.full
	}
	if a.gz != b.gz {
		return !a.gz
	}
	if ta, tb := a.fi.ModTime(), b.fi.ModTime(); !ta.Equal(tb) {
		return ta.After(tb)
	}
	return preferPath(a.path, b.path)
}

// rotatedInPlace handles a plain file found truncated or rewritten in place
// (copytruncate): the lines after its offset that it no longer holds are
// read from its copy, then the file is read again from its start. It
// returns the copy that continues it, if one was found.
func (s *fileSource) rotatedInPlace(tf *tailFile) *tailFile {
	c := s.succeed(tf, tf.lost())
	if c == nil {
		s.log.Info("file: file was truncated; reading it again from the start", "path", tf.path, "offset", tf.lr.offset)
	}
	s.restart(tf)
	return c
}

// succeed hands what owner (nil in Seek: a checkpointed file) held past
// l's offset to its copy, and returns that copy. The copies parked under
// owner are candidates, and so are the untracked files the globs match and
// the rotated names next to l.path that hold l's head (findCopies). The
// best candidate continues at l's offset (at its end when it is shorter:
// it holds nothing unread); the other parked copies are positioned at
// their end, their lines having been read from owner or from the best.
func (s *fileSource) succeed(owner *tailFile, l lostTail) *tailFile {
	var cands []copyCandidate
	if owner != nil {
		for _, c := range s.files {
			if c.copyOf != owner {
				continue
			}
			fi, err := os.Stat(c.path)
			if err != nil || idFor(fi, c.path) != c.id {
				s.resume(c, l, true) // gone: opening it drops it
				continue
			}
			cands = append(cands, copyCandidate{tf: c, path: c.path, fi: fi, gz: c.gz, full: c.gz || fi.Size() >= l.offset})
		}
	}
	if l.fpLen > 0 {
		cands = append(cands, s.findCopies(l)...)
	}
	if len(cands) == 0 {
		return nil
	}
	best := 0
	for i := range cands {
		if betterCopy(cands[i], cands[best]) {
			best = i
		}
	}
	for i, c := range cands {
		if i != best && c.tf != nil {
			s.resume(c.tf, l, true)
		}
	}
	b := cands[best]
	c := b.tf
	if c == nil {
		c = s.newTailFile(b.path, idFor(b.fi, b.path))
		c.firstScan = s.scans
	}
	s.resume(c, l, !b.full)
	if b.tf == nil {
		s.add(c)
	}
	s.log.Info("file: a rotated file continues in its copy", "path", l.path, "copy", c.path, "offset", l.offset, "copy_read_already", !b.full)
	return c
}

// resume makes a parked or new copy c continue l: at l's offset, or at c's
// own end when atEnd (its lines were read from the original). It is opened
// by the next poll (follow mode) or when its turn comes (finite mode).
func (s *fileSource) resume(c *tailFile, l lostTail, atEnd bool) {
	c.copyOf, c.copyPending, c.gzRetry = nil, false, false
	if atEnd {
		c.atEnd = true
		c.lr.reset(0, 1, false)
	} else {
		c.atEnd = false
		c.lr.reset(l.offset, l.line, l.skip)
	}
	c.reopen = s.cfg.Follow
	s.gen++
}

// findCopies returns the untracked files that hold l's head, among the
// files the globs match and rotatedNames(l.path). One shorter than l's
// offset (copied before what was read since) holds nothing unread.
func (s *fileSource) findCopies(l lostTail) []copyCandidate {
	var out []copyCandidate
	seen := map[string]bool{}
	for _, p := range append(s.matches(), rotatedNames(l.path)...) {
		if seen[p] {
			continue
		}
		seen[p] = true
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		id := idFor(fi, p)
		if id == l.id {
			continue
		}
		var tracked *tailFile
		if t := s.byID[id]; t != nil {
			if !t.copyPending {
				continue
			}
			tracked = t
		}
		gz := s.isGzip(p)
		if !gz && fi.Size() < int64(l.fpLen) {
			continue
		}
		head, _, err := readHead(p, gz, l.fpLen)
		if err != nil || len(head) < l.fpLen || hashHead(head[:l.fpLen]) != l.fp {
			continue
		}
		out = append(out, copyCandidate{tf: tracked, path: p, fi: fi, gz: gz, full: gz || fi.Size() >= l.offset})
	}
	return out
}

// checkCopy decides whether c, a file found after the files tracked before
// it, is a copy of one of them (see the comment at the top of this file).
// A head shorter than a tracked file's fingerprint is compared with that
// file's own first bytes; an empty file, or a gzip stream too short to
// tell, is undecided.
func (s *fileSource) checkCopy(c *tailFile, fi fs.FileInfo) copyVerdict {
	var origs []*tailFile
	for _, t := range s.files {
		if t != c && t.firstScan < c.firstScan && !t.gz && t.fpLen > 0 && !t.done && t.copyOf == nil && !t.copyPending {
			origs = append(origs, t)
		}
	}
	if len(origs) == 0 {
		return notCopy
	}
	head, complete, err := readHead(c.path, c.gz, fingerprintBytes)
	if err != nil && complete {
		return notCopy
	}
	if len(head) == 0 {
		return copyUndecided
	}
	undecided := false
	for _, t := range origs {
		short := len(head) < t.fpLen
		switch {
		case short && !complete:
			undecided = true
			continue
		case short && !s.headIs(t, head):
			continue
		case !short && hashHead(head[:t.fpLen]) != t.fp:
			continue
		}
		rewritten, ok := s.rewrittenOf(t)
		switch {
		case !ok:
			continue
		case rewritten:
			if short {
				continue // t's head is gone: nothing to compare with
			}
			s.rotatedInPlace(t)
			if nc := s.byID[c.id]; nc != nil && nc.copyOf == nil && !nc.copyPending {
				return copyContinues
			}
			continue
		}
		if c.gz || s.prefixOf(c.path, fi.Size(), t) {
			c.copyOf, c.pendingSize = t, fi.Size()
			s.log.Debug("file: a copy of a tracked file appeared; it is read only if that file is truncated", "path", c.path, "original", t.path)
			return copyParked
		}
	}
	if undecided {
		return copyUndecided
	}
	return notCopy
}

// recheckCopy runs when a parked copy grew: it stays parked while it still
// holds what its original holds, takes over if the original was truncated
// meanwhile, and is otherwise read as a file of its own, from its start.
// It reports whether the copy is still parked.
func (s *fileSource) recheckCopy(c *tailFile, size int64) bool {
	t := c.copyOf
	c.pendingSize = size
	if rewritten, ok := s.rewrittenOf(t); ok && rewritten {
		s.rotatedInPlace(t)
		return false
	}
	if c.gz || s.prefixOf(c.path, size, t) {
		return true
	}
	s.log.Debug("file: a file taken for a copy grew apart from its original; reading it from the start", "path", c.path, "original", t.path)
	c.copyOf = nil
	c.lr.reset(0, 1, false)
	s.gen++
	return false
}

// release is called when t is forgotten while intact (a rotated file read
// to its end): the copies parked under it hold nothing it did not, and
// are read from their current end on.
func (s *fileSource) release(t *tailFile) {
	for _, c := range s.files {
		if c.copyOf == t {
			s.resume(c, lostTail{}, true)
		}
	}
}

// headIs reports whether tracked file t starts with head.
func (s *fileSource) headIs(t *tailFile, head []byte) bool {
	f, done, err := s.handle(t)
	if err != nil {
		return false
	}
	defer done()
	got := make([]byte, len(head))
	n, err := f.ReadAt(got, 0)
	return (err == nil || err == io.EOF) && n == len(head) && bytes.Equal(got, head)
}

// rewrittenOf reports whether a tracked plain file was truncated or
// rewritten in place since it was read; ok is false when it cannot tell.
func (s *fileSource) rewrittenOf(t *tailFile) (rewritten, ok bool) {
	f, done, err := s.handle(t)
	if err != nil {
		return false, false
	}
	defer done()
	fi, err := f.Stat()
	if err != nil {
		return false, false
	}
	return s.rewrittenFile(f, t, fi.Size()), true
}

// rewrittenFile reports whether f, holding t and now size bytes long, is
// shorter than what was read of it or has another head.
func (s *fileSource) rewrittenFile(f *os.File, t *tailFile, size int64) bool {
	if size < t.lr.readPos {
		return true
	}
	if t.fpLen == 0 {
		return false
	}
	fp, n, err := s.fingerprint(f, t.fpLen)
	return err == nil && (n < t.fpLen || fp != t.fp)
}

// prefixOf reports whether the plain file at path, of the given size, holds
// what t holds at the same offsets: it is no longer than t and ends with
// the same bytes (up to 1 KiB) as t at that offset.
func (s *fileSource) prefixOf(path string, size int64, t *tailFile) bool {
	f, done, err := s.handle(t)
	if err != nil {
		return false
	}
	defer done()
	fi, err := f.Stat()
	if err != nil || size > fi.Size() || size == 0 {
		return false
	}
	c, err := os.Open(path)
	if err != nil {
		return false
	}
	defer c.Close()
	n := min(size, fingerprintBytes)
	a, b := make([]byte, n), make([]byte, n)
	if _, err := c.ReadAt(a, size-n); err != nil {
		return false
	}
	if _, err := f.ReadAt(b, size-n); err != nil {
		return false
	}
	return bytes.Equal(a, b)
}

// handle returns an open descriptor of a tracked file: its own, or a new
// one that done closes.
func (s *fileSource) handle(t *tailFile) (f *os.File, done func(), err error) {
	if t.f != nil {
		return t.f, func() {}, nil
	}
	f, err = os.Open(t.path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil || idFor(fi, t.path) != t.id {
		_ = f.Close()
		return nil, nil, errReplaced
	}
	return f, func() { _ = f.Close() }, nil
}

// readHead returns the first up to n bytes of a file, decompressed when gz.
// complete is false when a gzip stream ended before n bytes (it may still
// be being written).
func readHead(path string, gz bool, n int) (head []byte, complete bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, true, err
	}
	defer f.Close()
	head = make([]byte, min(n, fingerprintBytes))
	if !gz {
		got, err := f.ReadAt(head, 0)
		if err != nil && err != io.EOF {
			return nil, true, err
		}
		return head[:got], true, nil
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 4096))
	if err != nil {
		incomplete := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		return nil, !incomplete, err
	}
	got, err := io.ReadFull(zr, head)
	switch {
	case err == nil || err == io.EOF:
		return head[:got], true, nil
	case errors.Is(err, io.ErrUnexpectedEOF):
		// Either the stream ended (a short file) or it was cut short; a
		// complete stream is told by reading its end.
		if _, rerr := zr.Read(make([]byte, 1)); rerr == io.EOF {
			return head[:got], true, nil
		}
		return head[:got], false, nil
	}
	return head[:got], false, err
}

// rotatedNames lists where rotation puts a copy or a renamed version of
// path: the files next to it and in the directories right below it
// (logrotate's olddir) whose names start with path's name up to its first
// dot ("app" for app.log: app.log.1, app.log-20240101, app-20240101.log,
// old/app.log.2.gz). path itself is left out.
func rotatedNames(path string) []string {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	dir = filepath.Clean(dir)
	stem := base
	if i := strings.IndexByte(base, '.'); i > 0 {
		stem = base[:i]
	}
	var out []string
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			sub, err := os.ReadDir(p)
			if err != nil {
				continue
			}
			for _, se := range sub {
				if se.Type().IsRegular() && strings.HasPrefix(se.Name(), stem) {
					out = append(out, filepath.Join(p, se.Name()))
				}
			}
		case e.Type().IsRegular() && strings.HasPrefix(e.Name(), stem) && e.Name() != base:
			out = append(out, p)
		}
	}
	return out
}
