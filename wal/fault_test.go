package wal

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// faults controls the segment files of a Log opened with faultHooks.
type faults struct {
	failSync atomic.Bool
	gate     chan struct{} // if non-nil, Sync waits for it to be closed
	syncs    atomic.Int64  // Sync calls
	written  atomic.Int64  // bytes written through Write
	synced   atomic.Int64  // value of written at the last successful Sync

	mu    sync.Mutex
	files []*os.File
}

type faultFile struct {
	inner segmentFile
	fs    *faults
}

func (f faultFile) Write(p []byte) (int, error) {
	n, err := f.inner.Write(p)
	f.fs.written.Add(int64(n))
	return n, err
}

func (f faultFile) Sync() error {
	f.fs.syncs.Add(1)
	if f.fs.gate != nil {
		<-f.fs.gate
	}
	if f.fs.failSync.Load() {
		return &os.PathError{Op: "fdatasync", Path: "segment", Err: syscall.EIO}
	}
	w := f.fs.written.Load()
	if err := f.inner.Sync(); err != nil {
		return err
	}
	f.fs.synced.Store(w)
	return nil
}

func (f faultFile) Close() error { return f.inner.Close() }

func openWithFaults(t *testing.T, dir string, opts Options, fs *faults) *Log {
	t.Helper()
	l, err := open(dir, opts, hooks{wrapSegment: func(_ uint64, sf segmentFile) segmentFile {
		fs.mu.Lock()
		fs.files = append(fs.files, sf.(osSegment).f)
		fs.mu.Unlock()
		return faultFile{sf, fs}
	}})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

// appendAsync runs Append in a goroutine and returns its result channel.
func appendAsync(l *Log, data []byte) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), data)
		ch <- err
	}()
	return ch
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSyncAlwaysReturnsOnlyAfterSync(t *testing.T) {
	fs := &faults{gate: make(chan struct{})}
	l := openWithFaults(t, t.TempDir(), Options{Sync: SyncAlways}, fs)
	done := appendAsync(l, []byte("a"))
	waitFor(t, "the flusher to sync", func() bool { return fs.syncs.Load() >= 1 })
	select {
	case err := <-done:
		t.Fatalf("Append returned (%v) while its fsync was still blocked", err)
	case <-time.After(20 * time.Millisecond):
	}
	if got := l.DurableIndex(); got != 0 {
		t.Fatalf("DurableIndex = %d before the sync completed, want 0", got)
	}
	close(fs.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Sequential appends: each returns with everything written synced.
	for i := range 20 {
		if _, err := l.Append(context.Background(), payload(uint64(i), i*10)); err != nil {
			t.Fatal(err)
		}
		if w, s := fs.written.Load(), fs.synced.Load(); s != w {
			t.Fatalf("append %d returned with %d bytes written but %d synced", i, w, s)
		}
	}
	// Concurrent appends share fsyncs (group commit).
	before := fs.syncs.Load()
	var wg sync.WaitGroup
	const writers, each = 64, 20
	for w := range writers {
		wg.Go(func() {
			for k := range each {
				if _, err := l.Append(context.Background(), payload(uint64(w*each+k), 100)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := fs.syncs.Load() - before; n >= writers*each {
		t.Errorf("%d appends took %d fsyncs; want fewer (shared)", writers*each, n)
	} else {
		t.Logf("%d concurrent appends took %d fsyncs", writers*each, n)
	}
	mustClose(t, l)
}

func TestSyncIntervalAppendDoesNotWaitForSync(t *testing.T) {
	fs := &faults{gate: make(chan struct{})}
	l := openWithFaults(t, t.TempDir(), Options{Sync: SyncInterval, SyncInterval: 10 * time.Millisecond}, fs)
	select {
	case err := <-appendAsync(l, []byte("a")):
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Append in SyncInterval mode waited for an fsync")
	}
	if got := l.DurableIndex(); got != 1 {
		t.Errorf("DurableIndex = %d, want 1 once written", got)
	}
	// With no further appends the flusher syncs within the interval.
	waitFor(t, "the interval fsync", func() bool { return fs.syncs.Load() >= 1 })
	close(fs.gate)
	waitFor(t, "the interval fsync to complete", func() bool { return fs.synced.Load() == fs.written.Load() })
	mustClose(t, l)
}

func TestSyncNoneSyncsOnlyOnClose(t *testing.T) {
	fs := &faults{}
	l := openWithFaults(t, t.TempDir(), Options{Sync: SyncNone}, fs)
	for i := range 50 {
		if _, err := l.Append(context.Background(), payload(uint64(i), 100)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := fs.syncs.Load(); n != 0 {
		t.Errorf("SyncNone: %d fsyncs before Close, want 0", n)
	}
	if got, want := fs.written.Load(), int64(50*(frameHeader+100)); got != want {
		t.Errorf("SyncNone: %d bytes written when Appends returned, want %d", got, want)
	}
	mustClose(t, l)
	if n := fs.syncs.Load(); n != 1 {
		t.Errorf("SyncNone: %d fsyncs after Close, want 1", n)
	}
}

func TestStickySyncError(t *testing.T) {
	dir := t.TempDir()
	fs := &faults{}
	l := openWithFaults(t, dir, Options{Sync: SyncAlways}, fs)
	appendEach(t, l, [][]byte{[]byte("a")})

	fs.failSync.Store(true)
	_, err := l.Append(context.Background(), []byte("b"))
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "wal: sync segment 0") {
		t.Fatalf("Append with failing fsync: got %v, want an EIO error naming segment 0", err)
	}
	if got := l.DurableIndex(); got != 1 {
		t.Errorf("DurableIndex = %d after a failed fsync, want 1", got)
	}
	// The failure is sticky even once the device works again.
	fs.failSync.Store(false)
	for i := range 3 {
		if _, err2 := l.Append(context.Background(), []byte("c")); !errors.Is(err2, syscall.EIO) {
			t.Fatalf("Append %d after the failure: got %v, want the sticky EIO error", i, err2)
		}
	}
	if err := l.Err(); !errors.Is(err, syscall.EIO) {
		t.Errorf("Err() = %v, want the EIO error", err)
	}
	got := readFrom(t, l, 0)
	if len(got) != 1 || string(got[0].data) != "a" {
		t.Errorf("Reader after failure returned %v, want only the durable record", got)
	}
	if err := l.Close(); !errors.Is(err, syscall.EIO) {
		t.Errorf("Close = %v, want the sticky EIO error", err)
	}
	// Reopening recovers the log.
	l = mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	if got := readFrom(t, l, 0); len(got) < 1 || string(got[0].data) != "a" {
		t.Errorf("after reopen read %v, want \"a\" first", got)
	}
}

func TestStickyWriteError(t *testing.T) {
	fs := &faults{}
	l := openWithFaults(t, t.TempDir(), Options{Sync: SyncNone}, fs)
	appendEach(t, l, [][]byte{[]byte("a")})

	// Make the segment's fd fail underneath the Log.
	fs.mu.Lock()
	fs.files[len(fs.files)-1].Close()
	fs.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = l.Append(context.Background(), []byte("b")) })
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, os.ErrClosed) || !strings.Contains(err.Error(), "wal: write segment 0") {
			t.Errorf("Append %d after the fd failed: got %v, want a write error naming segment 0", i, err)
		}
	}
	if _, err := l.Append(context.Background(), []byte("c")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("later Append: got %v, want the sticky error", err)
	}
	if got := l.DurableIndex(); got != 1 {
		t.Errorf("DurableIndex = %d, want 1", got)
	}
	if err := l.Close(); err == nil {
		t.Errorf("Close after a write failure returned nil")
	}
}
