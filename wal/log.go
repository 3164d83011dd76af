package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Log is a segmented write-ahead log in one directory. Its methods are safe
// for concurrent use by multiple goroutines. Only one Log may be open per
// directory at a time (enforced with flock where available).
type Log struct {
	dir   string
	opts  Options
	log   *slog.Logger
	hooks hooks
	lock  *os.File

	mu       sync.Mutex
	next     uint64   // index the next appended record gets
	segs     []uint64 // segments on disk, ascending; the flusher writes the last
	tailSize int64    // size the tail segment will have once pending is written
	pending  *batch   // frames waiting for the flusher
	spare    *batch   // recycled buffer for the next swap
	err      error    // sticky write or sync failure
	closed   bool

	wm      atomic.Pointer[watermark] // what Readers may read
	size    atomic.Int64              // bytes on disk
	truncMu sync.Mutex                // serialises TruncateBefore

	wake     chan struct{} // capacity 1: pending became non-empty
	closing  chan struct{} // closed by Close
	done     chan struct{} // closed when the flusher has exited
	closeErr error         // the flusher's final result, read after done

	// Owned by the flusher goroutine (and by open before it starts).
	file     segmentFile
	fileSeg  uint64
	fileOff  int64
	dirty    bool // written since the last sync
	lastSync time.Time

	// Counters for benchmarks and tests.
	nWrites, nSyncs atomic.Int64
}

// watermark bounds what Readers of a Log may read: records below index,
// which end in segment seg at byte off, are durable per the sync mode.
type watermark struct {
	index uint64
	seg   uint64
	off   int64
}

// batch is a buffer of encoded frames that the flusher writes in one go.
type batch struct {
	buf   []byte
	cuts  []cut  // where in buf new segments begin
	end   uint64 // index after the batch's last record
	group *commitGroup
}

// cut marks that the frames from buf[off:] on belong to a new segment.
type cut struct {
	off   int
	first uint64
}

// commitGroup is shared by every Append whose records are in one batch;
// done is closed once the batch is durable per the sync mode, or failed.
type commitGroup struct {
	done    chan struct{}
	err     error
	appends int       // Append calls in the group, guarded by Log.mu
	wm      watermark // published once the group is durable
}

func newBatch() *batch {
	return &batch{group: &commitGroup{done: make(chan struct{})}}
}

// segmentFile is the flusher's handle on the active segment; tests wrap it
// to inject faults.
type segmentFile interface {
	Write(p []byte) (int, error)
	Sync() error
	Close() error
}

type osSegment struct {
	f      *os.File
	noSync bool
}

func (s osSegment) Write(p []byte) (int, error) { return s.f.Write(p) }
func (s osSegment) Sync() error {
	if s.noSync {
		return nil
	}
	return datasync(s.f)
}
func (s osSegment) Close() error { return s.f.Close() }

// hooks are test-only fault injection points.
type hooks struct {
	// wrapSegment, if set, wraps every segment file the Log writes.
	wrapSegment func(seg uint64, f segmentFile) segmentFile
	// noSync skips every fsync, for tests of recovery logic that do not
	// need durability and would otherwise spend their time in fsync.
	noSync bool
}

// Open opens the log in dir, creating dir and an empty log if needed, and
// recovers it: leftover .tmp files are removed, every segment is verified,
// and a torn tail at the end of the last segment is truncated (and logged
// at Warn level). Damage that is not a torn tail makes Open fail with a
// *CorruptionError and leaves the segment files untouched. Open fails if
// another Log has dir open.
func Open(dir string, opts Options) (*Log, error) {
	return open(dir, opts, hooks{})
}

func open(dir string, opts Options, h hooks) (_ *Log, err error) {
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create directory: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("wal: open lock file: %w", err)
	}
	if err := lockFile(lf); err != nil {
		lf.Close()
		return nil, fmt.Errorf("wal: lock %s (is another Log open on it?): %w", dir, err)
	}
	l := &Log{
		dir:     dir,
		opts:    opts,
		log:     opts.Logger,
		hooks:   h,
		lock:    lf,
		pending: newBatch(),
		spare:   newBatch(),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	defer func() {
		if err != nil {
			if l.file != nil {
				l.file.Close()
			}
			lf.Close()
		}
	}()
	if err := l.recover(); err != nil {
		return nil, err
	}
	l.lastSync = time.Now()
	go l.run()
	return l, nil
}

