package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Reader iterates over records in index order, either of an open Log
// (Log.NewReader) or of a log directory read-only (OpenReader). A Reader is
// not safe for concurrent use, but any number of Readers may run alongside
// each other and alongside Appends. It verifies every frame it reads,
// including frames it skips to reach its start index.
type Reader struct {
	l      *Log // nil for a directory reader
	dir    string
	next   uint64 // index of the record Next returns next
	s      *segReader
	wm     *watermark // Log reader: last watermark loaded
	buf    []byte     // read buffer kept across segments
	relist bool       // directory reader: s has a successor, so it is complete
	succ   uint64     // directory reader: that successor
	closed bool
}

// NewReader returns a Reader that starts at index from, which must be in
// [FirstIndex, NextIndex]. The Reader returns records only up to the Log's
// DurableIndex at the time of each Next call and then io.EOF; calling Next
// again after more records are durable returns them, so a Reader can follow
// the Log.
func (l *Log) NewReader(from uint64) (*Reader, error) {
	l.mu.Lock()
	closed, first, next := l.closed, l.segs[0], l.next
	l.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if from < first || from > next {
		return nil, fmt.Errorf("wal: new reader at %d: want an index from %d to %d: %w", from, first, next, ErrOutOfRange)
	}
	return &Reader{l: l, dir: l.dir, next: from}, nil
}

// OpenReader returns a Reader over the log directory dir starting at index
// from, without opening (or locking, or repairing) the log: it is safe to use
// on a directory another process is appending to. from must not be below
// the first index of the oldest segment. Next returns io.EOF at the end of
// the valid data, treating a torn or still-being-written tail of the last
// segment as the end; calling Next again later returns records appended
// since.
func OpenReader(dir string, from uint64) (*Reader, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("wal: open reader: no segments in %s", dir)
	}
	if from < segs[0] {
		return nil, fmt.Errorf("wal: open reader at %d: oldest record is %d: %w", from, segs[0], ErrOutOfRange)
	}
	return &Reader{dir: dir, next: from}, nil
}

// Next returns the next record's index and payload. data is owned by the
// Reader and valid only until the next call to Next or Close. Next returns
// io.EOF at the end of what is durable (see NewReader and OpenReader), a
// *CorruptionError for damaged data, and an error wrapping ErrOutOfRange if
// the segment it needs has been deleted by TruncateBefore.
func (r *Reader) Next() (index uint64, data []byte, err error) {
	if r.closed {
		return 0, nil, ErrClosed
	}
	if r.l != nil {
		return r.nextLog()
	}
	return r.nextDir()
}

// Close releases the Reader's file. It does not affect the Log.
func (r *Reader) Close() error {
	if r.closed {
		return ErrClosed
	}
	r.closed = true
	if r.s != nil {
		err := r.s.close()
		r.s = nil
		return err
	}
	return nil
}

// openAt opens segment seg positioned at its first frame, mapping a
// missing file to ErrOutOfRange (TruncateBefore removed it).
func (r *Reader) openAt(seg uint64) error {
	s, err := openSegment(segmentPath(r.dir, seg), seg)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("wal: read record %d: segment %d has been removed: %w", r.next, seg, ErrOutOfRange)
	}
	if err != nil {
		return err
	}
	s.buf, r.buf = r.buf, nil
	r.s = s
	return nil
}

func (r *Reader) closeSegment() {
	if r.s != nil {
		r.s.close()
		r.buf = r.s.buf
		r.s = nil
	}
}

func (r *Reader) nextLog() (uint64, []byte, error) {
	if r.wm == nil || r.next >= r.wm.index {
		r.wm = r.l.wm.Load()
		if r.next >= r.wm.index {
			return 0, nil, io.EOF
		}
	}
	for {
		if r.s == nil {
			seg, err := r.l.locate(r.next)
			if err != nil {
				return 0, nil, err
			}
			if err := r.openAt(seg); err != nil {
				return 0, nil, err
			}
		}
		s := r.s
		s.limit = -1 // segments before the watermark's are complete
		if s.seg == r.wm.seg {
			s.limit = r.wm.off
		}
		data, st, reason, err := s.next()
		if err != nil {
			return 0, nil, err
		}
		switch st {
		case frameOK:
			index := s.index - 1
			if index < r.next {
				continue // skipping to the start index
			}
			r.next = index + 1
			return index, data, nil
		case frameEnd:
			if s.seg < r.wm.seg {
				seg, err := r.l.locate(s.index)
				if err != nil {
					return 0, nil, err
				}
				if seg != s.index {
					return 0, nil, corrupt(s.seg, s.off, "segment ends before record %d, but the next segment is %d", s.index, seg)
				}
				r.closeSegment()
				if err := r.openAt(seg); err != nil {
					return 0, nil, err
				}
				continue
			}
			reason = errors.New("unexpected end of segment")
		}
		return 0, nil, &CorruptionError{Segment: s.seg, Offset: s.off, Err: fmt.Errorf("record %d: %w", s.index, reason)}
	}
}

// locate returns the segment that holds index, which must be retained.
func (l *Log) locate(index uint64) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if index < l.segs[0] {
		return 0, fmt.Errorf("wal: read record %d: oldest retained record is %d: %w", index, l.segs[0], ErrOutOfRange)
	}
	seg := l.segs[0]
	for _, s := range l.segs {
		if s > index {
			break
		}
		seg = s
	}
	return seg, nil
}

func (r *Reader) nextDir() (uint64, []byte, error) {
	for {
		if r.s == nil {
			segs, err := listSegments(r.dir)
			if err != nil {
				return 0, nil, err
			}
			if len(segs) == 0 || r.next < segs[0] {
				return 0, nil, fmt.Errorf("wal: read record %d: it has been removed: %w", r.next, ErrOutOfRange)
			}
			seg := segs[0]
			for _, s := range segs {
				if s <= r.next {
					seg = s
				}
			}
			if err := r.openAt(seg); err != nil {
				var ce *CorruptionError
				if seg == segs[len(segs)-1] && errors.As(err, &ce) && tornHeader(segmentPath(r.dir, seg), seg) {
					return 0, nil, io.EOF // torn header: the next Open re-creates it
				}
				return 0, nil, err
			}
			r.relist = false
		}
		s := r.s
		data, st, reason, err := s.next()
		if err != nil {
			return 0, nil, err
		}
		if st == frameOK {
			r.relist = false
			index := s.index - 1
			if index < r.next {
				continue
			}
			r.next = index + 1
			return index, data, nil
		}
		s.discard() // a writer may still be completing these bytes
		if !r.relist {
			// If a later segment exists the writer has finished this one:
			// read it once more before judging its end.
			segs, err := listSegments(r.dir)
			if err != nil {
				return 0, nil, err
			}
			for _, seg := range segs {
				if seg > s.seg {
					r.relist, r.succ = true, seg
					break
				}
			}
			if r.relist {
				continue
			}
			if st == frameEnd {
				return 0, nil, io.EOF
			}
			fi, err := s.f.Stat()
			if err != nil {
				return 0, nil, fmt.Errorf("wal: stat segment %d: %w", s.seg, err)
			}
			torn, err := tornTail(s.f, s.seg, s.off, fi.Size(), s.index)
			if err != nil {
				return 0, nil, err
			}
			if torn {
				return 0, nil, io.EOF
			}
		} else if st == frameEnd {
			if r.succ != s.index {
				return 0, nil, gapError(r.succ, s.index)
			}
			r.closeSegment()
			continue
		}
		return 0, nil, &CorruptionError{Segment: s.seg, Offset: s.off, Err: fmt.Errorf("record %d: %w", s.index, reason)}
	}
}
