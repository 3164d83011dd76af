package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// tornLog builds a log of 40 records whose last segment is cut in the
// middle of its last record, and returns it with what Verify reports.
func tornLog(t *testing.T) (dir string, want [][]byte, torn TornTail) {
	t.Helper()
	want = fixedPayloads(40, 30)
	dir = buildLog(t, 256, want)
	last, path := lastSegment(t, dir)
	ends := frameEnds(want[last:])
	writeFile(t, path, readFile(t, path)[:ends[len(ends)-1]-5])
	r, err := Verify(dir)
	if err != nil || r.Torn == nil {
		t.Fatalf("Verify of a torn log: %+v, %v; want a torn tail", r.Torn, err)
	}
	return dir, want, *r.Torn
}

func TestTruncateTornTail(t *testing.T) {
	dir, want, torn := tornLog(t)
	if err := TruncateTornTail(dir, torn); err != nil {
		t.Fatalf("TruncateTornTail: %v", err)
	}
	fi, err := os.Stat(torn.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != torn.Offset {
		t.Errorf("segment is %d bytes after the repair, want %d", fi.Size(), torn.Offset)
	}
	r, err := Verify(dir)
	if err != nil || r.Torn != nil || r.NextIndex != uint64(len(want)-1) {
		t.Fatalf("Verify after the repair: next %d, torn %+v, %v; want %d records and no torn tail", r.NextIndex, r.Torn, err, len(want)-1)
	}
	reopenAndCheck(t, dir, want[:len(want)-1])
}

func TestTruncateTornTailRecreatesTornHeader(t *testing.T) {
	want := fixedPayloads(10, 30)
	dir := buildLog(t, 1<<20, want)
	h := encodeHeader(uint64(len(want)))
	path := segmentPath(dir, uint64(len(want)))
	writeFile(t, path, append(h[:5:5], make([]byte, 100)...))
	r, err := Verify(dir)
	if err != nil || r.Torn == nil || !r.Torn.Header {
		t.Fatalf("Verify: %+v, %v; want a torn header", r.Torn, err)
	}
	if err := TruncateTornTail(dir, *r.Torn); err != nil {
		t.Fatalf("TruncateTornTail: %v", err)
	}
	if got := readFile(t, path); string(got) != string(h[:]) {
		t.Errorf("segment after the repair: %q, want just its header %q", got, h)
	}
	reopenAndCheck(t, dir, want)
}

// TestTruncateTornTailRefusesChangedLog verifies, then changes the torn
// tail before the repair: nothing may be cut on the strength of a stale
// report.
func TestTruncateTornTailRefusesChangedLog(t *testing.T) {
	dir, _, torn := tornLog(t)
	b := readFile(t, torn.Path)
	writeFile(t, torn.Path, b[:len(b)-1])
	if err := TruncateTornTail(dir, torn); err == nil {
		t.Fatal("TruncateTornTail after the log changed: no error")
	}
	if got := readFile(t, torn.Path); len(got) != len(b)-1 {
		t.Errorf("segment is %d bytes, want it untouched at %d", len(got), len(b)-1)
	}
}

// TestTruncateTornTailRefusesCorruption asks for a repair of a log damaged
// in the middle: TruncateTornTail must report the damage and cut nothing.
func TestTruncateTornTailRefusesCorruption(t *testing.T) {
	dir, _, torn := tornLog(t)
	first := segmentPath(dir, segmentsOf(t, dir)[0])
	b := readFile(t, first)
	b[headerSize+frameHeader+3] ^= 1
	writeFile(t, first, b)
	before := segmentFiles(t, dir)
	err := TruncateTornTail(dir, torn)
	if ce := asCorruption(t, err); ce.Offset != headerSize || !errors.Is(err, ErrChecksum) {
		t.Errorf("got %v, want the checksum mismatch at offset %d", err, headerSize)
	}
	checkUnchanged(t, dir, before)
}

// TestTruncateTornTailRefusesLockedLog holds the directory's lock, as an
// open Log in another process would.
func TestTruncateTornTailRefusesLockedLog(t *testing.T) {
	dir, _, torn := tornLog(t)
	lf, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := lockFile(lf); err != nil {
		t.Fatal(err)
	}
	if probe, err := os.Open(filepath.Join(dir, lockName)); err == nil {
		locked := lockFile(probe) != nil
		probe.Close()
		if !locked {
			t.Skip("no flock on this platform: the lock cannot be tested")
		}
	}
	before := segmentFiles(t, dir)
	if err := TruncateTornTail(dir, torn); err == nil {
		t.Fatal("TruncateTornTail while the lock is held: no error")
	}
	checkUnchanged(t, dir, before)
}
