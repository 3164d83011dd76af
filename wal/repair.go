package wal

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// cutTornTail removes the torn tail that scanning found at the end of the
// last segment: it truncates the segment to its last valid frame and
// fsyncs it, or, for a torn header, re-creates the segment holding no
// records. It returns the segment open for writing and its new size. Open
// and TruncateTornTail both repair this way, and only with the lock held.
func (l *Log) cutTornTail(tail segScan) (*os.File, int64, error) {
	first := tail.first
	if tail.end == 0 {
		l.log.Warn("wal: re-creating segment with torn header", "segment", first, "bytes", tail.size, "reason", tail.torn)
		f, err := l.createSegment(first)
		if err != nil {
			return nil, 0, err
		}
		return f, headerSize, nil
	}
	f, err := os.OpenFile(segmentPath(l.dir, first), os.O_WRONLY, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("wal: open segment %d: %w", first, err)
	}
	if err := f.Truncate(tail.end); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("wal: truncate torn tail of segment %d: %w", first, err)
	}
	if err := l.fsync(f); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("wal: sync segment %d: %w", first, err)
	}
	l.log.Warn("wal: truncated torn tail", "segment", first, "offset", tail.end,
		"bytes", tail.size-tail.end, "records", tail.records, "reason", tail.torn)
	return f, tail.end, nil
}

// TruncateTornTail removes the torn tail t that Verify reported for the
// log in dir, as the next Open would: the last segment is cut back to
// t.Offset and fsynced (or, when t.Header is set, re-created holding no
// records). No other byte is touched, and damage that is not a torn tail
// is never repaired.
//
// It holds the directory's lock while it works, so it fails if a Log has
// dir open. It verifies the log again first and changes nothing, returning
// an error, unless the log still ends in exactly the torn tail t: a log
// that changed since Verify must be verified again.
func TruncateTornTail(dir string, t TornTail) error {
	lf, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("wal: open lock file: %w", err)
	}
	defer lf.Close() // releases the lock
	if err := lockFile(lf); err != nil {
		return fmt.Errorf("wal: lock %s (is a Log open on it?): %w", dir, err)
	}
	ls, err := scanLog(dir)
	if err != nil {
		return err
	}
	if len(ls.segs) == 0 {
		return fmt.Errorf("%w: %s holds no segment files", ErrNotLog, dir)
	}
	tail := ls.segs[len(ls.segs)-1]
	if tail.torn == nil || tail.first != t.Segment || tail.end != t.Offset || tail.size-tail.end != t.Bytes {
		return fmt.Errorf("wal: truncate torn tail of segment %d at offset %d: the log changed since it was verified; verify it again", t.Segment, t.Offset)
	}
	// A Log that is never started: just enough for cutTornTail.
	l := &Log{dir: dir, log: slog.New(slog.DiscardHandler)}
	f, _, err := l.cutTornTail(tail)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wal: close segment %d: %w", t.Segment, err)
	}
	return nil
}
