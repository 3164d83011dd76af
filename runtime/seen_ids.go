package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"sync"
	"time"

	"github.com/weirhq/weir/internal/durable"
	"github.com/weirhq/weir/pipeline"
)

// The seen-id set of a WAL-fed source: the message ids (Origin.ID) of the
// records stored in its ingest WAL, so that a broker's redelivery of one
// of them (weir stored it, then stopped before acknowledging it) is
// dropped. Its horizon is the source's dedupe_window: an id is forgotten
// once Count newer ids came after it, or once it was read longer than Age
// ago.
//
// The set is rebuilt at start from two places: the seen-id file, then
// the ingest WAL. The WAL alone does not do: its segments below the last
// checkpoint are deleted (TruncateBefore), and with them the ids they
// held. So before a truncation that deletes a segment, the coordinator
// writes the ids of every record below the checkpoint to the seen-id
// file, atomically (durable.WriteFile); only then are the segments
// removed. A crash between the two leaves ids in both, which is harmless.
// The file is written once per deleted segment (64 MiB of WAL by default),
// not per checkpoint.
//
//	seen-ids  version byte (1), uvarint count, then per id: uvarint length,
//	          id bytes, varint read time (unix ns); then CRC-32C (Castagnoli,
//	          little endian) of everything before it
const seenIDsVersion = 1

// seenIDsFile is the file name of the seen-id file in a source's
// component directory.
const seenIDsFile = "seen-ids"

// seenID is one remembered id: when it was read, and the WAL entry that
// holds it (pendingEntry until its Append returned, fromFile when it came
// from the seen-id file).
type seenID struct {
	id    string
	at    int64 // unix ns
	entry uint64
}

const (
	pendingEntry = math.MaxUint64
	fromFile     = 0
)

// idSet is a seen-id set bounded by a pipeline.DedupeWindow, oldest
// first. The reader goroutine adds and checks ids; the coordinator takes
// snapshots for the seen-id file; a mutex guards both.
type idSet struct {
	mu    sync.Mutex
	win   pipeline.DedupeWindow
	set   map[string]int64 // id → read time
	queue []seenID         // queue[head:] in the order added
	head  int
}

func newIDSet(w pipeline.DedupeWindow) *idSet {
	if w.Count <= 0 {
		w.Count = pipeline.DefaultDedupeCount
	}
	return &idSet{win: w, set: make(map[string]int64, min(w.Count, 1024))}
}

// cutoff returns the read time before which ids are forgotten at now
// (math.MinInt64 without an age limit).
func (s *idSet) cutoff(now time.Time) int64 {
	if s.win.Age <= 0 {
		return math.MinInt64
	}
	return now.Add(-s.win.Age).UnixNano()
}

// filter drops from recs the records whose id is remembered, remembers
// the ids of the others as read at now (pending until markStored), and
// returns the records kept and how many ids it added.
func (s *idSet) filter(recs []*pipeline.Record, now time.Time) (kept []*pipeline.Record, added, dropped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cut, at := s.cutoff(now), now.UnixNano()
	out := recs[:0]
	for _, r := range recs {
		if id := r.Origin.ID; id != "" {
			if t, ok := s.set[id]; ok && t >= cut {
				dropped++
				continue
			}
			s.addLocked(id, at, pendingEntry, cut)
			added++
		}
		out = append(out, r)
	}
	clear(recs[len(out):])
	return out, added, dropped
}

// markStored records that the last n ids added are in WAL entry e.
func (s *idSet) markStored(n int, e uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.queue) - 1; i >= s.head && n > 0; i, n = i-1, n-1 {
		s.queue[i].entry = e
	}
}

// add remembers id, read at at (unix ns) and stored in entry e, unless it
// is remembered already or beyond the age horizon at now.
func (s *idSet) add(id string, at int64, e uint64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cut := s.cutoff(now)
	if at < cut {
		return
	}
	if _, ok := s.set[id]; ok {
		return
	}
	s.addLocked(id, at, e, cut)
}

func (s *idSet) addLocked(id string, at int64, e uint64, cut int64) {
	s.set[id] = at
	s.queue = append(s.queue, seenID{id: id, at: at, entry: e})
	for n := len(s.queue) - s.head; n > s.win.Count || (n > 0 && s.queue[s.head].at < cut); n-- {
		old := s.queue[s.head]
		if s.set[old.id] == old.at {
			delete(s.set, old.id)
		}
		s.queue[s.head] = seenID{}
		s.head++
	}
	if s.head > 1024 && s.head > len(s.queue)/2 {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
}

func (s *idSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.set)
}

// below returns the remembered ids stored in WAL entries before e (and
// those from the seen-id file), oldest first.
func (s *idSet) below(e uint64) []seenID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]seenID, 0, len(s.queue)-s.head)
	for _, x := range s.queue[s.head:] {
		if x.entry < e || x.entry == fromFile {
			out = append(out, x)
		}
	}
	return out
}

// saveSeenIDs writes ids to the seen-id file at path, atomically.
func saveSeenIDs(path string, ids []seenID) error {
	n := 1 + binary.MaxVarintLen64 + 4
	for _, x := range ids {
		n += len(x.id) + 2*binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	b = append(b, seenIDsVersion)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, x := range ids {
		b = appendUvarintString(b, x.id)
		b = binary.AppendVarint(b, x.at)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32c))
	if err := durable.WriteFile(path, b); err != nil {
		return fmt.Errorf("write seen message ids: %w", err)
	}
	return nil
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// loadSeenIDs adds the ids of the seen-id file at path to s, as read at
// their times; a missing file adds nothing. A damaged file is an error,
// never skipped: the ids it held would let redeliveries through.
func loadSeenIDs(path string, s *idSet, now time.Time) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read seen message ids: %w", err)
	}
	bad := fmt.Errorf("seen message ids %s: the file is damaged (remove it to start without them, and redeliveries of messages stored before the last WAL truncation may be processed twice)", path)
	if len(b) < 5 || b[0] != seenIDsVersion {
		return bad
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, crc32c) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return bad
	}
	d := walDecoder{b: body[1:]}
	count := d.uvarint()
	if d.err != nil || count > uint64(len(d.b)) {
		return bad
	}
	if len(s.set) == 0 && count > 0 {
		n := min(int(count), s.win.Count)
		s.set, s.queue = make(map[string]int64, n), make([]seenID, 0, n)
	}
	for range count {
		id := d.bytes()
		at := d.varint()
		if d.err != nil {
			return bad
		}
		s.add(string(id), at, fromFile, now)
	}
	return nil
}
