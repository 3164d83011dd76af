package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseSyncMode(t *testing.T) {
	for _, m := range []SyncMode{SyncAlways, SyncInterval, SyncNone} {
		got, err := ParseSyncMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseSyncMode(%q) = %v, %v; want %v, nil", m.String(), got, err, m)
		}
	}
	if _, err := ParseSyncMode("sometimes"); err == nil || !strings.HasPrefix(err.Error(), "wal: ") {
		t.Errorf(`ParseSyncMode("sometimes") error = %v, want a "wal: " error`, err)
	}
	if _, err := Open(t.TempDir(), Options{Sync: SyncMode(7)}); err == nil {
		t.Errorf("Open with SyncMode(7) succeeded, want an error")
	}
}

func TestSegmentName(t *testing.T) {
	if got, want := segmentName(42), "00000000000000000042.wal"; got != want {
		t.Errorf("segmentName(42) = %q, want %q", got, want)
	}
	for _, name := range []string{"42.wal", "0000000000000000004x.wal", "00000000000000000042.tmp", "99999999999999999999.wal"} {
		if first, ok := parseSegmentName(name, segmentExt); ok {
			t.Errorf("parseSegmentName(%q) = %d, true; want false", name, first)
		}
	}
	if first, ok := parseSegmentName("18446744073709551615.wal", segmentExt); !ok || first != 1<<64-1 {
		t.Errorf("parseSegmentName(max) = %d, %v", first, ok)
	}
}

// variedPayloads returns n payloads of seeded random sizes up to maxSize.
func variedPayloads(seed uint64, n, maxSize int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([][]byte, n)
	for i := range out {
		out[i] = payload(uint64(i), rng.IntN(maxSize+1))
	}
	return out
}

func TestRoundTripAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 512}
	want := variedPayloads(1, 300, 100)
	l := mustOpen(t, dir, opts)
	appendEach(t, l, want[:100])
	// The rest in batches of up to 7, checking the returned first index.
	for i := 100; i < len(want); {
		n := min(1+i%7, len(want)-i)
		first, err := l.Append(context.Background(), want[i:i+n]...)
		if err != nil {
			t.Fatal(err)
		}
		if first != uint64(i) {
			t.Fatalf("Append batch at %d returned first %d", i, first)
		}
		i += n
	}
	if got := l.NextIndex(); got != uint64(len(want)) {
		t.Fatalf("NextIndex = %d, want %d", got, len(want))
	}
	if got := l.DurableIndex(); got != uint64(len(want)) {
		t.Fatalf("DurableIndex = %d, want %d", got, len(want))
	}
	checkRecords(t, readFrom(t, l, 0), want, 0)
	mustClose(t, l)

	segs := segmentsOf(t, dir)
	if len(segs) < 10 {
		t.Fatalf("got %d segments, want at least 10 with SegmentSize 512", len(segs))
	}
	infos, err := Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	var size int64
	for i, in := range infos {
		if in.FirstIndex != total {
			t.Errorf("segment %d: FirstIndex %d, want %d", i, in.FirstIndex, total)
		}
		if in.Size > opts.SegmentSize && in.Records > 1 {
			t.Errorf("segment %d: %d bytes with %d records exceeds SegmentSize %d", in.FirstIndex, in.Size, in.Records, opts.SegmentSize)
		}
		if in.TornBytes != 0 {
			t.Errorf("segment %d: TornBytes %d, want 0", in.FirstIndex, in.TornBytes)
		}
		total += in.Records
		size += in.Size
	}
	if total != uint64(len(want)) {
		t.Fatalf("Stat counts %d records, want %d", total, len(want))
	}

	l = mustOpen(t, dir, opts)
	defer mustClose(t, l)
	if got := l.NextIndex(); got != uint64(len(want)) {
		t.Fatalf("after reopen NextIndex = %d, want %d", got, len(want))
	}
	if got := l.Size(); got != size {
		t.Errorf("Size = %d, want %d (sum of segment files)", got, size)
	}
	for from := uint64(0); from <= uint64(len(want)); from += 7 {
		checkRecords(t, readFrom(t, l, from), want, from)
	}
	checkRecords(t, readFrom(t, l, uint64(len(want))), want, uint64(len(want)))
	if _, err := l.NewReader(uint64(len(want)) + 1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("NewReader past NextIndex: got %v, want ErrOutOfRange", err)
	}
	// Appending after reopen continues the sequence.
	more := [][]byte{[]byte("after"), []byte("reopen")}
	appendEach(t, l, more)
	checkRecords(t, readFrom(t, l, 0), append(want, more...), 0)
}