// recover verifies the segments, repairs a torn tail and opens the last
// segment for appending.
func (l *Log) recover() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("wal: list segments: %w", err)
	}
	for _, e := range entries {
		if _, ok := parseSegmentName(e.Name(), tmpExt); ok {
			if err := os.Remove(filepath.Join(l.dir, e.Name())); err != nil {
				return fmt.Errorf("wal: remove unfinished segment: %w", err)
			}
		}
	}
	ls, err := scanLog(l.dir)
	if err != nil {
		return err
	}
	if len(ls.segs) == 0 {
		f, err := l.createSegment(0)
		if err != nil {
			return err
		}
		l.setFile(0, f, headerSize)
		l.segs = []uint64{0}
		l.size.Store(headerSize)
		l.finishRecovery(0)
		return nil
	}

	var total int64
	segs := make([]uint64, len(ls.segs))
	for i, sc := range ls.segs {
		segs[i] = sc.first
		total += sc.size
	}
	tail := ls.segs[len(ls.segs)-1]
	first := tail.first
	var f *os.File
	end := tail.end
	if tail.torn != nil {
		f, end, err = l.cutTornTail(tail)
	} else {
		f, err = os.OpenFile(segmentPath(l.dir, first), os.O_WRONLY, 0)
		if err != nil {
			err = fmt.Errorf("wal: open segment %d: %w", first, err)
		}
	}
	if err != nil {
		return err
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("wal: seek segment %d: %w", first, err)
	}
	l.setFile(first, f, end)
	l.segs = segs
	l.size.Store(total - tail.size + end)
	l.finishRecovery(ls.next)
	return nil
}

func (l *Log) setFile(seg uint64, f *os.File, off int64) {
	var sf segmentFile = osSegment{f, l.hooks.noSync}
	if l.hooks.wrapSegment != nil {
		sf = l.hooks.wrapSegment(seg, sf)
	}
	l.file, l.fileSeg, l.fileOff = sf, seg, off
}

func (l *Log) finishRecovery(next uint64) {
	l.next = next
	l.tailSize = l.fileOff
	l.wm.Store(&watermark{index: next, seg: l.fileSeg, off: l.fileOff})
}

func gapError(first, want uint64) *CorruptionError {
	if first > want {
		return corrupt(first, 0, "records %d to %d are missing: the previous segment ends before index %d", want, first-1, want)
	}
	return corrupt(first, 0, "segment overlaps the previous one, which ends before index %d", want)
}

// createSegment creates segment first in dir the crash-safe way: header to
// a .tmp file, fsync, rename, fsync the directory. The returned file is
// open for writing just after the header.
func (l *Log) createSegment(first uint64) (_ *os.File, err error) {
	dir := l.dir
	tmp := filepath.Join(dir, fmt.Sprintf("%0*d%s", nameDigits, first, tmpExt))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("wal: create segment %d: %w", first, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("wal: create segment %d: %w", first, err)
		}
	}()
	h := encodeHeader(first)
	if _, err := f.Write(h[:]); err != nil {
		return nil, err
	}
	if err := l.fsync(f); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, segmentPath(dir, first)); err != nil {
		return nil, err
	}
	if err := l.syncDir(); err != nil {
		return nil, err
	}
	return f, nil
}

// fsync flushes f, data and metadata, to stable storage.
func (l *Log) fsync(f *os.File) error {
	if l.hooks.noSync {
		return nil
	}
	return f.Sync()
}

