package sources

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/weirhq/weir/pipeline"
)

const (
	// defaultReadBuffer is the size of a line reader's buffer: one read
	// syscall fills it, so a 150-byte-line file costs one syscall per
	// ~3,500 lines.
	defaultReadBuffer = 512 << 10
	// defaultMaxLineBytes is max_line_bytes when not configured.
	defaultMaxLineBytes = 1 << 20
	// deadLinePreview is the most bytes of an over-long line that its dead
	// letter keeps.
	deadLinePreview = 1 << 10
	// reasonTooLong is the dead-letter reason of a line over max_line_bytes.
	reasonTooLong = "too_long"
)

// lineSpan is one complete line found in a lineReader's buffer, waiting to
// be copied into the batch's slab.
type lineSpan struct {
	start, end int   // value bytes are buf[start:end] ("\n" and "\r" stripped)
	off, line  int64 // Origin.Offset and Origin.Line
}

// bufferPool keeps read buffers of idle line readers, so a follow-mode
// source watching many quiet files holds only a few buffers. It is used by
// one goroutine.
type bufferPool struct {
	size int
	free [][]byte
}

func (p *bufferPool) get() []byte {
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return b
	}
	return make([]byte, p.size)
}

func (p *bufferPool) put(b []byte) {
	if len(p.free) < 4 {
		p.free = append(p.free, b)
	}
}

// lineReader splits a byte stream into newline-terminated records. It
// reads into a large reused buffer and copies each group of complete lines
// into one freshly allocated slab, so record Values never alias the buffer
// and the read path costs a few allocations per batch, none per line.
//
// Its state (offset, line, skip) always describes the first byte not yet
// returned in a record: it is exactly what a checkpoint must store. A
// lineReader is used by one goroutine.
type lineReader struct {
	kind      string           // error prefix: "file", "stdin"
	name      string           // Origin.Name
	split     string           // Record.Split
	component string           // DeadLetter.Component
	source    int              // Record.Source
	now       func() time.Time // Record.Time
	maxLine   int              // longest value accepted, in bytes
	maxBuf    int              // the buffer never grows beyond this

	buf        []byte // nil while released; see release
	start, end int    // unconsumed bytes are buf[start:end]
	carry      []byte // unconsumed bytes kept while buf is released

	offset  int64 // stream offset of the first unconsumed byte
	line    int64 // 1-based number of the line starting at offset; 0: unknown
	skip    bool  // discard everything up to and including the next '\n'
	readPos int64 // stream offset just past the last byte read from the reader

	pendingErr error // an error that came with data, reported on the next read
	spans      []lineSpan
}

func newLineReader(kind, name, component string, source int, now func() time.Time, maxLine, bufSize int) lineReader {
	return lineReader{
		kind: kind, name: name, component: component, source: source, now: now,
		maxLine: maxLine, maxBuf: max(bufSize, maxLine+2), line: 1,
	}
}

// reset starts the reader over at a stream offset, dropping buffered bytes.
func (lr *lineReader) reset(offset, line int64, skip bool) {
	lr.start, lr.end = 0, 0
	lr.carry = nil
	lr.offset, lr.line, lr.skip, lr.readPos = offset, line, skip, offset
	lr.pendingErr = nil
}

// buffered reports how many read bytes are not yet consumed.
func (lr *lineReader) buffered() int { return lr.end - lr.start + len(lr.carry) }

// acquire makes sure the reader holds a buffer, restoring carried bytes.
func (lr *lineReader) acquire(p *bufferPool) {
	if lr.buf != nil {
		return
	}
	lr.buf = p.get()
	if len(lr.buf) < len(lr.carry) { // cannot happen: carry ≤ maxLine+1 < maxBuf
		lr.buf = make([]byte, len(lr.carry))
	}
	lr.start, lr.end = 0, copy(lr.buf, lr.carry)
	lr.carry = nil
}