func TestTruncateBefore(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 256}
	want := variedPayloads(2, 200, 60)
	l := mustOpen(t, dir, opts)
	appendEach(t, l, want)
	segs := segmentsOf(t, dir)
	if len(segs) < 5 {
		t.Fatalf("got %d segments, want at least 5", len(segs))
	}

	// A Reader positioned in the first segment before the truncation.
	early, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if _, _, err := early.Next(); err != nil {
		t.Fatal(err)
	}

	cutAt := segs[3] + 1 // inside the fourth segment
	if err := l.TruncateBefore(cutAt); err != nil {
		t.Fatal(err)
	}
	if got := l.FirstIndex(); got != segs[3] {
		t.Fatalf("after TruncateBefore(%d): FirstIndex = %d, want %d", cutAt, got, segs[3])
	}
	if got := segmentsOf(t, dir); got[0] != segs[3] || len(got) != len(segs)-3 {
		t.Fatalf("segments after truncation = %v, want %v", got, segs[3:])
	}
	checkRecords(t, readFrom(t, l, segs[3]), want, segs[3])
	if _, err := l.NewReader(segs[3] - 1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("NewReader below FirstIndex: got %v, want ErrOutOfRange", err)
	}
	// The early Reader finishes its open segment, then finds the next gone.
	var lastErr error
	for range len(want) {
		if _, _, lastErr = early.Next(); lastErr != nil {
			break
		}
	}
	if !errors.Is(lastErr, ErrOutOfRange) {
		t.Errorf("reader behind the truncation: got %v, want ErrOutOfRange", lastErr)
	}

	// Truncating far ahead never removes the active segment.
	if err := l.TruncateBefore(1 << 62); err != nil {
		t.Fatal(err)
	}
	last := segs[len(segs)-1]
	if got := segmentsOf(t, dir); len(got) != 1 || got[0] != last {
		t.Fatalf("segments after TruncateBefore(huge) = %v, want [%d]", got, last)
	}
	fi, err := os.Stat(segmentPath(dir, last))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Size(); got != fi.Size() {
		t.Errorf("Size = %d, want %d", got, fi.Size())
	}
	mustClose(t, l)

	l = mustOpen(t, dir, opts)
	defer mustClose(t, l)
	if got := l.FirstIndex(); got != last {
		t.Fatalf("after reopen FirstIndex = %d, want %d", got, last)
	}
	checkRecords(t, readFrom(t, l, last), want, last)
	appendEach(t, l, [][]byte{[]byte("x")})
	if got := l.NextIndex(); got != uint64(len(want))+1 {
		t.Fatalf("NextIndex = %d, want %d", got, len(want)+1)
	}
}

func TestReaderFollowsAppends(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{SegmentSize: 128})
	defer mustClose(t, l)
	r, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var want [][]byte
	for round := range 20 {
		if got := drain(t, r); len(got) != 0 {
			t.Fatalf("round %d: read %d records before appending", round, len(got))
		}
		batch := [][]byte{payload(uint64(round), 50), payload(uint64(round+100), 3)}
		if _, err := l.Append(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
		want = append(want, batch...)
		got := drain(t, r)
		checkRecords(t, got, want[:len(want)], uint64(len(want)-2))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Next(); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close: got %v, want ErrClosed", err)
	}
}

func TestConcurrentAppend(t *testing.T) {
	const (
		writers = 32
		rounds  = 60
	)
	l := mustOpen(t, t.TempDir(), Options{SegmentSize: 4096})
	defer mustClose(t, l)

	// A Reader tails the log while it is written.
	total := 0
	for w := range writers {
		for k := range rounds {
			total += 1 + (w+k)%4
		}
	}
	tailed := make(chan []rec, 1)
	go func() {
		r, err := l.NewReader(0)
		if err != nil {
			t.Error(err)
			tailed <- nil
			return
		}
		defer r.Close()
		var got []rec
		deadline := time.Now().Add(30 * time.Second)
		for len(got) < total && time.Now().Before(deadline) {
			i, data, err := r.Next()
			if err != nil {
				time.Sleep(time.Millisecond) // io.EOF: wait for more
				continue
			}
			got = append(got, rec{i, bytes.Clone(data)})
		}
		tailed <- got
	}()

	type result struct {
		first uint64
		recs  [][]byte
	}
	results := make([][]result, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for k := range rounds {
				n := 1 + (w+k)%4
				batch := make([][]byte, n)
				for j := range batch {
					batch[j] = fmt.Appendf(nil, "writer %d round %d record %d %s", w, k, j, strings.Repeat("x", (w*k+j)%40))
				}
				first, err := l.Append(context.Background(), batch...)
				if err != nil {
					t.Error(err)
					return
				}
				results[w] = append(results[w], result{first, batch})
			}
		})
	}
	wg.Wait()

	want := make([][]byte, total)
	for w, rs := range results {
		var prev uint64
		for k, r := range rs {
			if k > 0 && r.first <= prev {
				t.Fatalf("writer %d: append %d got first index %d after %d", w, k, r.first, prev)
			}
			prev = r.first
			for j, data := range r.recs {
				i := r.first + uint64(j)
				if i >= uint64(total) {
					t.Fatalf("index %d out of range [0,%d)", i, total)
				}
				if want[i] != nil {
					t.Fatalf("index %d assigned twice", i)
				}
				want[i] = data
			}
		}
	}
	for i, d := range want {
		if d == nil {
			t.Fatalf("index %d never assigned", i)
		}
	}
	checkRecords(t, readFrom(t, l, 0), want, 0)
	checkRecords(t, <-tailed, want, 0)
}

