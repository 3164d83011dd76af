package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// openNoSync opens dir like Open with SyncNone, but skipping every fsync:
// for tests of recovery logic that runs thousands of Opens.
func openNoSync(dir string) (*Log, error) {
	return open(dir, Options{Sync: SyncNone}, hooks{noSync: true})
}

// buildLog writes payloads with SegmentSize segSize into a new directory,
// closes it and returns the directory.
func buildLog(t testing.TB, segSize int64, payloads [][]byte) string {
	t.Helper()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: segSize, Sync: SyncNone})
	appendEach(t, l, payloads)
	mustClose(t, l)
	return dir
}

// lastSegment returns the name (first index) and path of dir's last segment.
func lastSegment(t testing.TB, dir string) (uint64, string) {
	t.Helper()
	segs := segmentsOf(t, dir)
	return segs[len(segs)-1], segmentPath(dir, segs[len(segs)-1])
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// reopenAndCheck opens dir, checks it holds exactly want, that an Append
// afterwards gets the next index and reads back, and closes it.
func reopenAndCheck(t testing.TB, dir string, want [][]byte) {
	t.Helper()
	l, err := openNoSync(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer mustClose(t, l)
	checkRecords(t, readFrom(t, l, l.FirstIndex()), want, l.FirstIndex())
	extra := []byte("appended after recovery")
	first, err := l.Append(context.Background(), extra)
	if err != nil {
		t.Fatalf("Append after recovery: %v", err)
	}
	if first != uint64(len(want)) {
		t.Fatalf("Append after recovery got index %d, want %d", first, len(want))
	}
	got := readFrom(t, l, first)
	if len(got) != 1 || !bytes.Equal(got[0].data, extra) {
		t.Fatalf("read back %v after recovery, want the appended record", got)
	}
}

// TestTornTailEveryOffset cuts the last segment at every byte offset, with
// and without zero fill up to the original size (as a file system may leave
// after a crash), and checks that exactly the records wholly before the cut
// are recovered.
func TestTornTailEveryOffset(t *testing.T) {
	const segSize = 200
	want := variedPayloads(4, 80, 24)
	dir := buildLog(t, segSize, want)
	last, path := lastSegment(t, dir)
	if last < 10 {
		t.Fatalf("last segment starts at %d; want several earlier segments", last)
	}
	orig := readFile(t, path)
	ends := frameEnds(want[last:])
	if ends[len(ends)-1] != int64(len(orig)) || len(ends) < 5 {
		t.Fatalf("last segment: %d bytes, %d records; frames end at %v", len(orig), len(ends), ends)
	}
	base := t.TempDir()
	for cut := 0; cut <= len(orig); cut++ {
		kept := int(last)
		for _, e := range ends {
			if e <= int64(cut) {
				kept++
			}
		}
		for _, zeroFill := range []bool{false, true} {
			// Zero fill at every offset of the header and the first frames,
			// then at every third offset, to keep the test quick.
			if zeroFill && (cut == len(orig) || (cut > 64 && cut%3 != 0)) {
				continue
			}
			c := linkSegments(t, base, dir, last)
			b := bytes.Clone(orig[:cut])
			if zeroFill {
				b = append(b, make([]byte, len(orig)-cut)...)
			}
			writeFile(t, segmentPath(c, last), b)
			// The read-only directory reader sees the same records.
			if r, err := OpenReader(c, 0); err != nil {
				t.Fatalf("cut at %d: OpenReader: %v", cut, err)
			} else {
				got, err := readAllLoose(r)
				r.Close()
				if err != nil {
					t.Fatalf("cut at %d (zero fill %v): OpenReader: %v", cut, zeroFill, err)
				}
				checkRecords(t, got, want[:kept], 0)
			}
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("cut at %d (zero fill %v): panic: %v", cut, zeroFill, p)
					}
				}()
				reopenAndCheck(t, c, want[:kept])
			}()
			if t.Failed() {
				t.Fatalf("cut at %d (zero fill %v) failed", cut, zeroFill)
			}
			os.RemoveAll(c)
		}
	}
}

