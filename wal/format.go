package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	// MaxRecordSize is the largest record payload, in bytes, that Append
	// accepts and that a reader will believe a length field about.
	MaxRecordSize = 64 << 20

	segmentMagic   = "WEIRWAL\n"
	segmentVersion = 1
	headerSize     = 24 // segment header
	frameHeader    = 8  // per-record framing
	frameTypeShift = 28
	frameLenMask   = 1<<frameTypeShift - 1
	frameTypeRec   = 1

	segmentExt = ".wal"
	tmpExt     = ".tmp"
	nameDigits = 20
	lockName   = "LOCK"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// ErrClosed is returned by operations on a closed Log or Reader.
	ErrClosed = errors.New("wal: closed")
	// ErrOutOfRange is returned (wrapped) when a Reader is asked for a
	// record below the oldest retained index, or beyond NextIndex.
	ErrOutOfRange = errors.New("wal: index out of range")
	// ErrRecordTooLarge is returned (wrapped) by Append for a record longer
	// than MaxRecordSize.
	ErrRecordTooLarge = errors.New("wal: record too large")
	// ErrChecksum is the Err of a CorruptionError for a frame or header
	// whose checksum does not match its contents.
	ErrChecksum = errors.New("checksum mismatch")
)

// CorruptionError reports damage to a segment that is not a torn tail:
// bytes the log can neither trust nor safely discard. Find it with
// errors.As.
type CorruptionError struct {
	Segment uint64 // the segment's name: the index of its first record
	Offset  int64  // byte offset in the segment file of the damage
	Err     error  // what is wrong, for example ErrChecksum
}

// Error returns a message like "wal: segment 12 offset 4096: checksum mismatch".
func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: segment %d offset %d: %v", e.Segment, e.Offset, e.Err)
}

// Unwrap returns e.Err.
func (e *CorruptionError) Unwrap() error { return e.Err }

func corrupt(seg uint64, off int64, format string, args ...any) *CorruptionError {
	return &CorruptionError{Segment: seg, Offset: off, Err: fmt.Errorf(format, args...)}
}

// segmentName returns the file name of the segment whose first index is first.
func segmentName(first uint64) string {
	return fmt.Sprintf("%0*d%s", nameDigits, first, segmentExt)
}

func segmentPath(dir string, first uint64) string {
	return filepath.Join(dir, segmentName(first))
}

// parseSegmentName parses a segment file name; ok is false for any other name.
func parseSegmentName(name, ext string) (first uint64, ok bool) {
	base, found := strings.CutSuffix(name, ext)
	if !found || len(base) != nameDigits {
		return 0, false
	}
	for i := 0; i < len(base); i++ {
		if base[i] < '0' || base[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(base, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// listSegments returns the first indexes of the segments in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list segments: %w", err)
	}
	var segs []uint64
	for _, e := range entries { // ReadDir sorts by name; zero padding makes that index order
		if first, ok := parseSegmentName(e.Name(), segmentExt); ok && e.Type().IsRegular() {
			segs = append(segs, first)
		}
	}
	return segs, nil
}

// encodeHeader returns the header of the segment whose first index is first.
func encodeHeader(first uint64) [headerSize]byte {
	var h [headerSize]byte
	copy(h[:8], segmentMagic)
	binary.LittleEndian.PutUint32(h[8:], segmentVersion)
	binary.LittleEndian.PutUint64(h[12:], first)
	binary.LittleEndian.PutUint32(h[20:], crc32.Checksum(h[:20], castagnoli))
	return h
}

// checkHeader verifies a segment header against the segment's name.
func checkHeader(h []byte, seg uint64) *CorruptionError {
	if len(h) < headerSize {
		return corrupt(seg, int64(len(h)), "truncated segment header")
	}
	if string(h[:8]) != segmentMagic {
		return corrupt(seg, 0, "bad magic %q", h[:8])
	}
	if got := binary.LittleEndian.Uint32(h[20:]); got != crc32.Checksum(h[:20], castagnoli) {
		return &CorruptionError{Segment: seg, Offset: 20, Err: fmt.Errorf("segment header: %w", ErrChecksum)}
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != segmentVersion {
		return corrupt(seg, 8, "unsupported format version %d", v)
	}
	if first := binary.LittleEndian.Uint64(h[12:]); first != seg {
		return corrupt(seg, 12, "header first index %d does not match file name", first)
	}
	return nil
}

// appendFrame appends the frame of record index with payload p to buf.
func appendFrame(buf []byte, index uint64, p []byte) []byte {
	start := len(buf)
	n := frameHeader + len(p)
	// Keep 4 bytes of slack past the frame: the checksum is computed over
	// the length field and the index laid out in place, in f[0:12], before
	// the payload is copied over the index.
	if cap(buf)-start < n+4 {
		// Grow geometrically so that many small appends stay amortised O(1).
		nb := make([]byte, start, 2*cap(buf)+n+4)
		copy(nb, buf)
		buf = nb
	}
	f := buf[start : start+n+4]
	binary.LittleEndian.PutUint32(f, uint32(len(p))|frameTypeRec<<frameTypeShift)
	binary.LittleEndian.PutUint64(f[4:], index)
	c := crc32.Update(0, castagnoli, f[:12])
	copy(f[8:], p)
	binary.LittleEndian.PutUint32(f[4:], crc32.Update(c, castagnoli, p))
	return buf[:start+n]
}

// frameChecksum returns the checksum of a frame: CRC-32C over the 4-byte
// length/type field, the index as 8 bytes, and the payload. scratch is
// caller-provided so that it need not be allocated per call.
func frameChecksum(scratch *[12]byte, lenField []byte, index uint64, p []byte) uint32 {
	copy(scratch[:4], lenField)
	binary.LittleEndian.PutUint64(scratch[4:], index)
	c := crc32.Update(0, castagnoli, scratch[:])
	return crc32.Update(c, castagnoli, p)
}
