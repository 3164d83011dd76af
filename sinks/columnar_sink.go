package sinks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// columnarFormat is a file format a ColumnarSink writes: Parquet or Arrow
// IPC.
type columnarFormat interface {
	// name is the sink name, used as the error prefix ("parquet").
	name() string
	// ext is the file extension, without the dot.
	ext() string
	// newEncoder starts a file with schema s on w.
	newEncoder(w *partFile, s *ColumnarSchema) (columnarEncoder, error)
}

// columnarEncoder writes rows of one schema into one file.
type columnarEncoder interface {
	// write appends recs. It returns how many were written; when a record
	// does not fit the schema, recs[n] is that record, nothing of it was
	// written, and err is a *ColumnarFieldError. Any other error leaves
	// the file unusable.
	write(recs []*pipeline.Record) (n int, err error)
	// size estimates the file's size: bytes written plus rows buffered.
	size() int64
	// buffered is the memory held by rows not yet written to the file.
	buffered() int64
	// flush writes buffered rows out (a row group, a record batch).
	flush() error
	// close writes the rest and the footer. It does not close w.
	close() error
}

// partFile is the output of one part: a buffered file that counts its bytes
// and their CRC-32C (for the commit token). Seek supports only asking for
// the current position, which is all the Arrow file writer needs.
type partFile struct {
	f   *os.File
	w   *bufio.Writer
	n   int64
	crc uint32
}

func newPartFile(f *os.File) *partFile {
	return &partFile{f: f, w: bufio.NewWriterSize(f, 64<<10)}
}

func (p *partFile) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	p.crc = crc32.Update(p.crc, castagnoli, b[:n])
	return n, err
}

func (p *partFile) Seek(offset int64, whence int) (int64, error) {
	if offset == 0 && whence == io.SeekCurrent {
		return p.n, nil
	}
	return 0, errors.New("part file: only the current position can be asked for")
}

