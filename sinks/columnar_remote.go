package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// partRemote is where a ColumnarSink's parts go when they are not files in
// a local output directory but objects in a bucket (s3.go). The sink still
// writes each part to a local staging file: it is the buffer the store
// uploads from and, under exactly_once, the durable copy of what a
// checkpoint holds of a part that is still open. The store takes the
// bytes from there:
//
//   - opened starts the upload state of a new part, whose p.final (the
//     sink names it: a key relative to the sink's key prefix, numbered per
//     partition so that names are the same whatever the checkpoints and
//     crashes) is set;
//   - wrote is called after rows went to p: the store may start uploading
//     what is in the file already, in parts of its part size;
//   - finish is called once p's file is complete and fsynced: the store
//     uploads the rest and returns the entry that says how to make it
//     visible, which is what publish does;
//   - snapshot returns the entry of a part that stays open across a
//     checkpoint (see ColumnarSink.keepOpen): what is uploaded, and how
//     many bytes of the local file the checkpoint holds;
//   - resume takes an open entry back after a restart, or reports that a
//     clean stop made it visible already;
//   - abortOthers aborts every upload of a key ending in suffix (this
//     sink's) but those in keep.
//
// All methods run on the sink's writer goroutine.
type partRemote interface {
	name() string // error prefix
	opened(p *part) error
	wrote(p *part) error
	finish(p *part) (*objectEntry, error)
	snapshot(p *part) (*objectEntry, error)
	publish(ctx context.Context, files []tokenFile) error
	resume(ctx context.Context, f tokenFile, p *part) (visible bool, err error)
	abortOthers(ctx context.Context, keep map[string]bool, suffix string) error
	// discard forgets p's upload state without touching the bucket (an
	// upload left behind is aborted by the next Recover).
	discard(p *part)
	// drop forgets p's upload state and aborts its upload, if it started
	// one (a part held for a merge, see holdable).
	drop(ctx context.Context, p *part) error
	// exists reports whether an object is under key (as p.final).
	exists(ctx context.Context, key string) (bool, error)
	close()
}

// resumableEncoder is implemented by encoders whose file is a plain
// concatenation of what each write adds (JSON lines): a part of theirs may
// stay open across a checkpoint, cut back after a crash to the length the
// checkpoint holds, and be written on.
type resumableEncoder interface{ resumable() }

// schemalessFormat is implemented by formats that write records whole
// (JSON lines): without a declared schema the sink infers none, and Check
// only renders the partition.
type schemalessFormat interface{ schemaless() }

// objectEntry is a part's object in a commit token (tokenFile.Object):
//
//	{"key":"lake/dt=2026-01-01/part-000003-1a2b3c4d.parquet","upload":"<id>",
//	 "parts":[{"n":1,"etag":"\"9b2…\"","bytes":8388608}],
//	 "open":true, "opened":1767225600000, "meta":"1a2b3c4d/<staged name>"}
//
// upload is the multipart upload id ("" while nothing is uploaded), parts
// the uploaded parts 1..n in order (the bytes they cover are the start of
// the part's file), open says the part is still being written (the token's
// Bytes and CRC32C are then the length and checksum of the file so far,
// which the bucket holds in parts plus the local staging file), and meta
// is the value of the object's x-amz-meta-weir-part, by which a later
// commit knows the object as its own.
type objectEntry struct {
	Key    string       `json:"key"`
	Upload string       `json:"upload,omitempty"`
	Parts  []objectPart `json:"parts,omitempty"`
	Open   bool         `json:"open,omitempty"`
	Opened int64        `json:"opened,omitempty"` // unix ms: max_file_age survives a restart
	Meta   string       `json:"meta"`
}

type objectPart struct {
	N     int32  `json:"n"`
	ETag  string `json:"etag"`
	Bytes int64  `json:"bytes"`
}

// keepOpen says whether an open part stays open across the checkpoint
// being pre-committed instead of being finished: only for a store, only
// for an encoder that can be resumed, and only while it is smaller than
// min_file_bytes and younger than max_file_age.
func (s *ColumnarSink) keepOpen(p *part) bool {
	if s.remote == nil || s.minFileBytes <= 0 {
		return false
	}
	if _, ok := p.enc.(resumableEncoder); !ok {
		return false
	}
	if s.opts.MaxFileAge > 0 && s.now().Sub(p.opened) >= s.opts.MaxFileAge {
		return false
	}
	return p.file.n < s.minFileBytes
}