// linkSegments makes a new directory under base holding hard links to the
// segments of src other than except, which the caller must write itself.
// Open only reads segments other than the last.
func linkSegments(t testing.TB, base, src string, except uint64) string {
	t.Helper()
	dst, err := os.MkdirTemp(base, "copy")
	if err != nil {
		t.Fatal(err)
	}
	for _, seg := range segmentsOf(t, src) {
		if seg != except {
			if err := os.Link(segmentPath(src, seg), segmentPath(dst, seg)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dst
}

// TestBitFlips flips random bits in copies of a log and checks that
// Open, OpenReader and Stat never panic or return a record that was not
// written: each either fails with a *CorruptionError or returns a prefix of
// the records.
func TestBitFlips(t *testing.T) {
	want := variedPayloads(5, 50, 40)
	dir := buildLog(t, 400, want)
	segs := segmentsOf(t, dir)
	rng := rand.New(rand.NewPCG(5, 5))
	var corruptions, shorter int
	for trial := range 300 {
		c := copyDir(t, dir)
		seg := segs[rng.IntN(len(segs))]
		path := segmentPath(c, seg)
		b := readFile(t, path)
		flips := 1 + rng.IntN(3)
		for range flips {
			b[rng.IntN(len(b))] ^= 1 << rng.IntN(8)
		}
		writeFile(t, path, b)

		check := func(what string, got []rec, err error) {
			t.Helper()
			if err != nil {
				var ce *CorruptionError
				if !errors.As(err, &ce) {
					t.Fatalf("trial %d (segment %d, %s): error %v is not a *CorruptionError", trial, seg, what, err)
				}
			}
			for _, r := range got {
				if r.index >= uint64(len(want)) || !bytes.Equal(r.data, want[r.index]) {
					t.Fatalf("trial %d (segment %d, %s): returned record %d = %q, which was not written", trial, seg, what, r.index, trunc(r.data))
				}
			}
		}
		// Read-only first: the directory reader and Stat.
		if _, err := Stat(c); err != nil {
			check("Stat", nil, err)
		}
		if r, err := OpenReader(c, 0); err == nil {
			got, err := readAllLoose(r)
			check("OpenReader", got, err)
			r.Close()
		}

		l, err := openNoSync(c)
		if err != nil {
			check("Open", nil, err)
			corruptions++
			os.RemoveAll(c)
			continue
		}
		r, err := l.NewReader(l.FirstIndex())
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAllLoose(r)
		r.Close()
		check("Open+Reader", got, err)
		if err != nil {
			t.Fatalf("trial %d: Open succeeded but reading failed: %v", trial, err)
		}
		if len(got) < len(want) {
			shorter++
			if got[len(got)-1].index != uint64(len(got))-1 {
				t.Fatalf("trial %d: records are not a prefix", trial)
			}
		}
		if _, err := l.Append(context.Background(), []byte("more")); err != nil {
			t.Fatalf("trial %d: Append after recovery: %v", trial, err)
		}
		mustClose(t, l)
		os.RemoveAll(c)
	}
	t.Logf("300 trials: %d CorruptionErrors, %d recovered with fewer records", corruptions, shorter)
	if corruptions < 100 {
		t.Errorf("only %d of 300 trials detected corruption", corruptions)
	}
}

// readAllLoose reads r to io.EOF or the first error, copying records.
func readAllLoose(r *Reader) ([]rec, error) {
	var out []rec
	for {
		i, data, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec{i, bytes.Clone(data)})
	}
}

// flipAt flips a bit of the file at off.
func flipAt(t testing.TB, path string, off int64) {
	t.Helper()
	b := readFile(t, path)
	b[off] ^= 0x10
	writeFile(t, path, b)
}

func TestCorruptionDetected(t *testing.T) {
	want := variedPayloads(6, 40, 30)
	const segSize = 300

	t.Run("bad frame followed by data in last segment", func(t *testing.T) {
		dir := buildLog(t, 1<<20, want)
		last, path := lastSegment(t, dir)
		ends := frameEnds(want[last:])
		// Damage the payload of the last segment's second record.
		off := ends[0]
		flipAt(t, path, off+frameHeader)
		before := readFile(t, path)
		_, err := Open(dir, Options{})
		ce := asCorruption(t, err)
		if ce.Segment != last || ce.Offset != off || !errors.Is(err, ErrChecksum) {
			t.Errorf("got %+v, want segment %d offset %d wrapping ErrChecksum", ce, last, off)
		}
		wantMsg := "wal: segment " + strconv.FormatUint(last, 10) + " offset " + strconv.FormatInt(off, 10) + ": record " + strconv.FormatUint(last+1, 10) + ": checksum mismatch"
		if err.Error() != wantMsg {
			t.Errorf("Error() = %q, want %q", err.Error(), wantMsg)
		}
		if after := readFile(t, path); !bytes.Equal(before, after) {
			t.Errorf("a failed Open modified the segment")
		}
		if _, err := Stat(dir); !errors.As(err, &ce) {
			t.Errorf("Stat: got %v, want *CorruptionError", err)
		}
		r, err := OpenReader(dir, last)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := readAllLoose(r); !errors.As(err, &ce) {
			t.Errorf("OpenReader: got %v, want *CorruptionError", err)
		}
	})

	t.Run("bad frame in earlier segment", func(t *testing.T) {
		dir := buildLog(t, segSize, want)
		segs := segmentsOf(t, dir)
		path := segmentPath(dir, segs[1])
		fi, _ := os.Stat(path)
		flipAt(t, path, fi.Size()-1) // the segment's last payload byte
		ce := asCorruption(t, openErr(dir))
		if ce.Segment != segs[1] {
			t.Errorf("got segment %d, want %d", ce.Segment, segs[1])
		}
	})

	t.Run("truncated earlier segment", func(t *testing.T) {
		dir := buildLog(t, segSize, want)
		segs := segmentsOf(t, dir)
		path := segmentPath(dir, segs[0])
		b := readFile(t, path)
		writeFile(t, path, b[:len(b)-1])
		if ce := asCorruption(t, openErr(dir)); ce.Segment != segs[0] {
			t.Errorf("got segment %d, want %d", ce.Segment, segs[0])
		}
	})

	t.Run("missing middle segment", func(t *testing.T) {
		dir := buildLog(t, segSize, want)
		segs := segmentsOf(t, dir)
		if err := os.Remove(segmentPath(dir, segs[2])); err != nil {
			t.Fatal(err)
		}
		ce := asCorruption(t, openErr(dir))
		if ce.Segment != segs[3] || !strings.Contains(ce.Error(), "missing") {
			t.Errorf("got %v, want a missing-records error on segment %d", ce, segs[3])
		}
		if _, err := Stat(dir); !errors.As(err, &ce) {
			t.Errorf("Stat: got %v, want *CorruptionError", err)
		}
		r, err := OpenReader(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := readAllLoose(r); !errors.As(err, &ce) {
			t.Errorf("OpenReader across the gap: got %v, want *CorruptionError", err)
		}
	})

	t.Run("bad segment header", func(t *testing.T) {
		for _, off := range []int64{0, 8, 12, 20} {
			dir := buildLog(t, segSize, want)
			last, path := lastSegment(t, dir)
			flipAt(t, path, off)
			if ce := asCorruption(t, openErr(dir)); ce.Segment != last {
				t.Errorf("header byte %d: got segment %d, want %d", off, ce.Segment, last)
			}
		}
	})

	t.Run("header does not match name", func(t *testing.T) {
		dir := buildLog(t, segSize, want)
		last, path := lastSegment(t, dir)
		h := encodeHeader(last + 1)
		b := readFile(t, path)
		copy(b, h[:])
		writeFile(t, path, b)
		asCorruption(t, openErr(dir))
	})

	t.Run("garbage after the last frame", func(t *testing.T) {
		dir := buildLog(t, segSize, want)
		_, path := lastSegment(t, dir)
		b := readFile(t, path)
		// A complete frame with a bad type, then non-zero bytes.
		b = append(b, 0x00, 0x00, 0x00, 0x70, 1, 2, 3, 4, 'x', 'y')
		writeFile(t, path, b)
		asCorruption(t, openErr(dir))
	})
}

func openErr(dir string) error {
	l, err := Open(dir, Options{})
	if err == nil {
		l.Close()
	}
	return err
}

func TestTornTailIsTruncatedAndLogged(t *testing.T) {
	want := variedPayloads(7, 20, 30)
	cases := []struct {
		name   string
		damage func(b []byte, lastStart int64) []byte
		keep   int // records of the last segment kept, from the end: -1 = drop last
	}{
		{"checksum mismatch in final frame", func(b []byte, _ int64) []byte { b[len(b)-1] ^= 1; return b }, -1},
		{"zero-filled tail", func(b []byte, _ int64) []byte { return append(b, make([]byte, 100)...) }, 0},
		{"final frame header zeroed", func(b []byte, lastStart int64) []byte {
			clear(b[lastStart:])
			return b
		}, -1},
		{"partial final frame", func(b []byte, _ int64) []byte { return b[:len(b)-3] }, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := buildLog(t, 1<<20, want)
			_, path := lastSegment(t, dir)
			ends := frameEnds(want)
			b := tc.damage(readFile(t, path), ends[len(ends)-2])
			writeFile(t, path, b)
			var logBuf bytes.Buffer
			l, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			n := len(want) + tc.keep
			checkRecords(t, readFrom(t, l, 0), want[:n], 0)
			mustClose(t, l)
			if !strings.Contains(logBuf.String(), "level=WARN") || !strings.Contains(logBuf.String(), "torn tail") {
				t.Errorf("log = %q, want a WARN about the torn tail", logBuf.String())
			}
			if got, want := int64(len(readFile(t, path))), ends[n-1]; got != want {
				t.Errorf("segment is %d bytes after recovery, want %d", got, want)
			}
		})
	}
}

// TestHugeLengthFieldDoesNotAllocate checks that a length field claiming a
// near-maximal record is believed only as far as the file backs it.
func TestHugeLengthFieldDoesNotAllocate(t *testing.T) {
	want := variedPayloads(8, 10, 30)
	for _, where := range []string{"last", "earlier"} {
		t.Run(where, func(t *testing.T) {
			dir := buildLog(t, 200, want)
			segs := segmentsOf(t, dir)
			seg := segs[len(segs)-1]
			if where == "earlier" {
				seg = segs[0]
			}
			path := segmentPath(dir, seg)
			b := readFile(t, path)
			var h [frameHeader]byte
			binary.LittleEndian.PutUint32(h[:], (MaxRecordSize-1)|frameTypeRec<<frameTypeShift)
			writeFile(t, path, append(b, h[:]...))

			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			l, err := Open(dir, Options{})
			if where == "last" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				checkRecords(t, readFrom(t, l, 0), want, 0)
				mustClose(t, l)
			} else {
				asCorruption(t, err)
			}
			if r, err := OpenReader(dir, 0); err == nil {
				readAllLoose(r)
				r.Close()
			}
			runtime.ReadMemStats(&after)
			if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
				t.Errorf("recovery allocated %d MiB, want well under the claimed %d MiB", got>>20, MaxRecordSize>>20)
			}
		})
	}
}

