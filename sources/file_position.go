package sources

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// filePosition is the `file` source's checkpointed position (JSON):
//
//	{"v":1,"files":[{"path":"logs/app.log","dev":2049,"ino":1311,
//	  "fp":"af63bd4c8601b7df","fp_len":1024,"offset":52311,"line":402}]}
//
// One entry per tracked file: its identity (device and inode, plus the
// FNV-1a hash of its first fp_len bytes, so an inode reused by another file
// is recognised), the path it was last seen at, and the state after the
// last line returned: the byte offset (of decompressed data for gzip
// files), the number of the next line (0: unknown, after start_at: end),
// skip (the offset is inside a line that was too long, whose rest is
// discarded), done and size (a gzip file read to the end of its stream,
// with its compressed size then).
type filePosition struct {
	V     int         `json:"v"`
	Files []fileEntry `json:"files"`
}

type fileEntry struct {
	Path   string `json:"path"`
	Dev    uint64 `json:"dev,omitempty"`
	Ino    uint64 `json:"ino,omitempty"`
	FP     string `json:"fp"`
	FPLen  int    `json:"fp_len"`
	Offset int64  `json:"offset"`
	Line   int64  `json:"line,omitempty"`
	Skip   bool   `json:"skip,omitempty"`
	Done   bool   `json:"done,omitempty"`
	Size   int64  `json:"size,omitempty"`
}

const filePositionVersion = 1

// Position implements pipeline.Positioned. The returned bytes are never
// modified afterwards; Position returns the same slice while nothing moved.
func (s *fileSource) Position() ([]byte, error) {
	if s.pos != nil && s.posGen == s.gen {
		return s.pos, nil
	}
	p := filePosition{V: filePositionVersion, Files: make([]fileEntry, 0, len(s.files))}
	for _, tf := range s.files {
		if tf.copyOf != nil || tf.copyPending {
			continue // parked: found again as a copy after a restart
		}
		p.Files = append(p.Files, fileEntry{
			Path: tf.path, Dev: tf.id.Dev, Ino: tf.id.Ino,
			FP: strconv.FormatUint(tf.fp, 16), FPLen: tf.fpLen,
			Offset: tf.lr.offset, Line: tf.lr.line, Skip: tf.lr.skip,
			Done: tf.done && tf.gz, Size: tf.size,
		})
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("file: encode position: %w", err)
	}
	s.pos, s.posGen = data, s.gen
	return data, nil
}

// Seek implements pipeline.Positioned. Each file of the position is looked
// for by identity: at its last path, else among the files the globs match,
// the files of its last directory and the rotated names in the directories
// right below it (it was rotated while weir was down; see rotatedNames). A
// file found with the same fingerprint resumes at its offset; one whose
// fingerprint no longer matches (its inode was reused, or it was rewritten)
// or that is now shorter than its offset (truncated) starts at 0 when the
// globs match it. When a plain file is gone, truncated or rewritten, its
// copy (copytruncate, compress) is looked for by fingerprint among the same
// files and continues from the checkpointed offset. Files matching the
// globs that the position does not name are read from their beginning.
func (s *fileSource) Seek(_ context.Context, pos []byte) error {
	if s.started {
		return fmt.Errorf("file: seek after the first read")
	}
	s.restored = true
	if len(pos) == 0 {
		return nil
	}
	var p filePosition
	if err := json.Unmarshal(pos, &p); err != nil {
		return fmt.Errorf("file: decode position: %w", err)
	}
	if p.V != filePositionVersion {
		return fmt.Errorf("file: position version %d is not supported (want %d)", p.V, filePositionVersion)
	}
	finder := &identityFinder{index: map[fileID]string{}, dirs: map[string]bool{}}
	var lost []lostTail // what gone, truncated and rewritten files held: for their copies
	for _, e := range p.Files {
		fp, err := strconv.ParseUint(e.FP, 16, 64)
		if err != nil || e.FPLen < 0 || e.FPLen > fingerprintBytes || e.Offset < 0 || e.Line < 0 {
			return fmt.Errorf("file: decode position: bad entry for %q", e.Path)
		}
		id := fileID{Dev: e.Dev, Ino: e.Ino}
		if e.Dev == 0 && e.Ino == 0 { // a system without inodes
			id = fileID{path: absPath(e.Path)}
		}
		if s.byID[id] != nil {
			continue
		}
		l := lostTail{id: id, path: e.Path, fp: fp, fpLen: e.FPLen, offset: e.Offset, line: e.Line, skip: e.Skip}
		if s.isGzip(e.Path) {
			l.fpLen = 0 // the fingerprint of a gzip file is of its compressed bytes: no copy is looked for
		}
		path := finder.find(s, id, e.Path)
		if path == "" {
			s.log.Info("file: a checkpointed file is gone", "path", e.Path)
			lost = append(lost, l)
			continue
		}
		tf := s.newTailFile(path, id)
		track, gone := s.restoreEntry(tf, e, fp)
		if track {
			s.add(tf)
		}
		if gone {
			lost = append(lost, l)
		}
	}
	for _, l := range lost {
		if l.fpLen > 0 {
			s.succeed(nil, l)
		}
	}
	return nil
}