// release gives the buffer back to p, keeping a copy of unconsumed bytes
// (an incomplete last line) in carry.
func (lr *lineReader) release(p *bufferPool) {
	if lr.buf == nil {
		return
	}
	if lr.end > lr.start {
		lr.carry = bytes.Clone(lr.buf[lr.start:lr.end])
	}
	p.put(lr.buf)
	lr.buf, lr.start, lr.end = nil, 0, 0
}

// read appends records from r to b until b holds max records or r has no
// more data for now. With greedy false it returns as soon as a read has
// produced at least one record or dead letter, so a reader that blocks
// (a pipe) delivers what it has. eof reports that r returned io.EOF with
// every complete line consumed; an incomplete last line stays buffered
// (see flushPartial). The buffer must be acquired.
//
// Lines found are collected as spans of the buffer and copied out once,
// when read returns or before the buffer is compacted, so a batch usually
// costs one slab.
func (lr *lineReader) read(r io.Reader, b *pipeline.Batch, max int, greedy bool) (eof bool, err error) {
	defer lr.emit(b)
	got := 0
	for {
		got += lr.scan(b, max-len(b.Records))
		if len(b.Records)+len(lr.spans) >= max || (!greedy && got > 0) {
			return false, nil
		}
		got += lr.makeRoom(b)
		if err := lr.pendingErr; err != nil {
			lr.pendingErr = nil
			return err == io.EOF, ignoreEOF(err)
		}
		n, err := r.Read(lr.buf[lr.end:])
		lr.end += n
		lr.readPos += int64(n)
		switch {
		case n > 0 && err != nil:
			lr.pendingErr = err
		case err == io.EOF:
			return true, nil
		case err != nil:
			return false, err
		case n == 0:
			return false, nil // no progress; the caller tries again later
		}
	}
}