// syncDir makes the Log directory's entries durable.
func (l *Log) syncDir() error {
	if l.hooks.noSync {
		return nil
	}
	d, err := os.Open(l.dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Append appends records, in order and with contiguous indexes not
// interleaved with any other Append, and returns the index of the first.
// It returns once the records are durable per the sync mode: for
// SyncAlways, after an fsync that covers them. Append is safe for
// concurrent use; concurrent callers share fsyncs. It does not retain the
// record slices: the caller may reuse them once Append returns.
//
// Appending no records returns NextIndex and nil. A record longer than
// MaxRecordSize fails with ErrRecordTooLarge before anything is appended,
// as does a ctx that is already done. If ctx is done while Append waits,
// Append returns the first index and ctx's error, and the records may or
// may not become durable. After a write or fsync has failed every Append
// returns that error; after Close, ErrClosed. A crash may preserve a
// prefix of the records of an Append that had not returned.
func (l *Log) Append(ctx context.Context, records ...[]byte) (first uint64, err error) {
	for i, r := range records {
		if len(r) > MaxRecordSize {
			return 0, fmt.Errorf("wal: append record %d of %d bytes: %w", i, len(r), ErrRecordTooLarge)
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("wal: append: %w", err)
	}
	l.mu.Lock()
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return 0, err
	}
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	first = l.next
	if len(records) == 0 {
		l.mu.Unlock()
		return first, nil
	}
	b := l.pending
	wasEmpty := len(b.buf) == 0
	for _, r := range records {
		n := int64(frameHeader + len(r))
		if l.tailSize > headerSize && l.tailSize+n > l.opts.SegmentSize {
			b.cuts = append(b.cuts, cut{off: len(b.buf), first: l.next})
			l.tailSize = headerSize
		}
		b.buf = appendFrame(b.buf, l.next, r)
		l.tailSize += n
		l.next++
	}
	b.end = l.next
	g := b.group
	g.appends++
	l.mu.Unlock()
	if wasEmpty {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	if done := ctx.Done(); done == nil {
		<-g.done // cheaper than a select, for contexts that are never done
	} else {
		select {
		case <-g.done:
		case <-done:
			return first, fmt.Errorf("wal: wait for records %d to %d: %w", first, first+uint64(len(records))-1, ctx.Err())
		}
	}
	return first, g.err
}

// run is the flusher: it takes the pending batch, writes it, syncs per the
// mode and releases the batch's Appends, until Close.
func (l *Log) run() {
	defer close(l.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var timerC <-chan time.Time
	closing := false
	released := 0 // Appends the last commit released
	for {
		if !closing {
			select {
			case <-l.wake:
			case <-timerC:
				timerC = nil
				if l.dirty {
					l.fail(l.sync())
				}
				continue
			case <-l.closing:
				closing = true
			}
		}
		if released > 1 {
			l.gather()
		}
		l.mu.Lock()
		b := l.pending
		if len(b.buf) == 0 {
			l.mu.Unlock()
			if closing {
				l.finish()
				return
			}
			continue
		}
		nb := l.spare
		l.spare = nil
		nb.buf, nb.cuts, nb.group = nb.buf[:0], nb.cuts[:0], &commitGroup{done: make(chan struct{})}
		l.pending = nb
		err := l.err
		released = b.group.appends
		l.mu.Unlock()

		if err == nil {
			err = l.commit(b)
			l.fail(err)
		}
		g := b.group
		if cap(b.buf) > 4<<20 && len(b.buf) < cap(b.buf)/4 {
			b.buf = nil // do not pin a huge buffer after a burst
		}
		l.mu.Lock()
		l.spare = b
		l.mu.Unlock()
		g.err = err
		close(g.done)

		if l.opts.Sync == SyncInterval && l.dirty && err == nil {
			if wait := l.opts.SyncInterval - time.Since(l.lastSync); wait <= 0 {
				l.fail(l.sync())
			} else if timerC == nil {
				timer.Reset(wait)
				timerC = timer.C
			}
		}
	}
}

// gather yields to runnable goroutines while they keep adding to the
// pending batch, so that the writers the previous commit released join the
// next write and sync instead of the writers splitting into two groups that
// alternate. The flusher calls it only when the previous commit released
// more than one Append, so a lone writer never waits for it.
func (l *Log) gather() {
	prev := -1
	for range 16 {
		runtime.Gosched()
		l.mu.Lock()
		n := len(l.pending.buf)
		l.mu.Unlock()
		if n == prev {
			return
		}
		prev = n
	}
}

// commit writes b, rolling segments at its cuts, syncs in SyncAlways mode
// and publishes the new watermark.
func (l *Log) commit(b *batch) error {
	start := 0
	for _, c := range b.cuts {
		if err := l.write(b.buf[start:c.off]); err != nil {
			return err
		}
		start = c.off
		if err := l.roll(c.first); err != nil {
			return err
		}
	}
	if err := l.write(b.buf[start:]); err != nil {
		return err
	}
	if l.opts.Sync == SyncAlways {
		if err := l.sync(); err != nil {
			return err
		}
	}
	b.group.wm = watermark{index: b.end, seg: l.fileSeg, off: l.fileOff}
	l.wm.Store(&b.group.wm) // saves an allocation per commit
	return nil
}

func (l *Log) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	l.dirty = true
	l.nWrites.Add(1)
	n, err := l.file.Write(p)
	l.fileOff += int64(n)
	l.size.Add(int64(n))
	if err != nil {
		return fmt.Errorf("wal: write segment %d: %w", l.fileSeg, err)
	}
	return nil
}

func (l *Log) sync() error {
	if !l.dirty {
		return nil
	}
	l.nSyncs.Add(1)
	if err := l.file.Sync(); err != nil {
		return fmt.Errorf("wal: sync segment %d: %w", l.fileSeg, err)
	}
	l.dirty = false
	l.lastSync = time.Now()
	return nil
}

// roll completes the active segment and starts segment first.
func (l *Log) roll(first uint64) error {
	if err := l.sync(); err != nil {
		return err
	}
	old := l.file
	l.file = nil
	if err := old.Close(); err != nil {
		return fmt.Errorf("wal: close segment %d: %w", l.fileSeg, err)
	}
	f, err := l.createSegment(first)
	if err != nil {
		return err
	}
	l.setFile(first, f, headerSize)
	l.size.Add(headerSize)
	l.mu.Lock()
	l.segs = append(l.segs, first)
	l.mu.Unlock()
	l.log.Debug("wal: rolled to new segment", "segment", first)
	return nil
}

// fail makes err, if any, the Log's sticky error.
func (l *Log) fail(err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	first := l.err == nil
	if first {
		l.err = err
	}
	l.mu.Unlock()
	if first {
		l.log.Error("wal: log failed; every later append will fail", "dir", l.dir, "err", err)
	}
}

// finish syncs and closes the active segment as the flusher exits.
func (l *Log) finish() {
	l.mu.Lock()
	err := l.err
	l.mu.Unlock()
	if l.file == nil {
		l.closeErr = err
		return
	}
	if err == nil {
		err = l.sync()
	}
	if cerr := l.file.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("wal: close segment %d: %w", l.fileSeg, cerr)
	}
	l.file = nil
	l.closeErr = err
}

// Close writes and syncs everything appended so far, closes the Log and
// releases the directory. It returns the Log's sticky error if a write or
// sync had failed. Appends that were waiting complete first; later calls
// to Append, NewReader, TruncateBefore and Close return ErrClosed. Readers
// created before Close keep working up to what was durable.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	close(l.closing)
	<-l.done
	l.truncMu.Lock() // let a running TruncateBefore finish
	defer l.truncMu.Unlock()
	if err := l.lock.Close(); err != nil && l.closeErr == nil {
		return fmt.Errorf("wal: release lock: %w", err)
	}
	return l.closeErr
}

// FirstIndex returns the index of the oldest retained record. It equals
// NextIndex when the Log holds no records.
func (l *Log) FirstIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[0]
}