func TestRecordSizes(t *testing.T) {
	const segSize = 256
	sizes := []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 23, 24, 25, 31, 32, 33,
		segSize - headerSize - frameHeader - 1, segSize - headerSize - frameHeader, segSize - headerSize - frameHeader + 1,
		segSize - 1, segSize, segSize + 1, 1000, readBufSize - 1, readBufSize, readBufSize + frameHeader + 1}
	var want [][]byte
	for i, n := range sizes {
		want = append(want, payload(uint64(i), n), payload(uint64(i), 1))
	}
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: segSize})
	appendEach(t, l, want)
	checkRecords(t, readFrom(t, l, 0), want, 0)
	mustClose(t, l)

	infos, err := Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.Size > segSize && in.Records > 1 {
			t.Errorf("segment %d: %d bytes holding %d records exceeds SegmentSize", in.FirstIndex, in.Size, in.Records)
		}
	}
	l = mustOpen(t, dir, Options{SegmentSize: segSize})
	defer mustClose(t, l)
	checkRecords(t, readFrom(t, l, 0), want, 0)
	for from := range uint64(len(want)) {
		checkRecords(t, readFrom(t, l, from), want, from)
	}
}

func TestMaxRecordSize(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB")
	}
	l, err := openNoSync(t.TempDir()) // durability is not under test: skip a 64 MiB fsync
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, l)
	big := make([]byte, MaxRecordSize+1)
	copy(big, payload(9, 4096))
	for n := 4096; n < len(big); n *= 2 {
		copy(big[n:], big[:n]) // fast fill that the race detector does not slow down
	}
	big[len(big)/2] ^= 0xff
	if _, err := l.Append(context.Background(), []byte("ok"), big); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("Append of %d bytes: got %v, want ErrRecordTooLarge", len(big), err)
	}
	if got := l.NextIndex(); got != 0 {
		t.Fatalf("a rejected Append assigned indexes: NextIndex = %d", got)
	}
	want := [][]byte{big[:MaxRecordSize], []byte("after")}
	appendEach(t, l, want)
	checkRecords(t, readFrom(t, l, 0), want, 0)
}

func TestAppendEdgeCases(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	appendEach(t, l, [][]byte{[]byte("a")})
	if first, err := l.Append(context.Background()); err != nil || first != 1 {
		t.Errorf("Append() = %d, %v; want 1, nil", first, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, []byte("b")); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with cancelled ctx: got %v, want context.Canceled", err)
	}
	if got := l.NextIndex(); got != 1 {
		t.Errorf("NextIndex after cancelled Append = %d, want 1", got)
	}
	// The caller may reuse its slice once Append returns.
	buf := []byte("first")
	appendEach(t, l, [][]byte{buf})
	copy(buf, "XXXXX")
	got := readFrom(t, l, 1)
	if len(got) != 1 || string(got[0].data) != "first" {
		t.Errorf("after reusing the slice read %v, want [first]", got)
	}

	r, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, l)
	if _, err := l.Append(context.Background(), []byte("c")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: got %v, want ErrClosed", err)
	}
	if _, err := l.NewReader(0); !errors.Is(err, ErrClosed) {
		t.Errorf("NewReader after Close: got %v, want ErrClosed", err)
	}
	if err := l.TruncateBefore(1); !errors.Is(err, ErrClosed) {
		t.Errorf("TruncateBefore after Close: got %v, want ErrClosed", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: got %v, want ErrClosed", err)
	}
	// A Reader made before Close still reads what was durable.
	if got := drain(t, r); len(got) != 2 {
		t.Errorf("reader after Close read %d records, want 2", len(got))
	}
	r.Close()
}

func TestExclusiveLock(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	if l2, err := Open(dir, Options{}); err == nil {
		l2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	mustClose(t, l)
	mustClose(t, mustOpen(t, dir, Options{}))
}

func TestOpenRemovesTmpSegments(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	appendEach(t, l, [][]byte{[]byte("a")})
	mustClose(t, l)
	tmp := filepath.Join(dir, "00000000000000000001.tmp")
	if err := os.WriteFile(tmp, []byte("half-made segment"), 0o644); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale %s still there after Open (stat: %v)", filepath.Base(tmp), err)
	}
	checkRecords(t, readFrom(t, l, 0), [][]byte{[]byte("a")}, 0)
}