func ignoreEOF(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// scan collects complete lines in the buffer as spans (until the batch
// would hold room records) and dead-letters lines that are too long. It
// returns how many records and dead letters it produced.
func (lr *lineReader) scan(b *pipeline.Batch, room int) int {
	buf := lr.buf[:lr.end]
	p, found := lr.start, 0
	for len(lr.spans) < room {
		i := bytes.IndexByte(buf[p:], '\n')
		if i < 0 {
			break
		}
		next := p + i + 1
		if lr.skip {
			lr.skip = false
		} else {
			e := p + i
			if e > p && buf[e-1] == '\r' {
				e--
			}
			if e-p > lr.maxLine {
				lr.deadLetter(b, buf[p:e], fmt.Sprintf("line of %d bytes is longer than max_line_bytes (%d)", e-p, lr.maxLine))
			} else {
				lr.spans = append(lr.spans, lineSpan{start: p, end: e, off: lr.offset, line: lr.line})
			}
			found++
		}
		lr.offset += int64(next - p)
		if lr.line > 0 {
			lr.line++
		}
		p = next
	}
	lr.start = p
	return found
}

// emit copies the collected spans into one new slab and appends their
// records to b.
func (lr *lineReader) emit(b *pipeline.Batch) {
	if len(lr.spans) == 0 {
		return
	}
	total := 0
	for _, s := range lr.spans {
		total += s.end - s.start
	}
	first, last := lr.spans[0].start, lr.spans[len(lr.spans)-1].end
	var slab []byte
	base := 0 // slab[i-base] holds buf[i] when the region is copied whole
	if region := last - first; region <= total+total/4+64 {
		// The lines lie back to back: one copy of the region, terminators
		// included, into a slab that is not zeroed first.
		slab = append([]byte(nil), lr.buf[first:last]...)
		base = first
	} else {
		// Dead-lettered lines in between would bloat the slab: copy lines.
		slab = make([]byte, 0, total)
		for i, s := range lr.spans {
			o := len(slab)
			slab = append(slab, lr.buf[s.start:s.end]...)
			lr.spans[i].start, lr.spans[i].end = o, len(slab)
		}
	}
	recs := pipeline.NewRecords(len(lr.spans))
	now := lr.now()
	for i, s := range lr.spans {
		r := recs[i]
		a, e := s.start-base, s.end-base
		r.Value = slab[a:e:e]
		r.Time = now
		r.Source = lr.source
		r.Split = lr.split
		r.Origin.Name = lr.name
		r.Origin.Offset = s.off
		r.Origin.Line = s.line
	}
	if len(b.Records) == 0 && cap(b.Records) < len(recs) {
		b.Records = recs // ours to give: saves growing b.Records
	} else {
		b.Records = append(b.Records, recs...)
	}
	lr.spans = lr.spans[:0]
}

// makeRoom prepares the buffer for another read when it holds no complete
// line: it drops bytes being skipped, dead-letters a line that is already
// too long (then skips the rest of it), and when the buffer is full, emits
// the collected lines, moves the incomplete line to the front and grows
// the buffer if that line fills it. It returns the number of dead letters
// produced.
func (lr *lineReader) makeRoom(b *pipeline.Batch) int {
	pending := lr.end - lr.start
	dead := 0
	switch {
	case lr.skip:
		lr.offset += int64(pending)
		lr.start = lr.end
	case pending > lr.maxLine+1: // longer than allowed even if it ends in "\r"
		lr.deadLetter(b, lr.buf[lr.start:lr.end], fmt.Sprintf("line is longer than max_line_bytes (%d)", lr.maxLine))
		dead++
		lr.skip = true
		lr.offset += int64(pending)
		lr.start = lr.end
	}
	if lr.end < len(lr.buf) {
		return dead // read into the free tail: collected spans stay valid
	}
	lr.emit(b)
	pending = lr.end - lr.start
	copy(lr.buf, lr.buf[lr.start:lr.end])
	lr.start, lr.end = 0, pending
	if lr.end == len(lr.buf) { // an incomplete line fills the buffer: grow it
		nb := make([]byte, min(max(2*len(lr.buf), 4096), lr.maxBuf))
		copy(nb, lr.buf[:lr.end])
		lr.buf = nb
	}
	return dead
}

// flushPartial ends the stream: an incomplete last line (no "\n") becomes
// a record, or a dead letter when too long. It reports whether a record
// or dead letter was appended. The buffer must be acquired.
func (lr *lineReader) flushPartial(b *pipeline.Batch) bool {
	pending := lr.end - lr.start
	if pending == 0 {
		return false
	}
	appended := false
	if lr.skip {
		lr.skip = false
	} else {
		e := lr.end
		if lr.buf[e-1] == '\r' {
			e--
		}
		if e-lr.start > lr.maxLine {
			lr.deadLetter(b, lr.buf[lr.start:e], fmt.Sprintf("line of %d bytes is longer than max_line_bytes (%d)", e-lr.start, lr.maxLine))
		} else {
			lr.spans = append(lr.spans, lineSpan{start: lr.start, end: e, off: lr.offset, line: lr.line})
			lr.emit(b)
		}
		appended = true
	}
	lr.offset += int64(pending)
	if lr.line > 0 {
		lr.line++
	}
	lr.start, lr.end = 0, 0
	return appended
}

// deadLetter appends a too_long dead letter holding the first bytes of v
// (a copy: the buffer is reused).
func (lr *lineReader) deadLetter(b *pipeline.Batch, v []byte, msg string) {
	keep := min(len(v), lr.maxLine, deadLinePreview)
	r := &pipeline.Record{
		Value:  bytes.Clone(v[:keep]),
		Time:   lr.now(),
		Source: lr.source,
		Origin: pipeline.Origin{Name: lr.name, Offset: lr.offset, Line: lr.line},
	}
	b.Reject(r, lr.component, reasonTooLong, fmt.Errorf("%s: %s; kept its first %d bytes", lr.kind, msg, keep))
}
