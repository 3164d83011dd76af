package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// frameStatus is the outcome of decoding one frame.
type frameStatus int

const (
	frameOK         frameStatus = iota
	frameEnd                    // no bytes left (up to the read limit)
	frameIncomplete             // some bytes, but the frame runs past the end
	frameBad                    // invalid type or length, or checksum mismatch
)

const readBufSize = 128 << 10

// segReader decodes the frames of one segment file sequentially, reading
// with ReadAt through its own buffer. It never reads at or past limit
// (when limit >= 0), so it never sees bytes a writer may still be writing.
type segReader struct {
	f     *os.File
	seg   uint64 // segment name: index of its first record
	index uint64 // index of the next frame
	off   int64  // file offset of the next frame, which is buf[r]
	limit int64  // read no byte at or past this offset; < 0: read to EOF
	buf   []byte
	r, w  int
	crc   [12]byte // scratch for checksums, kept here so it does not escape per call
}

// openSegment opens segment seg under path and verifies its header.
func openSegment(path string, seg uint64) (*segReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("wal: open segment %d: %w", seg, err)
	}
	var h [headerSize]byte
	n, err := f.ReadAt(h[:], 0)
	if err != nil && !(errors.Is(err, io.EOF) && n < headerSize) {
		f.Close()
		return nil, fmt.Errorf("wal: read segment %d header: %w", seg, err)
	}
	if cerr := checkHeader(h[:n], seg); cerr != nil {
		f.Close()
		return nil, cerr
	}
	return &segReader{f: f, seg: seg, index: seg, off: headerSize, limit: -1}, nil
}

func (s *segReader) close() error { return s.f.Close() }

// discard drops buffered bytes, so the next read goes to the file again.
func (s *segReader) discard() { s.r, s.w = 0, 0 }

// fill tries to buffer at least n bytes at s.off and returns how many are
// buffered, which is fewer only at the end of the file or the limit.
func (s *segReader) fill(n int) (int, error) {
	if s.w-s.r >= n {
		return s.w - s.r, nil
	}
	if s.r > 0 {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	if n > len(s.buf) {
		size := max(n, readBufSize)
		nb := make([]byte, size)
		copy(nb, s.buf[:s.w])
		s.buf = nb
	}
	for s.w < n {
		pos := s.off + int64(s.w)
		end := len(s.buf)
		if s.limit >= 0 && s.limit-pos < int64(end-s.w) {
			end = s.w + int(max(s.limit-pos, 0))
		}
		if end == s.w {
			break
		}
		m, err := s.f.ReadAt(s.buf[s.w:end], pos)
		s.w += m
		if errors.Is(err, io.EOF) || (err == nil && m == 0) {
			break
		}
		if err != nil {
			return s.w, fmt.Errorf("wal: read segment %d: %w", s.seg, err)
		}
	}
	return s.w, nil
}

// remaining returns the number of bytes readable from s.off on.
func (s *segReader) remaining() (int64, error) {
	if s.limit >= 0 {
		return s.limit - s.off, nil
	}
	fi, err := s.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("wal: stat segment %d: %w", s.seg, err)
	}
	return fi.Size() - s.off, nil
}

// next decodes the frame at s.off. On frameOK it returns the payload,
// valid until the next call, and advances; otherwise it consumes nothing
// and reason says what is wrong with the frame. err is an I/O error.
func (s *segReader) next() (data []byte, st frameStatus, reason, err error) {
	n, err := s.fill(frameHeader)
	if err != nil {
		return nil, 0, nil, err
	}
	if n == 0 {
		return nil, frameEnd, nil, nil
	}
	if n < frameHeader {
		return nil, frameIncomplete, errors.New("truncated frame header"), nil
	}
	lenField := binary.LittleEndian.Uint32(s.buf[s.r:])
	typ, length := lenField>>frameTypeShift, int(lenField&frameLenMask)
	if typ != frameTypeRec {
		return nil, frameBad, fmt.Errorf("bad frame type %d", typ), nil
	}
	if length > MaxRecordSize {
		return nil, frameBad, fmt.Errorf("record length %d exceeds maximum %d", length, MaxRecordSize), nil
	}
	total := frameHeader + length
	if total > len(s.buf) {
		// Believe a length field only as far as the file backs it, so a
		// damaged one cannot make us allocate.
		rem, err := s.remaining()
		if err != nil {
			return nil, 0, nil, err
		}
		if int64(total) > rem {
			return nil, frameIncomplete, fmt.Errorf("frame of %d bytes runs past end of segment", total), nil
		}
	}
	if n, err = s.fill(total); err != nil {
		return nil, 0, nil, err
	}
	if n < total {
		return nil, frameIncomplete, fmt.Errorf("frame of %d bytes runs past end of segment", total), nil
	}
	f := s.buf[s.r : s.r+total]
	if !s.verify(f, s.index) {
		return nil, frameBad, ErrChecksum, nil
	}
	s.r += total
	s.off += int64(total)
	s.index++
	return f[frameHeader:], frameOK, nil, nil
}

// verify reports whether the complete frame f checksums for index.
func (s *segReader) verify(f []byte, index uint64) bool {
	return binary.LittleEndian.Uint32(f[4:]) == frameChecksum(&s.crc, f[:4], index, f[frameHeader:])
}

