package wal

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// fixedPayloads returns n payloads of size bytes each, so that frame
// offsets are easy to compute.
func fixedPayloads(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = payload(uint64(i), size)
	}
	return out
}

// segmentFiles returns the contents of every segment of dir, by name.
func segmentFiles(t testing.TB, dir string) map[uint64][]byte {
	t.Helper()
	m := map[uint64][]byte{}
	for _, s := range segmentsOf(t, dir) {
		m[s] = readFile(t, segmentPath(dir, s))
	}
	return m
}

// checkUnchanged fails if any segment of dir differs from before.
func checkUnchanged(t testing.TB, dir string, before map[uint64][]byte) {
	t.Helper()
	after := segmentFiles(t, dir)
	if len(after) != len(before) {
		t.Fatalf("%d segments now, %d before", len(after), len(before))
	}
	for s, b := range before {
		if !bytes.Equal(after[s], b) {
			t.Fatalf("segment %d changed: %d bytes now, %d before", s, len(after[s]), len(b))
		}
	}
}

func TestVerifySoundLog(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 256, Sync: SyncNone})
	appendEach(t, l, fixedPayloads(40, 30))
	if err := l.TruncateBefore(12); err != nil {
		t.Fatal(err)
	}
	first, next := l.FirstIndex(), l.NextIndex()
	mustClose(t, l)

	r, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	segs := segmentsOf(t, dir)
	var size int64
	for _, s := range segs {
		fi, err := os.Stat(segmentPath(dir, s))
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	if first == 0 || len(r.Segments) != len(segs) || len(segs) < 3 {
		t.Fatalf("log starts at %d with %d segments; Verify describes %d; want several, after truncation", first, len(segs), len(r.Segments))
	}
	if r.FirstIndex != first || r.NextIndex != next || r.Records != next-first || r.Bytes != size || r.Torn != nil {
		t.Errorf("Verify: first %d next %d records %d bytes %d torn %v; want %d %d %d %d nil",
			r.FirstIndex, r.NextIndex, r.Records, r.Bytes, r.Torn, first, next, next-first, size)
	}
}

// TestVerifyFlippedByte flips one payload byte of a record in the middle
// of a segment, both in a segment that is not the last and in the last
// one with records after it: neither is a torn tail.
func TestVerifyFlippedByte(t *testing.T) {
	const size = 30
	want := fixedPayloads(40, size)
	for _, which := range []string{"first segment", "last segment"} {
		t.Run(which, func(t *testing.T) {
			dir := buildLog(t, 256, want)
			segs := segmentsOf(t, dir)
			seg := segs[0]
			if which == "last segment" {
				seg = segs[len(segs)-1]
			}
			n := int(segs[1] - segs[0]) // records per full segment
			if which == "last segment" {
				n = len(want) - int(seg)
			}
			if n < 3 {
				t.Fatalf("segment %d holds %d records; want at least 3", seg, n)
			}
			bad := seg + uint64(n/2) // a record with others after it
			off := frameEnds(want[seg : bad+1])[bad-seg] - int64(frameHeader+size)
			path := segmentPath(dir, seg)
			b := readFile(t, path)
			b[off+frameHeader+size/2] ^= 0x20
			writeFile(t, path, b)
			before := segmentFiles(t, dir)

			r, err := Verify(dir)
			ce := asCorruption(t, err)
			if ce.Segment != seg || ce.Offset != off || !errors.Is(err, ErrChecksum) {
				t.Errorf("got %v (segment %d offset %d), want a checksum mismatch in segment %d at offset %d", err, ce.Segment, ce.Offset, seg, off)
			}
			if r.NextIndex != bad || r.Torn != nil {
				t.Errorf("NextIndex %d Torn %v, want %d and nil", r.NextIndex, r.Torn, bad)
			}
			if got := r.Segments[len(r.Segments)-1]; got.FirstIndex != seg || got.Records != bad-seg {
				t.Errorf("last segment described: %+v; want segment %d with %d records", got, seg, bad-seg)
			}
			checkUnchanged(t, dir, before)
		})
	}
}

