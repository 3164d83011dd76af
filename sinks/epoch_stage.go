package sinks

// Epoch staging for the write-ahead sinks (postgres and nats): under
// exactly_once they stage the records of an epoch durably at PreCommit and
// only make them visible at Commit, reading the staged file back.

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weirhq/weir/internal/durable"
)

// Staged file format (little endian):
//
//	magic   "weirstg1"
//	record* uvarint field count (>= 1), then per field: uvarint length, bytes
//	end     0x00 (a field count of zero)
//	count   uint64, the number of records
//	crc     uint32, CRC-32C of every byte before it
//
// A sealed file is complete by construction (written as <name>.tmp, fsynced,
// renamed); the checksum catches later damage.
const stageMagic = "weirstg1"

var stageCRC = crc32.MakeTable(crc32.Castagnoli)

// stageToken identifies one sealed epoch; it is the commit token (JSON)
// the sink hands to the runtime.
type stageToken struct {
	V          int    `json:"v"`
	Checkpoint uint64 `json:"checkpoint"`
	// Nonce is random per PreCommit: a checkpoint id that were ever reused
	// would still name a different epoch.
	Nonce   string `json:"nonce"`
	Records int64  `json:"records"`
	File    string `json:"file,omitempty"` // base name in the stage dir; empty when Records is 0
	// Columns names the values of each staged row (postgres), so that a
	// restarted process commits them into the right columns.
	Columns []string `json:"columns,omitempty"`
	// Tasks are the task truths that commit with the epoch (postgres with
	// tasks; see postgres_tasks.go).
	Tasks []pgTaskCommit `json:"tasks,omitempty"`
}

// ID is a stable name for the epoch: "<checkpoint>-<nonce>".
func (t stageToken) ID() string { return fmt.Sprintf("%d-%s", t.Checkpoint, t.Nonce) }

