package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// SegmentInfo describes one segment file, as reported by Stat.
type SegmentInfo struct {
	Path       string // path of the segment file
	FirstIndex uint64 // index of its first record; also its name
	Records    uint64 // number of valid records
	Size       int64  // file size in bytes
	// TornBytes is the length of a torn tail at the end of the last
	// segment, which the next Open truncates; 0 otherwise. On a log that is
	// being appended to it may also be a frame still being written.
	TornBytes int64
}

// Stat verifies every segment in dir without modifying anything and
// describes each, oldest first: it returns Verify's Report.Segments, and
// for a directory without segments, none and no error. On damage it returns
// the segments described so far, including the damaged one with the
// records before the damage, and a *CorruptionError. It is safe to call on
// a directory another process is appending to.
func Stat(dir string) ([]SegmentInfo, error) {
	r, err := Verify(dir)
	if errors.Is(err, ErrNotLog) {
		return nil, nil
	}
	return r.Segments, err
}

// Dump writes the records of the log in dir from index from on to w, one
// line per record: the index, a tab, the payload length, a tab, and the
// payload, as is if it is printable UTF-8 (and does not start with a double
// quote) or else as a Go-quoted string. from below the oldest retained
// record starts at the oldest. Dump does not open, lock or modify the log;
// a torn tail ends the output without error.
func Dump(w io.Writer, dir string, from uint64) error {
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return nil
	}
	r, err := OpenReader(dir, max(from, segs[0]))
	if err != nil {
		return err
	}
	defer r.Close()
	bw := bufio.NewWriter(w)
	var line []byte
	for {
		index, data, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bw.Flush()
			return err
		}
		line = strconv.AppendUint(line[:0], index, 10)
		line = append(line, '\t')
		line = strconv.AppendInt(line, int64(len(data)), 10)
		line = append(line, '\t')
		if printable(data) {
			line = append(line, data...)
		} else {
			line = strconv.AppendQuote(line, string(data))
		}
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return fmt.Errorf("wal: dump: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("wal: dump: %w", err)
	}
	return nil
}

// printable reports whether b can be shown as is on a line of Dump output.
func printable(b []byte) bool {
	if len(b) == 0 || b[0] == '"' || !utf8.Valid(b) {
		return false
	}
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if !unicode.IsPrint(r) {
			return false
		}
		b = b[n:]
	}
	return true
}