// restoreEntry checks a found file against its checkpointed fingerprint
// and sets where reading resumes. It reports whether to track the file,
// and whether what it held past its offset is gone from it (truncated,
// rewritten or replaced), so that its copy is looked for.
func (s *fileSource) restoreEntry(tf *tailFile, e fileEntry, fp uint64) (track, gone bool) {
	f, err := os.Open(tf.path)
	if err != nil {
		s.log.Info("file: cannot open a checkpointed file", "path", tf.path, "error", err)
		return false, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || idFor(fi, tf.path) != tf.id {
		return false, true
	}
	// A file checkpointed before anything of it was read has no
	// fingerprint to compare (FPLen 0): its identity is all there is.
	got, n, err := s.fingerprint(f, e.FPLen)
	if e.FPLen > 0 && (err != nil || n < e.FPLen || got != fp) {
		// Another file took the inode: read it as new if the globs match it.
		s.log.Info("file: a checkpointed file was replaced; reading the new one from the start", "path", tf.path)
		return false, true
	}
	tf.fp, tf.fpLen = fp, e.FPLen
	switch {
	case tf.gz && e.Done && fi.Size() == e.Size:
		tf.done, tf.size = true, e.Size
		tf.lr.reset(e.Offset, e.Line, false)
	case !tf.gz && fi.Size() < e.Offset:
		s.log.Info("file: a checkpointed file was truncated; reading it from the start", "path", tf.path, "size", fi.Size(), "offset", e.Offset)
		tf.lr.reset(0, 1, false)
		gone = true
	default:
		tf.lr.reset(e.Offset, e.Line, e.Skip)
	}
	if tf.path != e.Path {
		s.log.Info("file: found a checkpointed file under a new name", "path", e.Path, "now", tf.path)
	}
	return true, gone
}

// identityFinder locates files by identity, listing each directory once.
type identityFinder struct {
	index   map[fileID]string
	dirs    map[string]bool
	globbed bool
}

func (f *identityFinder) find(s *fileSource, id fileID, last string) string {
	if fi, err := os.Stat(last); err == nil && fi.Mode().IsRegular() && idFor(fi, last) == id {
		return last
	}
	if id.path != "" {
		return "" // without inodes a file is known by its path only
	}
	if p, ok := f.index[id]; ok {
		return p
	}
	if !f.globbed {
		f.globbed = true
		for _, p := range s.matches() {
			f.note(p)
		}
		if p, ok := f.index[id]; ok {
			return p
		}
	}
	if dir := filepath.Dir(last); !f.dirs[dir] {
		f.dirs[dir] = true
		if ents, err := os.ReadDir(dir); err == nil {
			for _, e := range ents {
				if e.Type().IsRegular() {
					f.note(filepath.Join(dir, e.Name()))
				}
			}
		}
	}
	if p, ok := f.index[id]; ok {
		return p
	}
	if !f.dirs[last] { // moved into a directory below its own (olddir)
		f.dirs[last] = true
		for _, p := range rotatedNames(last) {
			f.note(p)
		}
	}
	return f.index[id]
}

func (f *identityFinder) note(p string) {
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	id := idFor(fi, p)
	if cur, ok := f.index[id]; !ok || preferPath(p, cur) {
		f.index[id] = p
	}
}

// preferPath orders two names of one file (hard links): the shorter, then
// the lexically smaller, so the choice is stable.
func preferPath(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return strings.Compare(a, b) < 0
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