func TestDumpAndStat(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 64})
	recs := [][]byte{[]byte("hello world"), {}, {0, 1, 0xff}, []byte(`"quoted"`), []byte("tab\there"), []byte("héllo")}
	appendEach(t, l, recs)
	mustClose(t, l)

	var buf bytes.Buffer
	if err := Dump(&buf, dir, 0); err != nil {
		t.Fatal(err)
	}
	want := "0\t11\thello world\n" +
		"1\t0\t\"\"\n" +
		"2\t3\t\"\\x00\\x01\\xff\"\n" +
		"3\t8\t\"\\\"quoted\\\"\"\n" +
		"4\t8\t\"tab\\there\"\n" +
		"5\t6\théllo\n"
	if got := buf.String(); got != want {
		t.Errorf("Dump from 0:\ngot:\n%s\nwant:\n%s", got, want)
	}
	buf.Reset()
	if err := Dump(&buf, dir, 4); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "4\t8\t\"tab\\there\"\n5\t6\théllo\n"; got != want {
		t.Errorf("Dump from 4: got %q, want %q", got, want)
	}

	infos, err := Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, in := range infos {
		fi, err := os.Stat(in.Path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != in.Size {
			t.Errorf("%s: Size %d, file has %d", in.Path, in.Size, fi.Size())
		}
		n += in.Records
	}
	if n != uint64(len(recs)) || len(infos) < 2 {
		t.Errorf("Stat: %d segments with %d records, want several with %d", len(infos), n, len(recs))
	}
}

// TestOpenReaderFollowsLiveLog reads a directory read-only while a Log in
// the same process appends to it and rolls segments.
func TestOpenReaderFollowsLiveLog(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 300, Sync: SyncNone})
	defer mustClose(t, l)
	want := variedPayloads(3, 400, 40)
	r, err := OpenReader(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < len(want); i += 5 {
			if _, err := l.Append(context.Background(), want[i:i+5]...); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var got []rec
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		i, data, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("OpenReader.Next after %d records: %v", len(got), err)
			}
			time.Sleep(100 * time.Microsecond)
			continue
		}
		got = append(got, rec{i, bytes.Clone(data)})
	}
	<-done
	checkRecords(t, got, want, 0)
}

// TestTruncateWhileAppending runs TruncateBefore and Readers concurrently
// with Appends that keep rolling segments.
func TestTruncateWhileAppending(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 256, Sync: SyncNone})
	const writers, each = 4, 150
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for k := range each {
				if _, err := l.Append(context.Background(), payload(uint64(w*each+k), 30)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	truncDone := make(chan struct{})
	go func() {
		defer close(truncDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if next := l.NextIndex(); next > 40 {
				if err := l.TruncateBefore(next - 40); err != nil {
					t.Error(err)
					return
				}
				// A Reader from FirstIndex may lose its segment to the next
				// truncation, but must never return a bad record.
				if r, err := l.NewReader(l.FirstIndex()); err == nil {
					for {
						_, data, err := r.Next()
						if err != nil {
							if !errors.Is(err, io.EOF) && !errors.Is(err, ErrOutOfRange) {
								t.Errorf("reader during truncation: %v", err)
							}
							break
						}
						if len(data) != 30 {
							t.Errorf("reader during truncation returned %d bytes", len(data))
						}
					}
					r.Close()
				}
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	wg.Wait()
	close(stop)
	<-truncDone
	first, next := l.FirstIndex(), l.NextIndex()
	if next != writers*each || first == 0 || first > next-40 {
		t.Fatalf("FirstIndex %d, NextIndex %d: want 0 < first <= %d", first, next, next-40)
	}
	mustClose(t, l)
	l = mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	if got := l.FirstIndex(); got != first {
		t.Errorf("after reopen FirstIndex = %d, want %d", got, first)
	}
	if got := readFrom(t, l, first); len(got) != int(next-first) {
		t.Errorf("after reopen read %d records, want %d", len(got), next-first)
	}
}

func TestAppendContextDoneWhileWaiting(t *testing.T) {
	fs := &faults{gate: make(chan struct{})}
	l := openWithFaults(t, t.TempDir(), Options{Sync: SyncAlways}, fs)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, []byte("a"))
		errc <- err
	}()
	waitFor(t, "the flusher to sync", func() bool { return fs.syncs.Load() >= 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Append whose ctx was cancelled while waiting: got %v, want context.Canceled", err)
	}
	close(fs.gate)
	mustClose(t, l)
}