// TestVerifyTornTail cuts the last segment in the middle of its last
// record: a torn tail, reported in the Report, not as an error.
func TestVerifyTornTail(t *testing.T) {
	want := fixedPayloads(40, 30)
	dir := buildLog(t, 256, want)
	last, path := lastSegment(t, dir)
	ends := frameEnds(want[last:])
	cut := ends[len(ends)-1] - 11
	b := readFile(t, path)
	writeFile(t, path, b[:cut])
	before := segmentFiles(t, dir)

	r, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	wantTorn := TornTail{Segment: last, Path: path, Offset: ends[len(ends)-2], Bytes: cut - ends[len(ends)-2]}
	if r.Torn == nil || r.Torn.Reason == nil || r.Torn.Header {
		t.Fatalf("Torn = %+v, want %+v with a reason", r.Torn, wantTorn)
	}
	if got := *r.Torn; got.Segment != wantTorn.Segment || got.Path != wantTorn.Path || got.Offset != wantTorn.Offset || got.Bytes != wantTorn.Bytes {
		t.Errorf("Torn = %+v, want %+v", got, wantTorn)
	}
	if r.NextIndex != uint64(len(want)-1) || r.Segments[len(r.Segments)-1].TornBytes != wantTorn.Bytes {
		t.Errorf("NextIndex %d, last segment %+v; want %d and %d torn bytes", r.NextIndex, r.Segments[len(r.Segments)-1], len(want)-1, wantTorn.Bytes)
	}
	checkUnchanged(t, dir, before)
}

// TestVerifyTornHeader leaves a new last segment with half its header.
func TestVerifyTornHeader(t *testing.T) {
	want := fixedPayloads(10, 30)
	dir := buildLog(t, 1<<20, want)
	h := encodeHeader(uint64(len(want)))
	path := segmentPath(dir, uint64(len(want)))
	writeFile(t, path, h[:headerSize/2])

	r, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if r.Torn == nil || !r.Torn.Header || r.Torn.Offset != 0 || r.Torn.Bytes != headerSize/2 || r.Torn.Segment != uint64(len(want)) {
		t.Fatalf("Torn = %+v, want the header of segment %d torn after %d bytes", r.Torn, len(want), headerSize/2)
	}
	if r.NextIndex != uint64(len(want)) {
		t.Errorf("NextIndex %d, want %d", r.NextIndex, len(want))
	}
}

// TestVerifyMissingSegment removes a segment between two others.
func TestVerifyMissingSegment(t *testing.T) {
	dir := buildLog(t, 256, fixedPayloads(40, 30))
	segs := segmentsOf(t, dir)
	if err := os.Remove(segmentPath(dir, segs[1])); err != nil {
		t.Fatal(err)
	}
	r, err := Verify(dir)
	if ce := asCorruption(t, err); ce.Segment != segs[2] || ce.Offset != 0 {
		t.Errorf("got %v, want missing records reported at segment %d offset 0", err, segs[2])
	}
	if r.NextIndex != segs[1] {
		t.Errorf("NextIndex %d, want %d: the first missing record", r.NextIndex, segs[1])
	}
}

func TestVerifyNotALog(t *testing.T) {
	empty := t.TempDir()
	other := t.TempDir()
	writeFile(t, filepath.Join(other, "notes.wal"), []byte("not a segment"))
	writeFile(t, filepath.Join(other, "LOCK"), nil)
	for _, dir := range []string{empty, other} {
		if _, err := Verify(dir); !errors.Is(err, ErrNotLog) {
			t.Errorf("Verify(%s): %v, want ErrNotLog", dir, err)
		}
		if segs, err := Stat(dir); err != nil || len(segs) != 0 {
			t.Errorf("Stat(%s): %v, %v; want no segments and no error", dir, segs, err)
		}
	}
	if _, err := Verify(filepath.Join(empty, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Verify of a missing directory: %v, want fs.ErrNotExist", err)
	}
}

func TestFindLogs(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string) string {
		dir := filepath.Join(root, rel)
		l := mustOpen(t, dir, Options{Sync: SyncNone})
		if _, err := l.Append(context.Background(), []byte("x")); err != nil {
			t.Fatal(err)
		}
		mustClose(t, l)
		return dir
	}
	a := mk(".weir/app/sources-0-stdin/wal")
	b := mk(".weir/app/sources-1-mqtt/wal")
	c := mk("top")
	mk("1/2/3/4/too-deep")
	if err := os.MkdirAll(filepath.Join(root, "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "other", "notes.wal"), nil)

	got, err := FindLogs(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{a, b, c}; !slices.Equal(got, want) {
		t.Errorf("FindLogs = %q, want %q", got, want)
	}
	if _, err := FindLogs(filepath.Join(root, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FindLogs of a missing root: %v, want fs.ErrNotExist", err)
	}
}