// NextIndex returns the index the next appended record will get. Records
// below it have been assigned but, while their Append has not returned,
// are not necessarily durable yet.
func (l *Log) NextIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// DurableIndex returns the index after the last record that is durable per
// the sync mode (written to the OS for SyncInterval and SyncNone, fsynced
// for SyncAlways); Readers return records up to it.
func (l *Log) DurableIndex() uint64 {
	return l.wm.Load().index
}

// Size returns the total size in bytes of the Log's segment files.
func (l *Log) Size() int64 {
	return l.size.Load()
}

// Err returns the Log's sticky error: the write or sync failure that made
// it fail, or nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// FirstIndexAfter returns what FirstIndex would be after
// TruncateBefore(index): the first index of the oldest segment that call
// keeps. A caller that must save something about the records a
// truncation deletes (weir's seen message ids) compares it with
// FirstIndex first.
func (l *Log) FirstIndexAfter(index uint64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.segs[0]
	for i := 0; i+1 < len(l.segs) && l.segs[i+1] <= index; i++ {
		first = l.segs[i+1]
	}
	return first
}

// TruncateBefore deletes, oldest first, every segment all of whose records
// have indexes below index. It never deletes the active (last) segment or
// any record at or above index, so FirstIndex may stay below index.
// Readers positioned in a deleted segment can finish it; one that needs a
// deleted segment fails with ErrOutOfRange.
func (l *Log) TruncateBefore(index uint64) error {
	l.truncMu.Lock()
	defer l.truncMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	var victims []uint64
	for i := 0; i+1 < len(l.segs) && l.segs[i+1] <= index; i++ {
		victims = append(victims, l.segs[i])
	}
	l.mu.Unlock()
	if len(victims) == 0 {
		return nil
	}
	var err error
	for _, seg := range victims {
		path := segmentPath(l.dir, seg)
		fi, serr := os.Stat(path)
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("wal: remove segment %d: %w", seg, rerr)
			break
		}
		if serr == nil {
			l.size.Add(-fi.Size())
		}
		l.mu.Lock()
		l.segs = l.segs[1:]
		l.mu.Unlock()
	}
	if serr := l.syncDir(); serr != nil && err == nil {
		err = fmt.Errorf("wal: sync directory after removing segments: %w", serr)
	}
	l.log.Debug("wal: removed segments", "before", index, "count", len(victims), "err", err)
	return err
}