// TestTailClassification pins down which damaged tails of the last segment
// are torn (truncated on Open) and which are corruption.
func TestTailClassification(t *testing.T) {
	h := encodeHeader(0)
	three := func() ([]byte, []int) {
		b := h[:]
		var offs []int
		for i, p := range []string{"zero", "one", "two"} {
			offs = append(offs, len(b))
			b = appendFrame(b, uint64(i), []byte(p))
		}
		return b, offs
	}
	cases := []struct {
		name    string
		make    func() []byte
		records int // -1: CorruptionError
	}{
		{"intact", func() []byte { b, _ := three(); return b }, 3},
		{"checksum mismatch in middle frame", func() []byte {
			b, offs := three()
			b[offs[1]+frameHeader] ^= 1
			return b
		}, -1},
		{"length inflated past EOF hides a valid frame", func() []byte {
			b, offs := three()
			binary.LittleEndian.PutUint32(b[offs[1]:], 4000|frameTypeRec<<frameTypeShift)
			return b
		}, -1},
		{"length of final frame inflated past EOF", func() []byte {
			b, offs := three()
			binary.LittleEndian.PutUint32(b[offs[2]:], 4000|frameTypeRec<<frameTypeShift)
			return b
		}, 2},
		{"unknown frame type then non-zero bytes", func() []byte {
			b, _ := three()
			return append(b, 3, 0, 0, 0x20, 0, 0, 0, 0, 'a')
		}, -1},
		{"unknown frame type then zeros", func() []byte {
			b, _ := three()
			return append(b, append([]byte{3, 0, 0, 0x20, 9, 9, 9, 9}, make([]byte, 30)...)...)
		}, 3},
		{"partial header", func() []byte { b, _ := three(); return append(b, 5, 0, 0) }, 3},
		{"frame checksummed for another index", func() []byte {
			return appendFrame(appendFrame(h[:], 0, []byte("zero")), 7, []byte("misplaced"))
		}, 1},
		{"misplaced frame followed by the right one", func() []byte {
			b := appendFrame(appendFrame(h[:], 0, []byte("zero")), 7, []byte("misplaced"))
			return appendFrame(b, 2, []byte("two"))
		}, -1},
		{"header prefix", func() []byte { return bytes.Clone(h[:9]) }, 0},
		{"header prefix then zeros", func() []byte { return append(bytes.Clone(h[:9]), make([]byte, 100)...) }, 0},
		{"header prefix then garbage", func() []byte { return append(bytes.Clone(h[:9]), 1) }, -1},
		{"all zeros", func() []byte { return make([]byte, 100) }, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, segmentPath(dir, 0), tc.make())
			l, err := Open(dir, Options{})
			if tc.records < 0 {
				asCorruption(t, err)
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer mustClose(t, l)
			if got := l.NextIndex(); got != uint64(tc.records) {
				t.Errorf("NextIndex = %d, want %d", got, tc.records)
			}
		})
	}
}