// checkpointOpen makes an open part's bytes durable in its local staging
// file and returns its token entry.
func (s *ColumnarSink) checkpointOpen(p *part) (tokenFile, error) {
	if err := p.enc.flush(); err != nil {
		return tokenFile{}, fmt.Errorf("%s: write %s: %w", s.name, p.path, err)
	}
	if err := p.file.w.Flush(); err != nil {
		return tokenFile{}, fmt.Errorf("%s: write %s: %w", s.name, p.path, err)
	}
	if err := p.file.f.Sync(); err != nil {
		return tokenFile{}, fmt.Errorf("%s: fsync %s: %w", s.name, p.path, err)
	}
	obj, err := s.remote.snapshot(p)
	if err != nil {
		return tokenFile{}, err
	}
	return tokenFile{Staged: filepath.Base(p.path), Final: p.final, Bytes: p.file.n, CRC32C: p.file.crc, Rows: p.rows, Object: obj}, nil
}

// holdable says whether an open part that cannot stay open (Parquet) is
// held at the checkpoint being pre-committed instead of uploaded: finished
// in staging, to be merged with the partition's next parts into one object
// once they reach min_file_bytes together, or max_file_age after the
// first of them was opened.
func (s *ColumnarSink) holdable(p *part) bool {
	if s.remote == nil || s.minFileBytes <= 0 {
		return false
	}
	if _, ok := s.format.(mergingFormat); !ok {
		return false
	}
	held := s.held[p.key]
	total := p.file.n
	opened := p.opened
	for _, f := range held {
		total += f.Bytes
	}
	if len(held) > 0 {
		opened = time.UnixMilli(held[0].Object.Opened)
	}
	if s.opts.MaxFileAge > 0 && s.now().Sub(opened) >= s.opts.MaxFileAge {
		return len(held) > 0 // merged right away with the others
	}
	return total < s.minFileBytes || len(held) > 0
}

// hold finishes p in staging as a held part: not uploaded (its upload, if
// it had started one, is aborted) and not numbered (the number it took is
// given back; it is the partition's last).
func (s *ColumnarSink) hold(ctx context.Context, p *part) error {
	delete(s.parts, p.key)
	if err := p.enc.close(); err != nil {
		p.file.abandon()
		return fmt.Errorf("%s: finish %s: %w", s.name, p.path, err)
	}
	if err := p.file.finish(); err != nil {
		return fmt.Errorf("%s: finish %s: %w", s.name, p.path, err)
	}
	if err := s.remote.drop(ctx, p); err != nil {
		return err
	}
	s.objSeqs[p.key]--
	if p.rows == 0 {
		return os.Remove(p.path)
	}
	staged := filepath.Base(p.path)
	s.held[p.key] = append(s.held[p.key], tokenFile{Staged: staged, Final: path.Join(p.key, staged), Bytes: p.file.n, CRC32C: p.file.crc,
		Rows: p.rows, Held: true, Object: &objectEntry{Opened: p.opened.UnixMilli()}})
	return nil
}

// mergedAway are held parts merged into an object of checkpoint ckpt:
// their staging files go once that checkpoint is committed.
type mergedAway struct {
	ckpt   uint64
	staged []string
}

