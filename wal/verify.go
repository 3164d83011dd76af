package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// ErrNotLog is returned (wrapped) by Verify for a directory that holds no
// segment files.
var ErrNotLog = errors.New("wal: not a write-ahead log")

// Report describes a log directory checked by Verify.
type Report struct {
	// Segments describes each segment verified, oldest first. When Verify
	// fails on damage, the last one is the damaged segment, counting the
	// records before the damage.
	Segments []SegmentInfo
	// Records is the number of valid records in Segments.
	Records uint64
	// Bytes is the total size of the segment files in Segments.
	Bytes int64
	// FirstIndex is the index of the oldest record: the first segment's name.
	FirstIndex uint64
	// NextIndex is the index after the last record that reads back in
	// order: on a sound log, the index the next Append gets; on a damaged
	// one, the first index that cannot be read. A log whose FirstIndex
	// equals its NextIndex holds no records.
	NextIndex uint64
	// Torn is the torn tail at the end of the last segment, which the next
	// Open truncates (as does TruncateTornTail); nil if there is none.
	Torn *TornTail
}

// TornTail describes a torn tail at the end of a log's last segment: the
// bytes of a write that a crash interrupted before its fsync completed
// (see the package documentation for the exact rule).
type TornTail struct {
	Segment uint64 // the segment's name: the index of its first record
	Path    string // the segment file
	Offset  int64  // where the torn bytes begin: just past the last valid frame
	Bytes   int64  // how many bytes are torn, to the end of the file
	// Header is set when the segment's header itself is torn (Offset is
	// then 0): the segment holds no records and the repair re-creates it.
	Header bool
	Reason error // what is wrong at Offset, e.g. a frame running past the end
}

// Verify checks every segment of the log in dir, as Open does, without
// modifying, locking or repairing anything, and describes what it found.
// It is safe to call on a directory another process is appending to;
// there, Torn may also be a frame still being written.
//
// A torn tail is not an error: it is reported in Report.Torn. Damage that
// is not a torn tail makes Verify return a *CorruptionError for the first
// damaged segment (and the Report up to it); a directory without segment
// files, an error wrapping ErrNotLog.
func Verify(dir string) (Report, error) {
	ls, err := scanLog(dir)
	if err == nil && len(ls.segs) == 0 {
		err = fmt.Errorf("%w: %s holds no segment files", ErrNotLog, dir)
	}
	var r Report
	for i, sc := range ls.segs {
		info := SegmentInfo{Path: segmentPath(dir, sc.first), FirstIndex: sc.first, Records: sc.records, Size: sc.size}
		if sc.torn != nil {
			info.TornBytes = sc.size - sc.end
			r.Torn = &TornTail{Segment: sc.first, Path: info.Path, Offset: sc.end, Bytes: info.TornBytes,
				Header: sc.end == 0, Reason: sc.torn}
		}
		if i == 0 {
			r.FirstIndex = sc.first
		}
		r.Segments = append(r.Segments, info)
		r.Records += sc.records
		r.Bytes += sc.size
	}
	r.NextIndex = ls.next
	return r, err
}

// findDepth is how far below its root FindLogs looks: deep enough for
// weir's <data_dir>/<pipeline>/<component>/wal seen from a project
// directory.
const findDepth = 4

// FindLogs returns the directories at root and up to four levels below it
// that hold segment files, in lexical order. It goes by file names only and
// verifies nothing; subdirectories it cannot read are skipped.
func FindLogs(root string) ([]string, error) {
	found := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			return nil // an unreadable subdirectory
		}
		if d.IsDir() {
			if rel, _ := filepath.Rel(root, path); rel != "." && strings.Count(rel, string(filepath.Separator)) >= findDepth {
				return filepath.SkipDir
			}
			return nil
		}
		if _, ok := parseSegmentName(d.Name(), segmentExt); ok && d.Type().IsRegular() {
			found[filepath.Dir(path)] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wal: find logs: %w", err)
	}
	return slices.Sorted(maps.Keys(found)), nil
}