// validFrameAt reports whether b starts with a valid frame for index.
func validFrameAt(b []byte, index uint64) bool {
	if len(b) < frameHeader {
		return false
	}
	lenField := binary.LittleEndian.Uint32(b)
	length := int(lenField & frameLenMask)
	if lenField>>frameTypeShift != frameTypeRec || length > MaxRecordSize || frameHeader+length > len(b) {
		return false
	}
	var scratch [12]byte
	return binary.LittleEndian.Uint32(b[4:]) == frameChecksum(&scratch, b[:4], index, b[frameHeader:frameHeader+length])
}

// tornTail reports whether the bytes of f from off to size, where the frame
// for index failed to verify, are a torn tail by the rules in the package
// documentation. It reads those bytes into memory; they are bounded by the
// file's real size.
func tornTail(f *os.File, seg uint64, off, size int64, index uint64) (bool, error) {
	if off >= size {
		return true, nil
	}
	b := make([]byte, size-off)
	if n, err := f.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && int64(n) == size-off) {
		return false, fmt.Errorf("wal: read segment %d tail: %w", seg, err)
	}
	incomplete, extent := len(b) < frameHeader, frameHeader
	if !incomplete {
		lenField := binary.LittleEndian.Uint32(b)
		length := int(lenField & frameLenMask)
		if lenField>>frameTypeShift == frameTypeRec && length <= MaxRecordSize {
			if frameHeader+length > len(b) {
				incomplete = true
			} else {
				extent = frameHeader + length
			}
		}
	}
	if !incomplete && !allZero(b[extent:]) {
		return false, nil
	}
	for p := 1; p+frameHeader <= len(b); p++ {
		if validFrameAt(b[p:], index+1) {
			return false, nil
		}
	}
	return true, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// segScan is what scanning a whole segment found.
type segScan struct {
	first   uint64
	records uint64
	size    int64 // file size
	end     int64 // offset just past the last valid frame (0 for a torn header)
	torn    error // non-nil if [end, size) is a torn tail: what was wrong there
}

// scanSegment verifies every frame of segment first in dir. A segment that
// is not last must be complete; the last may end in a torn tail, which is
// reported in the result, not as an error. Damage is a *CorruptionError.
func scanSegment(dir string, first uint64, last bool) (segScan, error) {
	res := segScan{first: first}
	path := segmentPath(dir, first)
	fi, err := os.Stat(path)
	if err != nil {
		return res, fmt.Errorf("wal: stat segment %d: %w", first, err)
	}
	res.size = fi.Size()
	s, err := openSegment(path, first)
	if err != nil {
		var ce *CorruptionError
		if last && errors.As(err, &ce) && tornHeader(path, first) {
			res.torn = fmt.Errorf("torn segment header: %w", ce.Err)
			return res, nil
		}
		return res, err
	}
	defer s.close()
	for {
		_, st, reason, err := s.next()
		if err != nil {
			return res, err
		}
		switch st {
		case frameOK:
			res.records++
			continue
		case frameEnd:
			res.end = s.off
			return res, nil
		}
		res.end = s.off
		if last {
			torn, err := tornTail(s.f, first, s.off, res.size, s.index)
			if err != nil {
				return res, err
			}
			if torn {
				res.torn = reason
				return res, nil
			}
		}
		return res, &CorruptionError{Segment: first, Offset: s.off, Err: fmt.Errorf("record %d: %w", s.index, reason)}
	}
}

// tornHeader reports whether the file at path, the last segment, holds a
// prefix of the header its name implies followed only by zeros (or nothing):
// a header whose write was torn, so the segment holds no records.
func tornHeader(path string, first uint64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [headerSize]byte
	n, _ := io.ReadFull(f, b[:])
	h := encodeHeader(first)
	k := 0
	for k < n && b[k] == h[k] {
		k++
	}
	if k == headerSize || !allZero(b[k:n]) {
		return false
	}
	// The rest of the file must be zero too.
	buf := make([]byte, 32<<10)
	for {
		m, err := f.Read(buf)
		if !allZero(buf[:m]) {
			return false
		}
		if err != nil {
			return errors.Is(err, io.EOF)
		}
	}
}

// logScan is what verifying every segment of a log directory found.
type logScan struct {
	segs []segScan // oldest first; on damage, the damaged segment is last
	next uint64    // index after the last record readable in order
}

// scanLog verifies every segment of dir in index order, as Open does, and
// checks that each segment starts where its predecessor ends. It modifies
// nothing. On damage it returns the segments scanned, the damaged one
// included, with a *CorruptionError.
func scanLog(dir string) (logScan, error) {
	firsts, err := listSegments(dir)
	if err != nil {
		return logScan{}, err
	}
	var ls logScan
	for i, first := range firsts {
		sc, err := scanSegment(dir, first, i == len(firsts)-1)
		ls.segs = append(ls.segs, sc)
		contiguous := i == 0 || first == ls.next
		if contiguous {
			ls.next = first + sc.records
		}
		if err != nil {
			return ls, err
		}
		if !contiguous {
			return ls, gapError(first, ls.next)
		}
	}
	return ls, nil
}