// mergeHeld merges the held parts of each partition that reached
// min_file_bytes (or max_file_age; every partition when all is set) into
// one new part, uploaded and waiting in s.rolled like a rolled part.
func (s *ColumnarSink) mergeHeld(checkpoint uint64, all bool) error {
	mf, _ := s.format.(mergingFormat)
	for _, key := range slices.Sorted(maps.Keys(s.held)) {
		files := s.held[key]
		var total, rows int64
		srcs := make([]string, len(files))
		staged := make([]string, len(files))
		for i, f := range files {
			total += f.Bytes
			rows += f.Rows
			srcs[i] = filepath.Join(s.staging, f.Staged)
			staged[i] = f.Staged
		}
		opened := time.UnixMilli(files[0].Object.Opened)
		aged := s.opts.MaxFileAge > 0 && s.now().Sub(opened) >= s.opts.MaxFileAge
		if !all && !aged && total < s.minFileBytes {
			continue
		}
		s.fileSeq++
		s.clock++
		p := &part{key: key, opened: opened, lastUse: s.clock, rows: rows}
		p.path = filepath.Join(s.staging, fmt.Sprintf("%s-%06d.%s", s.runID, s.fileSeq, s.format.ext()))
		seq := s.objSeqs[key] + 1
		s.objSeqs[key] = seq
		p.final = path.Join(key, fmt.Sprintf("%s-%06d%s", s.stem, seq, s.keySuffix()))
		fh, err := os.OpenFile(p.path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
		if err != nil {
			return fmt.Errorf("%s: open part: %w", s.name, err)
		}
		p.file = newPartFile(fh)
		if err := s.remote.opened(p); err != nil {
			p.file.abandon()
			return err
		}
		if err := mf.merge(p.file, s.Schema(), srcs); err != nil {
			p.file.abandon()
			s.remote.discard(p)
			return fmt.Errorf("%s: merge the held parts of %s: %w", s.name, p.final, err)
		}
		if err := p.file.finish(); err != nil {
			s.remote.discard(p)
			return fmt.Errorf("%s: finish %s: %w", s.name, p.path, err)
		}
		if err := s.remote.wrote(p); err != nil {
			s.remote.discard(p)
			return err
		}
		obj, err := s.remote.finish(p)
		if err != nil {
			return err
		}
		s.rolled = append(s.rolled, rolledPart{key: key, file: tokenFile{Staged: filepath.Base(p.path), Final: p.final,
			Bytes: p.file.n, CRC32C: p.file.crc, Rows: rows, Object: obj}})
		s.mergedAway = append(s.mergedAway, mergedAway{ckpt: checkpoint, staged: staged})
		delete(s.held, key)
	}
	return nil
}

// dropMerged removes the staging files of held parts whose merged object
// is committed.
func (s *ColumnarSink) dropMerged(committed uint64) error {
	keep := s.mergedAway[:0]
	for _, m := range s.mergedAway {
		if m.ckpt > committed {
			keep = append(keep, m)
			continue
		}
		for _, f := range m.staged {
			if err := os.Remove(filepath.Join(s.staging, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	s.mergedAway = keep
	return nil
}

// heldFiles returns every held part, by partition and in order.
func (s *ColumnarSink) heldFiles() []tokenFile {
	var out []tokenFile
	for _, k := range slices.Sorted(maps.Keys(s.held)) {
		out = append(out, s.held[k]...)
	}
	return out
}

// restoreHeld takes back the held parts of a token. The staging files of
// a partition are gone only when a clean stop merged and published them
// after this checkpoint: the object that follows the token's last number
// is then there.
func (s *ColumnarSink) restoreHeld(ctx context.Context, files []tokenFile) error {
	byKey := map[string][]tokenFile{}
	for _, f := range files {
		if f.Held {
			byKey[partitionOf(f.Final)] = append(byKey[partitionOf(f.Final)], f)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		held := byKey[key]
		missing := 0
		for _, f := range held {
			fi, err := os.Stat(filepath.Join(s.staging, f.Staged))
			switch {
			case errors.Is(err, os.ErrNotExist):
				missing++
			case err != nil:
				return err
			case fi.Size() != f.Bytes:
				return fmt.Errorf("held part %s has %d bytes, the checkpoint says %d", f.Staged, fi.Size(), f.Bytes)
			}
		}
		if missing == 0 {
			s.held[key] = held
			continue
		}
		next := path.Join(key, fmt.Sprintf("%s-%06d%s", s.stem, s.objSeqs[key]+1, s.keySuffix()))
		there, err := s.remote.exists(ctx, next)
		if err != nil {
			return err
		}
		if missing != len(held) || !there {
			return fmt.Errorf("%d of the %d held parts of partition %q are gone from staging, and object %s, which a clean stop would have merged them into, is not there: their rows are lost", missing, len(held), key, next)
		}
		s.objSeqs[key]++
	}
	return nil
}

// preCommitRemote finishes, holds or keeps open every open part, merges
// the held parts that are due, and returns the entries of the parts that
// stay open and of the held ones.
func (s *ColumnarSink) preCommitRemote(ctx context.Context, checkpoint uint64) ([]tokenFile, error) {
	var open []tokenFile
	for _, k := range slices.Sorted(maps.Keys(s.parts)) {
		p := s.parts[k]
		switch {
		case s.keepOpen(p):
			f, err := s.checkpointOpen(p)
			if err != nil {
				return nil, err
			}
			open = append(open, f)
		case s.holdable(p):
			if err := s.hold(ctx, p); err != nil {
				return nil, err
			}
		default:
			if err := s.roll(p); err != nil {
				return nil, err
			}
		}
	}
	if err := s.mergeHeld(checkpoint, false); err != nil {
		return nil, err
	}
	s.dirty = false
	return append(open, s.heldFiles()...), nil
}

// resumeParts takes back the parts a token left open: each one's staging
// file is cut to the length the checkpoint holds, checked against its
// CRC-32C, and written on.
func (s *ColumnarSink) resumeParts(ctx context.Context, files []tokenFile) error {
	for _, f := range files {
		if f.Object == nil || !f.Object.Open {
			continue
		}
		key := partitionOf(f.Final)
		p := &part{key: key, path: filepath.Join(s.staging, f.Staged), final: f.Final, rows: f.Rows, opened: time.UnixMilli(f.Object.Opened)}
		visible, err := s.remote.resume(ctx, f, p)
		if err != nil {
			return err
		}
		if visible {
			// A clean stop finished it after this checkpoint; nothing was
			// written to it since.
			os.Remove(p.path)
			continue
		}
		fh, err := os.OpenFile(p.path, os.O_RDWR, 0)
		if err != nil {
			s.remote.discard(p)
			return fmt.Errorf("the staging file of open part %s, which the last checkpoint holds %d bytes of, is gone: %w", f.Final, f.Bytes, err)
		}
		if err := resumeFile(fh, f.Bytes, f.CRC32C); err != nil {
			fh.Close()
			s.remote.discard(p)
			return fmt.Errorf("open part %s (staged as %s): %w", f.Final, f.Staged, err)
		}
		p.file = newPartFile(fh)
		p.file.n, p.file.crc = f.Bytes, f.CRC32C
		p.enc, err = s.format.newEncoder(p.file, s.Schema())
		if err != nil {
			fh.Close()
			s.remote.discard(p)
			return fmt.Errorf("resume part %s: %w", f.Final, err)
		}
		if _, ok := p.enc.(resumableEncoder); !ok {
			fh.Close()
			s.remote.discard(p)
			return fmt.Errorf("the checkpoint holds part %s open, and its format cannot be resumed", f.Final)
		}
		s.clock++
		p.lastUse = s.clock
		s.parts[key] = p
	}
	return nil
}

// resumeFile cuts f to n bytes, checks that what remains has CRC-32C crc,
// and leaves the offset at the end.
func resumeFile(f *os.File, n int64, crc uint32) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < n {
		return fmt.Errorf("the staging file has %d bytes, the checkpoint holds %d", fi.Size(), n)
	}
	if fi.Size() > n {
		if err := f.Truncate(n); err != nil {
			return err
		}
	}
	h := crc32.New(castagnoli)
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, n)); err != nil {
		return err
	}
	if h.Sum32() != crc {
		return fmt.Errorf("the staging file's first %d bytes have CRC-32C %08x, the checkpoint says %08x", n, h.Sum32(), crc)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	_, err = f.Seek(n, io.SeekStart)
	return err
}

// finishOpenRemote finishes and publishes every open part, at a clean stop
// (see Close): what they hold is what the last committed checkpoint holds
// of them.
func (s *ColumnarSink) finishOpenRemote(ctx context.Context) error {
	var files []tokenFile
	for _, k := range slices.Sorted(maps.Keys(s.parts)) {
		p := s.parts[k]
		delete(s.parts, k)
		if err := p.enc.close(); err != nil {
			p.file.abandon()
			return fmt.Errorf("%s: finish %s: %w", s.name, p.path, err)
		}
		if err := p.file.finish(); err != nil {
			return fmt.Errorf("%s: finish %s: %w", s.name, p.path, err)
		}
		obj, err := s.remote.finish(p)
		if err != nil {
			return err
		}
		files = append(files, tokenFile{Staged: filepath.Base(p.path), Final: p.final, Bytes: p.file.n, CRC32C: p.file.crc, Rows: p.rows, Object: obj})
	}
	return s.publishRemote(ctx, files)
}

// publishRemote makes finished parts visible and removes their staging
// files.
func (s *ColumnarSink) publishRemote(ctx context.Context, files []tokenFile) error {
	var done []tokenFile
	for _, f := range files {
		if f.Held {
			continue
		}
		if f.Object == nil {
			return fmt.Errorf("part %s has no object in the token", f.Final)
		}
		if !f.Object.Open {
			done = append(done, f)
		}
	}
	if err := s.remote.publish(ctx, done); err != nil {
		return err
	}
	for _, f := range done {
		if err := os.Remove(filepath.Join(s.staging, f.Staged)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// partitionOf is the partition directory of a part's final name.
func partitionOf(final string) string {
	if i := strings.LastIndexByte(final, '/'); i >= 0 {
		return final[:i]
	}
	return ""
}

// setUpRemote finishes building a sink that writes to a bucket: parts are
// staged in the component directory whatever the guarantee.
func (s *ColumnarSink) setUpRemote(b pipeline.Build) (*ColumnarSink, error) {
	if b.Dir == "" {
		return nil, fmt.Errorf("%s: the sink stages parts in a component directory (Build.Dir), and has none", s.name)
	}
	if b.KeepTasks {
		return nil, fmt.Errorf("%s: the sink cannot keep tasks (scale-out): use the parquet sink on a shared directory, or kafka or postgres", s.name)
	}
	dir, err := b.MkDir()
	if err != nil {
		return nil, fmt.Errorf("%s: create component directory: %w", s.name, err)
	}
	s.staging = filepath.Join(dir, "staging")
	if err := mkdirAllSync(s.staging); err != nil {
		return nil, fmt.Errorf("%s: create staging directory: %w", s.name, err)
	}
	s.runID = strconv.FormatInt(s.now().UnixNano(), 36)
	return s, nil
}

// keySuffix ends the name of every object of this sink.
func (s *ColumnarSink) keySuffix() string { return "-" + s.sinkID + "." + s.format.ext() }

// openRemotePart opens a new part of partition p.key: a staging file, an
// encoder, and its name, <partition>/<prefix>-<n:%06d>-<sink id>.<ext>
// with n counting the partition's parts.
func (s *ColumnarSink) openRemotePart(p *part, schema *ColumnarSchema) (*part, error) {
	p.path = filepath.Join(s.staging, fmt.Sprintf("%s-%06d.%s", s.runID, s.fileSeq, s.format.ext()))
	seq := s.objSeqs[p.key] + 1
	s.objSeqs[p.key] = seq
	p.final = path.Join(p.key, fmt.Sprintf("%s-%06d%s", s.stem, seq, s.keySuffix()))
	if err := s.createPart(p, schema, os.O_RDWR); err != nil {
		return nil, err
	}
	if err := s.remote.opened(p); err != nil {
		p.file.abandon()
		os.Remove(p.path)
		return nil, err
	}
	s.parts[p.key] = p
	return p, nil
}

// rollRemote uploads the rest of a closed part: under exactly_once it then
// waits for the next PreCommit, otherwise it is made visible now.
func (s *ColumnarSink) rollRemote(p *part) error {
	obj, err := s.remote.finish(p)
	if err != nil {
		return err
	}
	f := tokenFile{Staged: filepath.Base(p.path), Final: p.final, Bytes: p.file.n, CRC32C: p.file.crc, Rows: p.rows, Object: obj}
	if s.exactlyOnce {
		s.rolled = append(s.rolled, rolledPart{key: p.key, file: f})
		return nil
	}
	return s.publishRemote(context.Background(), []tokenFile{f})
}

// preCommitToRemote is PreCommit for a sink that writes to a bucket: the
// token lists the finished parts not yet committed, every part that stays
// open, and the part numbers.
func (s *ColumnarSink) preCommitToRemote(ctx context.Context, checkpoint uint64) ([]byte, error) {
	open, err := s.preCommitRemote(ctx, checkpoint)
	if err != nil {
		return nil, s.fail(err)
	}
	if len(s.rolled) > 0 || len(open) > 0 {
		if err := syncDir(s.staging); err != nil {
			return nil, s.fail(fmt.Errorf("%s: %w", s.name, err))
		}
	}
	s.lastCkpt = checkpoint
	for _, rp := range s.rolled {
		s.pending = append(s.pending, rp.file)
	}
	s.rolled = s.rolled[:0]
	tok := columnarToken{Version: tokenVersion, Sink: s.b.Component, Checkpoint: checkpoint,
		Files: append(slices.Clone(s.pending), open...), Seqs: maps.Clone(s.objSeqs)}
	if tok.Files == nil {
		tok.Files = []tokenFile{}
	}
	if st := s.schema.cur.Load(); st != nil && !s.declared {
		tok.Schema = st.schema.String()
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tok); err != nil {
		return nil, fmt.Errorf("%s: encode token: %w", s.name, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// recoverRemote is Recover for a sink that writes to a bucket, under every
// guarantee: it makes the token's finished parts visible, takes its open
// parts back, aborts every other upload of the sink and deletes every
// other staging file.
func (s *ColumnarSink) recoverRemote(ctx context.Context, token []byte) error {
	keep := map[string]bool{}
	if len(token) > 0 {
		tok, err := decodeToken(token)
		if err != nil {
			return fmt.Errorf("%s: recover: %w", s.name, err)
		}
		if tok.Sink != s.b.Component {
			return fmt.Errorf("%s: recover: the token belongs to sink %q, not %q", s.name, tok.Sink, s.b.Component)
		}
		if err := s.restoreSchema(tok); err != nil {
			return err
		}
		maps.Copy(s.objSeqs, tok.Seqs)
		if err := s.publishRemote(ctx, tok.Files); err != nil {
			return fmt.Errorf("%s: recover checkpoint %d: %w", s.name, tok.Checkpoint, err)
		}
		if err := s.resumeParts(ctx, tok.Files); err != nil {
			return fmt.Errorf("%s: recover checkpoint %d: %w", s.name, tok.Checkpoint, err)
		}
		if err := s.restoreHeld(ctx, tok.Files); err != nil {
			return fmt.Errorf("%s: recover checkpoint %d: %w", s.name, tok.Checkpoint, err)
		}
		s.lastCkpt, s.committedCkpt = tok.Checkpoint, tok.Checkpoint
	}
	for _, p := range s.parts {
		if p.obj != nil && p.obj.id != "" {
			keep[p.obj.id] = true
		}
	}
	if err := s.remote.abortOthers(ctx, keep, s.keySuffix()); err != nil {
		return fmt.Errorf("%s: recover: %w", s.name, err)
	}
	entries, err := os.ReadDir(s.staging)
	if err != nil {
		return fmt.Errorf("%s: recover: %w", s.name, err)
	}
	live := map[string]bool{}
	for _, p := range s.parts {
		live[filepath.Base(p.path)] = true
	}
	for _, f := range s.heldFiles() {
		live[f.Staged] = true
	}
	for _, e := range entries {
		if e.IsDir() || live[e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(s.staging, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: recover: discard staged part: %w", s.name, err)
		}
	}
	s.pending, s.rolled = s.pending[:0], s.rolled[:0]
	return syncDir(s.staging)
}

// closeRemote is Close for a sink that writes to a bucket. After a clean
// stop under exactly_once (the last checkpoint committed, nothing written
// since) the parts still open are finished and made visible: the last
// checkpoint holds exactly what they hold, and a restart would otherwise
// be the only thing that shows them. Otherwise they are left to the next
// Recover, which takes them back from the last checkpoint. Outside
// exactly_once every open part is finished and made visible.
func (s *ColumnarSink) closeRemote(ctx context.Context) error {
	defer s.remote.close()
	if s.failed == nil && (!s.exactlyOnce || (!s.dirty && len(s.pending) == 0 && len(s.rolled) == 0 && s.committedCkpt == s.lastCkpt)) {
		if !s.exactlyOnce {
			return s.rollAll()
		}
		if err := s.finishOpenRemote(ctx); err != nil {
			return err
		}
		// Held parts too: merged into one object per partition.
		if err := s.mergeHeld(s.lastCkpt, true); err != nil {
			return err
		}
		var merged []tokenFile
		for _, rp := range s.rolled {
			merged = append(merged, rp.file)
		}
		s.rolled = nil
		if err := s.publishRemote(ctx, merged); err != nil {
			return err
		}
		return s.dropMerged(s.lastCkpt)
	}
	s.remote.close() // stop the uploads in flight first: nobody waits for them
	for _, p := range s.parts {
		p.file.abandon()
		s.remote.discard(p)
	}
	clear(s.parts)
	s.rolled = nil
	return nil
}