func parseStageToken(b []byte) (stageToken, error) {
	var t stageToken
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fmt.Errorf("bad commit token %q: %w", b, err)
	}
	if t.V != 1 || t.Nonce == "" || strings.ContainsAny(t.File, `/\`) {
		return t, fmt.Errorf("bad commit token %q", b)
	}
	return t, nil
}

// epochStage stages the current epoch's records in dir. It is used from
// the sink's goroutine only.
type epochStage struct {
	dir  string
	kind string // file name prefix: "nats", "postgres"

	f       *os.File // open temp file of the current epoch; nil when nothing staged yet
	w       *bufio.Writer
	crc     hash.Hash32
	n       int64 // records appended to f
	scratch []byte
}

func newEpochStage(dir, kind string) (*epochStage, error) {
	if dir == "" {
		return nil, errors.New("exactly_once staging needs a component directory (Build.Dir)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create staging directory: %w", err)
	}
	return &epochStage{dir: dir, kind: kind}, nil
}

func (s *epochStage) tmpPath() string { return filepath.Join(s.dir, s.kind+"-current.tmp") }

// Append stages one record made of fields (at least one). The bytes are
// copied.
func (s *epochStage) Append(fields ...[]byte) error {
	if s.f == nil {
		f, err := os.OpenFile(s.tmpPath(), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("open staging file: %w", err)
		}
		s.f, s.crc, s.n = f, crc32.New(stageCRC), 0
		s.w = bufio.NewWriterSize(io.MultiWriter(f, s.crc), 256<<10)
		if _, err := s.w.WriteString(stageMagic); err != nil {
			return fmt.Errorf("write staging file: %w", err)
		}
	}
	b := binary.AppendUvarint(s.scratch[:0], uint64(len(fields)))
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	s.scratch = b
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("write staging file: %w", err)
	}
	s.n++
	return nil
}

// Seal makes the staged records durable under a name derived from the
// checkpoint and returns their token. With nothing staged it returns a
// token of zero records and writes nothing.
func (s *epochStage) Seal(checkpoint uint64) (stageToken, error) {
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	t := stageToken{V: 1, Checkpoint: checkpoint, Nonce: hex.EncodeToString(nonce[:])}
	if s.f == nil {
		return t, nil
	}
	f := s.f
	s.f = nil
	fail := func(err error) (stageToken, error) {
		f.Close()
		os.Remove(s.tmpPath())
		return stageToken{}, fmt.Errorf("seal staging file: %w", err)
	}
	var trailer [9]byte // 0x00 end mark + count
	binary.LittleEndian.PutUint64(trailer[1:], uint64(s.n))
	if _, err := s.w.Write(trailer[:]); err != nil {
		return fail(err)
	}
	if err := s.w.Flush(); err != nil {
		return fail(err)
	}
	if _, err := f.Write(binary.LittleEndian.AppendUint32(nil, s.crc.Sum32())); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	t.Records = s.n
	t.File = fmt.Sprintf("%s-%020d-%s.stage", s.kind, checkpoint, t.Nonce)
	if err := durable.Rename(s.tmpPath(), filepath.Join(s.dir, t.File)); err != nil {
		return fail(err)
	}
	return t, nil
}

// Each verifies the sealed file of t, then calls fn for each record in
// order with its index and fields. fields alias a buffer that is reused:
// they are valid only during the call. A missing or damaged file is an
// error and fn is not called.
func (s *epochStage) Each(t stageToken, fn func(i int64, fields [][]byte) error) error {
	r, err := s.Open(t)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		fields, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(r.Index(), fields); err != nil {
			return err
		}
	}
}

// Open verifies the sealed file of t and returns a reader positioned at
// its first record.
func (s *epochStage) Open(t stageToken) (*stageReader, error) {
	r := &stageReader{t: t}
	if t.Records == 0 {
		return r, nil
	}
	r.path = filepath.Join(s.dir, t.File)
	if err := s.verify(r.path, t.Records); err != nil {
		return nil, err
	}
	if err := r.Rewind(); err != nil {
		return nil, err
	}
	return r, nil
}

// stageReader reads the records of one verified sealed file, in order.
type stageReader struct {
	t      stageToken
	path   string
	f      *os.File
	r      *bufio.Reader
	i      int64 // index of the next record
	fields [][]byte
	buf    []byte
	ends   []int
}

// Rewind goes back to the first record.
func (r *stageReader) Rewind() error {
	r.i = 0
	if r.t.Records == 0 {
		return nil
	}
	if r.f == nil {
		f, err := os.Open(r.path)
		if err != nil {
			return fmt.Errorf("open staged epoch: %w", err)
		}
		r.f = f
		r.r = bufio.NewReaderSize(f, 256<<10)
	}
	if _, err := r.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read staged epoch %s: %w", r.t.File, err)
	}
	r.r.Reset(r.f)
	if _, err := r.r.Discard(len(stageMagic)); err != nil {
		return fmt.Errorf("read staged epoch %s: %w", r.t.File, err)
	}
	return nil
}

// Index returns the index of the record Next returned last.
func (r *stageReader) Index() int64 { return r.i - 1 }

// Next returns the fields of the next record, valid until the next call,
// or io.EOF after the last one.
func (r *stageReader) Next() ([][]byte, error) {
	if r.i >= r.t.Records {
		return nil, io.EOF
	}
	nf, err := binary.ReadUvarint(r.r)
	if err != nil {
		return nil, fmt.Errorf("read staged epoch %s record %d: %w", r.t.File, r.i, err)
	}
	r.fields, r.buf, r.ends = r.fields[:0], r.buf[:0], r.ends[:0]
	for range nf {
		l, err := binary.ReadUvarint(r.r)
		if err != nil {
			return nil, fmt.Errorf("read staged epoch %s record %d: %w", r.t.File, r.i, err)
		}
		start := len(r.buf)
		r.buf = slices.Grow(r.buf, int(l))[:start+int(l)]
		if _, err := io.ReadFull(r.r, r.buf[start:]); err != nil {
			return nil, fmt.Errorf("read staged epoch %s record %d: %w", r.t.File, r.i, err)
		}
		r.ends = append(r.ends, len(r.buf))
	}
	start := 0
	for _, e := range r.ends {
		r.fields = append(r.fields, r.buf[start:e:e])
		start = e
	}
	r.i++
	return r.fields, nil
}

// Close releases the file.
func (r *stageReader) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// verify checks a sealed file's structure, record count and checksum.
func (s *epochStage) verify(path string, records int64) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("staged epoch %s is missing: %w", filepath.Base(path), err)
		}
		return fmt.Errorf("open staged epoch: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	bad := func(why string) error {
		return fmt.Errorf("staged epoch %s is damaged: %s", filepath.Base(path), why)
	}
	if st.Size() < int64(len(stageMagic))+13 {
		return bad("too short")
	}
	crc := crc32.New(stageCRC)
	r := bufio.NewReaderSize(io.TeeReader(io.LimitReader(f, st.Size()-4), crc), 256<<10)
	magic := make([]byte, len(stageMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != stageMagic {
		return bad("no magic")
	}
	var n int64
	for {
		nf, err := binary.ReadUvarint(r)
		if err != nil {
			return bad(err.Error())
		}
		if nf == 0 {
			break
		}
		for range nf {
			l, err := binary.ReadUvarint(r)
			if err != nil {
				return bad(err.Error())
			}
			if _, err := r.Discard(int(min(l, uint64(st.Size())))); err != nil {
				return bad(err.Error())
			}
		}
		n++
	}
	var tail [8]byte
	if _, err := io.ReadFull(r, tail[:]); err != nil {
		return bad(err.Error())
	}
	if got := int64(binary.LittleEndian.Uint64(tail[:])); got != n || n != records {
		return bad(fmt.Sprintf("%d records, trailer says %d, token says %d", n, got, records))
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return bad("bytes after the trailer")
	}
	var sum [4]byte
	if _, err := f.ReadAt(sum[:], st.Size()-4); err != nil {
		return bad(err.Error())
	}
	if binary.LittleEndian.Uint32(sum[:]) != crc.Sum32() {
		return bad("checksum mismatch")
	}
	return nil
}

// Remove deletes the sealed file of a committed epoch.
func (s *epochStage) Remove(t stageToken) error {
	if t.File == "" {
		return nil
	}
	if err := os.Remove(filepath.Join(s.dir, t.File)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Reset drops the open temp file (records appended but not sealed) and
// every sealed file of this kind, for Recover: whatever was staged after
// the last complete checkpoint is discarded.
func (s *epochStage) Reset() error {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("list staging directory: %w", err)
	}
	removed := false
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, s.kind+"-") && (strings.HasSuffix(name, ".stage") || strings.HasSuffix(name, ".tmp")) {
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
				return fmt.Errorf("discard staged epoch: %w", err)
			}
			removed = true
		}
	}
	if removed {
		return durable.SyncDir(s.dir)
	}
	return nil
}

// Staged lists the sealed files present, for tests and diagnostics.
func (s *epochStage) Staged() []string {
	ents, _ := os.ReadDir(s.dir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), s.kind+"-") && strings.HasSuffix(e.Name(), ".stage") {
			out = append(out, e.Name())
		}
	}
	return out
}

// markCommitted records durably that the epoch t has been made visible,
// in <dir>/<kind>-committed.json; committedID reads it back.
func (s *epochStage) markCommitted(t stageToken) error {
	return durable.WriteFile(filepath.Join(s.dir, s.kind+"-committed.json"), []byte(fmt.Sprintf("{%q:%q}\n", "epoch", t.ID())))
}

func (s *epochStage) committedID() (string, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, s.kind+"-committed.json"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var v struct{ Epoch string }
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("read %s-committed.json: %w", s.kind, err)
	}
	return v.Epoch, nil
}
