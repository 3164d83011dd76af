package operators

import (
	"cmp"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// noWatermark is the watermark before any record has been seen.
const noWatermark = math.MinInt64

// watermarks tracks event-time progress per split and combines it (Flink's
// per-split watermarks, Kafka Streams' per-task stream time). A split is a
// (Record.Source, Record.Split) pair: a Kafka partition, a file, a source
// that is one split. Per split it keeps bounded out-of-orderness (the
// largest event time seen minus delay); the combined watermark is the
// minimum over the splits that hold it back, and never moves back:
//
//   - a split with records that is neither idle nor caught up holds it at
//     its own mark;
//   - a split a source announced (pipeline.SplitChange.Added) that has sent
//     no record yet holds it where it is: the records it will send must not
//     be made late by another split read ahead of it;
//   - an idle split (no record for idleTimeout, by the wall clock) and a
//     caught-up one (the source says it has nothing more to read for now)
//     do not hold it, until their next record;
//   - when no split holds it, it is the largest mark of all, so that a
//     stream that stopped, or a drained backlog, still fires its windows.
//
// The watermark advances only with records and split changes, in stream
// order. Wall-clock time enters in one place: the idle timeout.
//
// Not safe for concurrent use.
type watermarks struct {
	delay       int64         // bounded out-of-orderness, ns
	idleTimeout time.Duration // 0: splits never go idle
	inputs      []*inputMark  // sorted by (source, split)
	last        *inputMark    // the split of the previous record (fast path)
	wm          int64         // combined, monotonic; noWatermark before any record
	// changed says a split's mark or the set of splits changed since the
	// last publish.
	changed bool
}

// inputMark is the progress of one split.
type inputMark struct {
	source     int
	split      string
	max        int64 // largest event time seen; noWatermark: none yet
	idle       bool  // idle or caught up: does not hold the watermark
	lastActive time.Time
}

func newWatermarks(delay, idleTimeout time.Duration) *watermarks {
	return &watermarks{delay: int64(delay), idleTimeout: idleTimeout, wm: noWatermark}
}

func cmpInput(m *inputMark, source int, split string) int {
	return cmp.Or(cmp.Compare(m.source, source), cmp.Compare(m.split, split))
}

// find returns the index of (source, split) in inputs, or where it goes.
func (w *watermarks) find(source int, split string) (int, bool) {
	return slices.BinarySearchFunc(w.inputs, source, func(m *inputMark, s int) int { return cmpInput(m, s, split) })
}

func (w *watermarks) input(source int, split string) *inputMark {
	if l := w.last; l != nil && l.source == source && l.split == split {
		return l
	}
	i, found := w.find(source, split)
	if !found {
		w.inputs = slices.Insert(w.inputs, i, &inputMark{source: source, split: split, max: noWatermark})
		if parent := pipeline.SplitTask(split); parent != split {
			// The first sub-split of an announced split takes over its hold.
			if j, ok := w.find(source, parent); ok && w.inputs[j].max == noWatermark {
				w.inputs = slices.Delete(w.inputs, j, j+1)
				w.changed = true
			}
			i, _ = w.find(source, split)
		}
	}
	w.last = w.inputs[i]
	return w.last
}

func cmpInt(a, b int) int { return cmp.Compare(a, b) }

// observe accounts for one record with event time t from a split, received
// at wall-clock now, and reports whether the combined watermark advanced.
func (w *watermarks) observe(source int, split string, t int64, now time.Time) bool {
	m := w.input(source, split)
	m.lastActive = now
	wasIdle := m.idle
	m.idle = false
	if t <= m.max && !wasIdle {
		return false
	}
	if t > m.max {
		m.max = t
		w.changed = true
	}
	return w.recompute()
}

// splits applies a source's split change at wall-clock now and reports
// whether the combined watermark advanced.
func (w *watermarks) splits(source int, c pipeline.SplitChange, now time.Time) bool {
	w.last, w.changed = nil, true
	if c.Reset {
		w.inputs = slices.DeleteFunc(w.inputs, func(m *inputMark) bool {
			return m.source == source && !slices.Contains(c.Added, pipeline.SplitTask(m.split))
		})
	}
	for _, split := range c.Added {
		if w.hasSubSplits(source, split) {
			continue // its sub-splits (restored from a checkpoint) hold for it
		}
		m := w.input(source, split)
		m.idle, m.lastActive = false, now
	}
	for _, split := range c.CaughtUp {
		if i, ok := w.find(source, split); ok {
			w.inputs[i].idle = true
		}
	}
	for _, p := range c.Progress {
		m := w.input(source, p.Split)
		m.idle, m.lastActive = false, now
		m.max = max(m.max, p.Time.UnixNano())
	}
	for _, split := range c.Removed {
		w.inputs = slices.DeleteFunc(w.inputs, func(m *inputMark) bool {
			return m.source == source && (m.split == split || pipeline.SplitTask(m.split) == split)
		})
	}
	w.last = nil
	return w.recompute()
}

// hasSubSplits reports whether split has sub-splits ("split|sub").
func (w *watermarks) hasSubSplits(source int, split string) bool {
	return slices.ContainsFunc(w.inputs, func(m *inputMark) bool {
		return m.source == source && m.split != split && pipeline.SplitTask(m.split) == split
	})
}

// recompute recomputes the combined watermark and reports whether it
// advanced.
func (w *watermarks) recompute() bool {
	active, all := int64(math.MaxInt64), int64(noWatermark)
	holding := false
	for _, m := range w.inputs {
		if m.idle {
			if m.max != noWatermark {
				all = max(all, m.max-w.delay)
			}
			continue
		}
		holding = true
		if m.max == noWatermark {
			return false // announced, no record yet: holds the watermark where it is
		}
		mark := m.max - w.delay
		all = max(all, mark)
		active = min(active, mark)
	}
	next := all
	if holding {
		next = active
	}
	if next > w.wm {
		w.wm = next
		return true
	}
	return false
}

// tick marks splits idle whose last record (or announcement) is at least
// idleTimeout old at wall-clock now, and reports whether the combined
// watermark advanced.
func (w *watermarks) tick(now time.Time) bool {
	if w.idleTimeout <= 0 {
		return false
	}
	changed := false
	for _, m := range w.inputs {
		switch {
		case m.idle:
		case m.lastActive.IsZero():
			m.lastActive = now // restored: start timing now
		case now.Sub(m.lastActive) >= w.idleTimeout:
			m.idle = true
			changed = true
		}
	}
	return changed && w.recompute()
}

// appendState writes the watermark state (not the wall-clock times).
func (w *watermarks) appendState(s *stateWriter) {
	s.varint(w.wm)
	s.uvarint(uint64(len(w.inputs)))
	for _, m := range w.inputs {
		s.varint(int64(m.source))
		s.str(m.split)
		s.varint(m.max)
		s.bool(m.idle)
	}
}

// readState restores what appendState wrote (version 1 had no splits).
func (w *watermarks) readState(s *stateReader) {
	w.wm = s.varint()
	n := s.count()
	w.inputs, w.last, w.changed = nil, nil, true
	for range n {
		m := &inputMark{source: int(s.varint())}
		if s.version >= 2 {
			m.split = s.str()
		}
		m.max, m.idle = s.varint(), s.bool()
		if s.err != nil {
			return
		}
		if k := len(w.inputs); k > 0 && cmpInput(w.inputs[k-1], m.source, m.split) >= 0 {
			s.fail("inputs out of order")
			return
		}
		w.inputs = append(w.inputs, m)
	}
}

// splitMark is one split's own watermark (its largest event time minus
// the delay), as published for readers on other goroutines.
type splitMark struct {
	id   pipeline.SplitID
	mark int64
}

// publishedMarks holds the per-split watermarks of a watermarks as of the
// end of the operator's last call, for SplitWatermarks on another
// goroutine (the metrics reader). The operator's goroutine stores a new
// slice, never written again, when a mark or the set of splits changed;
// readers load it. One allocation per changed call (not per record) is
// what Process pays.
type publishedMarks struct {
	p atomic.Pointer[[]splitMark]
}

// publish stores w's per-split marks if they changed since the last call.
// Call it on the operator's goroutine, at the end of each call that may
// have changed them, and after w replaced the operator's watermarks.
func (p *publishedMarks) publish(w *watermarks) {
	if !w.changed {
		return
	}
	w.changed = false
	out := make([]splitMark, 0, len(w.inputs))
	for _, m := range w.inputs {
		if m.max != noWatermark {
			out = append(out, splitMark{pipeline.SplitID{Source: m.source, Split: m.split}, m.max - w.delay})
		}
	}
	p.p.Store(&out)
}

// splitWatermarks returns the published marks as a new map (see
// pipeline.SplitWatermarker). Safe for concurrent use.
func (p *publishedMarks) splitWatermarks() map[pipeline.SplitID]time.Time {
	marks := p.p.Load()
	if marks == nil {
		return map[pipeline.SplitID]time.Time{}
	}
	out := make(map[pipeline.SplitID]time.Time, len(*marks))
	for _, m := range *marks {
		out[m.id] = time.Unix(0, m.mark).UTC()
	}
	return out
}