// finish flushes, fsyncs and closes the file.
func (p *partFile) finish() error {
	err := p.w.Flush()
	if err == nil {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// abandon closes the file without caring about its content.
func (p *partFile) abandon() { p.f.Close() }

// part is one open output file: the partition it belongs to, where it is
// being written, and its encoder.
type part struct {
	key     string // partition directory, slash-separated; "" without partition_by
	path    string // staged path (exactly_once) or in-progress path
	final   string // final path (at_least_once / at_most_once)
	file    *partFile
	enc     columnarEncoder
	opened  time.Time
	lastUse uint64 // LRU clock value of the last write
	rows    int64
	obj     *objectUpload // the upload of a sink that writes to a bucket
}

// rolledPart is a closed, fsynced staged part awaiting a checkpoint name.
type rolledPart struct {
	key  string
	file tokenFile // Staged, Bytes, CRC32C, Rows filled; Final at PreCommit
}

// schemaState is the schema in force, with what checking it needs.
type schemaState struct {
	schema *ColumnarSchema
	known  map[string]struct{} // top-level column names, for unknown_fields: reject
}

func newSchemaState(s *ColumnarSchema) *schemaState {
	st := &schemaState{schema: s, known: make(map[string]struct{}, len(s.Fields))}
	for _, f := range s.Fields {
		st.known[f.Name] = struct{}{}
	}
	return st
}

// schemaHolder keeps the schema of a sink: declared, or inferred once from
// the first record and then fixed. Safe for concurrent use.
type schemaHolder struct {
	sink   string
	logger *slog.Logger
	cur    atomic.Pointer[schemaState]
	mu     sync.Mutex // serializes inference
}

func (h *schemaHolder) get(r *pipeline.Record) *schemaState {
	if st := h.cur.Load(); st != nil {
		return st
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.cur.Load(); st != nil {
		return st
	}
	s, skipped := inferSchema(r)
	st := newSchemaState(s)
	h.cur.Store(st)
	h.logger.Info(h.sink+": schema inferred from the first record; it is fixed from now on", "schema", s.String(), "skipped", skipped)
	if len(skipped) > 0 {
		h.logger.Warn(h.sink+": fields of the first record whose type cannot be inferred are not columns; declare a schema to keep them", "fields", skipped)
	}
	return st
}

// ColumnarSink is the parquet and arrow sink: records go to part files, one
// open part per partition, in the format of the sink. A record's partition
// is partition_by rendered with pipeline.Template.RenderPath: each value is
// percent-encoded as Hive does, so it stays one directory level inside the
// output directory; a record whose partition cannot be rendered that way is
// refused by Check (the dead-letter output).
//
// Under exactly_once (pipeline.Committer) parts are written to a staging
// directory under Build.Dir. PreCommit closes and fsyncs every open part and
// returns a token that maps each staged file to its final name,
//
//	<path>/<partition>/<prefix>-<checkpoint:%010d>-<seq:%04d>-<sink id>.<ext>
//
// where seq numbers the parts of one partition within the checkpoint and
// sink id is 8 hex digits of a hash of the component id, so sinks sharing a
// directory never collide. Commit hard-links (or renames) each staged file to
// its final name, never replacing a file that is not its own, syncs the
// directories and removes the staged name; it is idempotent. Recover
// re-commits the last complete checkpoint's token and deletes every other
// staged file. A file is visible under a final name only once complete.
//
// Under at_least_once and at_most_once (pipeline.Flusher) parts are written
// in the output directory under hidden names ".<name>.inprogress" and
// renamed to <prefix>-<run start, unix ms>-<seq:%06d>-<sink id>.<ext> when
// they roll; Flush rolls every open part, since a columnar file is
// readable only once closed.
//
// Parts also roll at max_file_bytes, at max_file_age, and when
// max_open_files forces the least recently written one out.
//
// Many partitions means many files: every roll of a part, including the
// one that max_open_files forces, is a file of its own.
//
// Memory: rows buffered across open parts stay within max_buffer_bytes (past
// it the largest buffer is written out); on top of that each open Parquet
// part holds a page buffer per column (page_buffer_size) and its string
// dictionaries (up to 1 MiB per column, then plain encoding).
//
// Check (pipeline.RecordChecker) may run on another goroutine than the
// other methods, and concurrently with itself on different records; Write,
// PreCommit, Commit, Recover, Flush and Close run on one goroutine.
type ColumnarSink struct {
	format      columnarFormat
	name        string // error prefix
	opts        ColumnarOptions
	b           pipeline.Build
	logger      *slog.Logger
	now         func() time.Time
	exactlyOnce bool
	rules       valueRules

	outDir  string // output directory
	stem    string // file name stem
	staging string // staging directory (exactly_once)
	sinkID  string // 8 hex digits from the component id
	runID   string // names in-progress and staged files of this process

	schema   schemaHolder
	declared bool // the schema came from the configuration

	// Check's own state, guarded by checkMu: Check may run off the writer
	// goroutine, and neither a Template nor a fieldLookup is safe for
	// concurrent use.
	checkMu     sync.Mutex
	checkLookup fieldLookup
	checkTmpl   *pipeline.Template
	checkBuf    []byte

	// The writer goroutine's state.
	tmpl     *pipeline.Template
	parts    map[string]*part
	clock    uint64 // LRU clock
	fileSeq  int    // names staged / in-progress files of this run
	groupBuf []byte
	groupIdx map[string]int
	groups   []recordGroup
	rolled   []rolledPart // staged parts closed since the last PreCommit
	pending  []tokenFile  // pre-committed, not yet committed; carried by every token
	lastCkpt uint64       // last pre-committed checkpoint id
	seqs     map[string]int
	closed   bool
	failed   error // a write error that left a part unusable

	tasks *columnarTasks // set when the sink keeps the pipeline's tasks

	// A sink that writes to a bucket (columnar_remote.go): parts are staged
	// locally whatever the guarantee, and the store takes them from there.
	remote        partRemote
	minFileBytes  int64                  // parts smaller than this stay open across checkpoints, when they can
	objSeqs       map[string]int         // next part number per partition; in every token
	dirty         bool                   // written since the last PreCommit
	committedCkpt uint64                 // last checkpoint committed
	schemaless    bool                   // the format needs no schema and none was declared
	held          map[string][]tokenFile // small finished parts waiting to be merged, by partition
	mergedAway    []mergedAway           // held parts merged into an object not yet committed
}

type recordGroup struct {
	key  string
	recs []*pipeline.Record
}

// newColumnarSink builds a ColumnarSink writing files of format f.
func newColumnarSink(b pipeline.Build, o ColumnarOptions, f columnarFormat) (*ColumnarSink, error) {
	return newColumnarSinkTo(b, o, f, nil)
}

// newColumnarSinkTo builds a ColumnarSink writing parts of format f to
// remote, or to files under o.Path when remote is nil.
func newColumnarSinkTo(b pipeline.Build, o ColumnarOptions, f columnarFormat, remote partRemote) (*ColumnarSink, error) {
	name := f.name()
	if remote != nil {
		name = remote.name()
	}
	if err := o.validate(false); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &ColumnarSink{
		format: f, name: name, opts: o, b: b,
		logger:      b.Logger,
		now:         b.Now,
		exactlyOnce: b.Guarantee == pipeline.ExactlyOnce || b.Guarantee == "",
		rules:       valueRules{maxValueBytes: o.MaxValueBytes, rejectUnknown: o.UnknownFields == "reject"},
		parts:       map[string]*part{},
		groupIdx:    map[string]int{},
		seqs:        map[string]int{},
		remote:      remote,
		objSeqs:     map[string]int{},
		held:        map[string][]tokenFile{},
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.schema = schemaHolder{sink: name, logger: s.logger}
	if o.Schema != nil {
		if len(o.Schema.Fields) == 0 {
			return nil, fmt.Errorf("%s: schema has no columns", name)
		}
		s.schema.cur.Store(newSchemaState(o.Schema))
		s.declared = true
	}
	if _, ok := f.(schemalessFormat); ok && !s.declared {
		s.schemaless = true
	}
	s.outDir, s.stem = columnarOutDir(b.Path(o.Path), f.ext())
	if o.Prefix != "" {
		s.stem = o.Prefix
	}
	h := fnv.New32a()
	h.Write([]byte(b.Component))
	s.sinkID = fmt.Sprintf("%08x", h.Sum32())
	start := s.now()
	s.runID = strconv.FormatInt(start.UnixMilli(), 10)
	if o.PartitionBy != nil {
		s.tmpl = o.PartitionBy.Clone()
		s.checkTmpl = o.PartitionBy.Clone()
	}
	if remote != nil {
		return s.setUpRemote(b)
	}
	if err := mkdirAllSync(s.outDir); err != nil {
		return nil, fmt.Errorf("%s: create output directory: %w", name, err)
	}
	if s.exactlyOnce {
		if b.Dir == "" {
			return nil, fmt.Errorf("%s: exactly_once needs a component directory (Build.Dir) for staging", name)
		}
		dir, err := b.MkDir()
		if err != nil {
			return nil, fmt.Errorf("%s: create component directory: %w", name, err)
		}
		s.staging = filepath.Join(dir, "staging")
		if err := mkdirAllSync(s.staging); err != nil {
			return nil, fmt.Errorf("%s: create staging directory: %w", name, err)
		}
		// Staged names must not repeat across restarts: a previous run's
		// staged files wait for Recover.
		s.runID = strconv.FormatInt(start.UnixNano(), 36)
		if b.KeepTasks {
			if o.Path == "-" {
				return nil, fmt.Errorf("%s: a sink that streams to stdout cannot keep tasks", name)
			}
			if err := s.setUpTasks(); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Schema returns the schema in force: the declared one, the inferred one,
// or nil before the first record when inferring.
func (s *ColumnarSink) Schema() *ColumnarSchema {
	if st := s.schema.cur.Load(); st != nil {
		return st.schema
	}
	return nil
}

// Check implements pipeline.RecordChecker: it returns an error naming the
// field and the reason when r does not fit the schema (wrong type, a null
// in a not-null column, a value out of range, a string over
// max_value_bytes, a field outside the schema under unknown_fields:
// reject), or when its partition cannot be rendered. When the schema is
// inferred, the first record checked fixes it.
func (s *ColumnarSink) Check(r *pipeline.Record) error {
	var st *schemaState
	if !s.schemaless {
		st = s.schema.get(r)
	}
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	if st != nil {
		if err := st.schema.checkRecord(r, &s.checkLookup, &s.rules, st.known); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if s.checkTmpl != nil {
		var err error
		s.checkBuf, err = s.checkTmpl.RenderPath(s.checkBuf[:0], r)
		if err != nil {
			return fmt.Errorf("%s: partition_by: %w", s.name, err)
		}
	}
	return nil
}

// Write implements pipeline.Sink. Records should have passed Check; one
// that does not fit is an error that stops the pipeline (it is never
// dropped or coerced), and so is a partition that cannot be rendered.
func (s *ColumnarSink) Write(ctx context.Context, b *pipeline.Batch) error {
	if s.closed {
		return fmt.Errorf("%s: write after close", s.name)
	}
	if s.failed != nil {
		return s.failed
	}
	if len(b.Records) == 0 {
		return nil
	}
	var schema *ColumnarSchema
	if !s.schemaless {
		schema = s.schema.get(b.Records[0]).schema
	}
	s.dirty = true
	group := s.group
	if s.tasks != nil {
		group = s.groupTasks
	}
	groups, err := group(b.Records)
	if err != nil {
		return err
	}
	for gi := range groups {
		g := &groups[gi]
		p, err := s.part(g.key, schema)
		if err != nil {
			return s.fail(err)
		}
		n, err := p.enc.write(g.recs)
		p.rows += int64(n)
		if err != nil {
			var fe *ColumnarFieldError
			if errors.As(err, &fe) {
				r := g.recs[n]
				return fmt.Errorf("%s: record from %s offset %d does not fit the schema (records must pass Check first): %w", s.name, r.Origin.Name, r.Origin.Offset, err)
			}
			return s.fail(fmt.Errorf("%s: write %s: %w", s.name, p.path, err))
		}
		if s.remote != nil {
			if err := s.remote.wrote(p); err != nil {
				return s.fail(err)
			}
		}
		if p.enc.size() >= s.opts.MaxFileBytes {
			if err := s.roll(p); err != nil {
				return s.fail(err)
			}
		}
	}
	if s.tmpl != nil || s.tasks != nil {
		for i := range groups {
			clear(groups[i].recs) // do not keep records alive until the next Write
			groups[i].recs = groups[i].recs[:0]
		}
	}
	if err := s.rollAged(); err != nil {
		return s.fail(err)
	}
	return s.boundMemory()
}

func (s *ColumnarSink) fail(err error) error {
	s.failed = err
	return err
}

// group splits records by partition, keeping their order within each.
func (s *ColumnarSink) group(recs []*pipeline.Record) ([]recordGroup, error) {
	s.groups = s.groups[:0]
	if s.tmpl == nil {
		s.groups = append(s.groups, recordGroup{key: "", recs: recs})
		return s.groups, nil
	}
	clear(s.groupIdx)
	groups := s.groups[:cap(s.groups)]
	n := 0
	for _, r := range recs {
		var err error
		s.groupBuf, err = s.tmpl.RenderPath(s.groupBuf[:0], r)
		if err != nil {
			return nil, fmt.Errorf("%s: partition_by %q: record from %s offset %d: %w", s.name, s.tmpl.Source, r.Origin.Name, r.Origin.Offset, err)
		}
		i, ok := s.groupIdx[string(s.groupBuf)]
		if !ok {
			key := string(s.groupBuf)
			i = n
			n++
			s.groupIdx[key] = i
			if i < len(groups) {
				groups[i].key = key
				groups[i].recs = groups[i].recs[:0]
			} else {
				groups = append(groups, recordGroup{key: key})
			}
		}
		groups[i].recs = append(groups[i].recs, r)
	}
	s.groups = groups[:n]
	return s.groups, nil
}

// part returns the open part of a partition, opening one (and rolling the
// least recently written part if max_open_files are open) when needed.
func (s *ColumnarSink) part(key string, schema *ColumnarSchema) (*part, error) {
	s.clock++
	if p := s.parts[key]; p != nil {
		p.lastUse = s.clock
		return p, nil
	}
	if len(s.parts) >= s.opts.MaxOpenFiles {
		var lru *part
		for _, p := range s.parts {
			if lru == nil || p.lastUse < lru.lastUse {
				lru = p
			}
		}
		if err := s.roll(lru); err != nil {
			return nil, err
		}
	}
	s.fileSeq++
	p := &part{key: key, opened: s.now(), lastUse: s.clock}
	if s.remote != nil {
		return s.openRemotePart(p, schema)
	}
	if s.exactlyOnce {
		p.path = filepath.Join(s.staging, fmt.Sprintf("%s-%06d.%s", s.runID, s.fileSeq, s.format.ext()))
	} else {
		dir := filepath.Join(s.outDir, filepath.FromSlash(key))
		if err := mkdirAllSync(dir); err != nil {
			return nil, fmt.Errorf("%s: create partition directory: %w", s.name, err)
		}
		name := fmt.Sprintf("%s-%s-%06d-%s.%s", s.stem, s.runID, s.fileSeq, s.sinkID, s.format.ext())
		p.final = filepath.Join(dir, name)
		p.path = filepath.Join(dir, "."+name+".inprogress")
	}
	if err := s.createPart(p, schema, os.O_WRONLY); err != nil {
		return nil, err
	}
	s.parts[key] = p
	return p, nil
}

// roll closes a part: its file is complete and fsynced. Under exactly_once
// it waits in staging for the next PreCommit; otherwise it is renamed to
// its final name. A part with no rows is deleted instead.
func (s *ColumnarSink) roll(p *part) error {
	delete(s.parts, p.key)
	if err := p.enc.close(); err != nil {
		p.file.abandon()
		return fmt.Errorf("%s: finish %s: %w", s.name, p.path, err)
	}
	if err := p.file.finish(); err != nil {
		return fmt.Errorf("%s: finish %s: %w", s.name, p.path, err)
	}
	if p.rows == 0 {
		if s.remote != nil {
			s.remote.discard(p)
		}
		return os.Remove(p.path)
	}
	if s.remote != nil {
		return s.rollRemote(p)
	}
	if s.exactlyOnce {
		s.rolled = append(s.rolled, rolledPart{key: p.key, file: tokenFile{
			Staged: filepath.Base(p.path), Bytes: p.file.n, CRC32C: p.file.crc, Rows: p.rows,
		}})
		return nil
	}
	if err := placeNoReplace(p.path, p.final); err != nil {
		return fmt.Errorf("%s: publish %s: %w", s.name, p.final, err)
	}
	if err := syncDir(filepath.Dir(p.final)); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	if err := os.Remove(p.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// rollAll rolls every open part, in partition order.
func (s *ColumnarSink) rollAll() error {
	keys := make([]string, 0, len(s.parts))
	for k := range s.parts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := s.roll(s.parts[k]); err != nil {
			return err
		}
	}
	return nil
}

func (s *ColumnarSink) rollAged() error {
	if s.opts.MaxFileAge <= 0 || len(s.parts) == 0 {
		return nil
	}
	now := s.now()
	var old []*part
	for _, p := range s.parts {
		if now.Sub(p.opened) >= s.opts.MaxFileAge {
			old = append(old, p)
		}
	}
	slices.SortFunc(old, func(a, b *part) int { return strings.Compare(a.key, b.key) })
	for _, p := range old {
		if err := s.roll(p); err != nil {
			return err
		}
	}
	return nil
}

// boundMemory writes out the largest buffers until the rows held in memory
// fit max_buffer_bytes.
func (s *ColumnarSink) boundMemory() error {
	var total int64
	for _, p := range s.parts {
		total += p.enc.buffered()
	}
	for total > s.opts.MaxBufferBytes {
		var big *part
		var most int64
		for _, p := range s.parts {
			if b := p.enc.buffered(); big == nil || b > most {
				big, most = p, b
			}
		}
		if big == nil || most == 0 {
			return nil
		}
		if err := big.enc.flush(); err != nil {
			return s.fail(fmt.Errorf("%s: write %s: %w", s.name, big.path, err))
		}
		total -= most - big.enc.buffered()
	}
	return nil
}

// BufferedBytes returns the memory held by rows not yet written to files,
// across all open parts.
func (s *ColumnarSink) BufferedBytes() int64 {
	var total int64
	for _, p := range s.parts {
		total += p.enc.buffered()
	}
	return total
}

// OpenParts returns the number of parts open now.
func (s *ColumnarSink) OpenParts() int { return len(s.parts) }

// PreCommit implements pipeline.Committer: it closes and fsyncs every open
// part and returns a token naming every staged file not yet committed with
// its final name. Checkpoint ids must not decrease. Outside exactly_once it
// flushes and returns a nil token.
func (s *ColumnarSink) PreCommit(ctx context.Context, checkpoint uint64) ([]byte, error) {
	if !s.exactlyOnce {
		return nil, s.Flush(ctx)
	}
	if s.failed != nil {
		return nil, s.failed
	}
	if checkpoint < s.lastCkpt {
		return nil, fmt.Errorf("%s: pre-commit of checkpoint %d after checkpoint %d: checkpoint ids must not decrease", s.name, checkpoint, s.lastCkpt)
	}
	if s.remote != nil {
		return s.preCommitToRemote(ctx, checkpoint)
	}
	if err := s.rollAll(); err != nil {
		return nil, s.fail(err)
	}
	if len(s.rolled) > 0 {
		if err := syncDir(s.staging); err != nil {
			return nil, s.fail(fmt.Errorf("%s: %w", s.name, err))
		}
	}
	if checkpoint != s.lastCkpt {
		clear(s.seqs)
		s.lastCkpt = checkpoint
	}
	for _, rp := range s.rolled {
		seq := s.seqs[rp.key]
		s.seqs[rp.key] = seq + 1
		rp.file.Final = path.Join(rp.key, fmt.Sprintf("%s-%010d-%04d-%s.%s", s.stem, checkpoint, seq, s.sinkID, s.format.ext()))
		s.pending = append(s.pending, rp.file)
	}
	s.rolled = s.rolled[:0]
	tok := columnarToken{Version: tokenVersion, Sink: s.b.Component, Checkpoint: checkpoint, Files: s.pending}
	if tok.Files == nil {
		tok.Files = []tokenFile{}
	}
	if st := s.schema.cur.Load(); st != nil && !s.declared {
		tok.Schema = st.schema.String()
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "list<string>" readable in checkpoints
	if err := enc.Encode(tok); err != nil {
		return nil, fmt.Errorf("%s: encode token: %w", s.name, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Commit implements pipeline.Committer: it makes the token's staged files
// visible under their final names. It is idempotent: a file already in
// place is left alone, so a second Commit of a token, here or after a
// restart, changes nothing. It refuses to replace a final file that is not
// the one it staged.
func (s *ColumnarSink) Commit(ctx context.Context, token []byte) error {
	if len(token) == 0 {
		return nil
	}
	if !s.exactlyOnce {
		return nil
	}
	tok, err := decodeToken(token)
	if err != nil {
		return fmt.Errorf("%s: commit: %w", s.name, err)
	}
	if tok.Sink != s.b.Component {
		return fmt.Errorf("%s: commit: the token belongs to sink %q, not %q", s.name, tok.Sink, s.b.Component)
	}
	if len(tok.Tasks) > 0 {
		if s.tasks == nil {
			return fmt.Errorf("%s: commit checkpoint %d: the token holds tasks, and this sink does not keep them", s.name, tok.Checkpoint)
		}
		if err := s.commitTasks(tok); err != nil {
			return fmt.Errorf("%s: commit checkpoint %d: %w", s.name, tok.Checkpoint, err)
		}
	}
	if err := s.commit(ctx, tok); err != nil {
		return fmt.Errorf("%s: commit checkpoint %d: %w", s.name, tok.Checkpoint, err)
	}
	s.committedCkpt = max(s.committedCkpt, tok.Checkpoint)
	done := make(map[string]bool, len(tok.Files))
	for _, f := range tok.Files {
		done[f.Staged] = true
	}
	s.pending = slices.DeleteFunc(s.pending, func(f tokenFile) bool { return done[f.Staged] })
	return nil
}

func (s *ColumnarSink) commit(ctx context.Context, tok *columnarToken) error {
	if s.remote != nil {
		if err := s.publishRemote(ctx, tok.Files); err != nil {
			return err
		}
		return s.dropMerged(tok.Checkpoint)
	}
	return s.publish(ctx, s.staging, tok.Files)
}

// publish puts staged files (in staging) under their final names; it is
// idempotent (see commitFile).
func (s *ColumnarSink) publish(ctx context.Context, staging string, files []tokenFile) error {
	dirs := map[string]bool{}
	var remove []string
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		staged := filepath.Join(staging, f.Staged)
		final := filepath.Join(s.outDir, filepath.FromSlash(f.Final))
		rm, err := commitFile(staged, final, f)
		if err != nil {
			return err
		}
		dirs[filepath.Dir(final)] = true
		if rm {
			remove = append(remove, staged)
		}
	}
	// The final names must be durable before the staged ones go: a power
	// loss then leaves at least one of the two.
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	for _, r := range remove {
		if err := os.Remove(r); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if len(files) > 0 {
		return syncDir(staging)
	}
	return nil
}

// Recover implements pipeline.Committer. It runs before the first Check and
// Write: it commits token (the last complete checkpoint's; nil on a fresh
// start), restores the schema when it was inferred, and deletes every other
// staged file — parts written after that checkpoint, whose records the
// sources will replay.
func (s *ColumnarSink) Recover(ctx context.Context, token []byte) error {
	if s.remote != nil {
		return s.recoverRemote(ctx, token)
	}
	if !s.exactlyOnce {
		return nil
	}
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
		if len(tok.Tasks) > 0 {
			err := errors.New("the token holds tasks, and this sink does not keep them")
			if s.tasks != nil {
				err = s.commitTasks(tok)
			}
			switch {
			case errors.Is(err, pipeline.ErrFenced):
				// Tasks that moved while this process was down: their new
				// owners resumed from the truth before this epoch.
				s.logger.Warn(s.name+": the last checkpoint's entries of tasks now owned by a later generation are discarded", "err", err)
			case err != nil:
				return fmt.Errorf("%s: recover checkpoint %d: %w", s.name, tok.Checkpoint, err)
			}
		}
		if err := s.commit(ctx, tok); err != nil {
			return fmt.Errorf("%s: recover checkpoint %d: %w", s.name, tok.Checkpoint, err)
		}
		s.lastCkpt = tok.Checkpoint
	}
	entries, err := os.ReadDir(s.staging)
	if err != nil {
		return fmt.Errorf("%s: recover: %w", s.name, err)
	}
	live := map[string]bool{}
	for _, p := range s.parts {
		live[filepath.Base(p.path)] = true
	}
	removed := 0
	for _, e := range entries {
		if e.IsDir() || live[e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(s.staging, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: recover: discard staged part: %w", s.name, err)
		}
		removed++
	}
	s.pending, s.rolled = s.pending[:0], s.rolled[:0]
	if removed > 0 {
		s.logger.Info(s.name+": discarded staged parts written after the last complete checkpoint", "files", removed)
		return syncDir(s.staging)
	}
	return nil
}

// restoreSchema takes an inferred schema back from a token.
func (s *ColumnarSink) restoreSchema(tok *columnarToken) error {
	if tok.Schema == "" || s.declared {
		return nil
	}
	t, err := ParseColumnarType(tok.Schema)
	if err != nil || t.Kind != KindStruct {
		return fmt.Errorf("%s: recover: schema in token: %v", s.name, err)
	}
	s.schema.cur.Store(newSchemaState(&ColumnarSchema{Fields: t.Fields, Inferred: true}))
	return nil
}

// Flush implements pipeline.Flusher: it rolls every open part, so that
// everything written so far is in complete, fsynced files (published under
// final names outside exactly_once; staged for the next PreCommit under
// it).
func (s *ColumnarSink) Flush(ctx context.Context) error {
	if s.failed != nil {
		return s.failed
	}
	if err := s.rollAll(); err != nil {
		return s.fail(err)
	}
	return nil
}

// Close implements pipeline.Sink. Under exactly_once it discards the parts
// written since the last PreCommit (their records are replayed after a
// restart) and keeps pre-committed ones for Commit or Recover; otherwise it
// publishes every open part.
func (s *ColumnarSink) Close(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.remote != nil {
		return s.closeRemote(ctx)
	}
	if !s.exactlyOnce && s.failed == nil {
		return s.rollAll()
	}
	for _, p := range s.parts {
		p.file.abandon()
		os.Remove(p.path)
	}
	clear(s.parts)
	if s.exactlyOnce {
		for _, rp := range s.rolled {
			os.Remove(filepath.Join(s.staging, rp.file.Staged))
		}
		s.rolled = nil
	}
	return nil
}

// createPart creates p's file at p.path (flag: os.O_WRONLY, or os.O_RDWR
// for a part read back before upload) and starts its encoder.
func (s *ColumnarSink) createPart(p *part, schema *ColumnarSchema, flag int) error {
	f, err := os.OpenFile(p.path, os.O_CREATE|os.O_EXCL|flag, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open part: %w", s.name, err)
	}
	p.file = newPartFile(f)
	if p.enc, err = s.format.newEncoder(p.file, schema); err != nil {
		p.file.abandon()
		os.Remove(p.path)
		return fmt.Errorf("%s: start part: %w", s.name, err)
	}
	return nil
}
