package operators

import (
	"math"
	"slices"
	"time"
)

// noWatermark is the watermark before any record has been seen.
const noWatermark = math.MinInt64

// watermarks tracks event-time progress per input (pipeline.Record.Source)
// and combines it: bounded out-of-orderness per input (the largest event
// time seen minus delay), the minimum over inputs that have sent records and
// are not idle. When every input that has sent records is idle, the
// combined watermark is the largest of theirs, so that a stream that stopped
// still fires its windows. The combined watermark never moves back.
//
// The watermark advances only with records, in input order. Wall-clock time
// enters in one place: an input that has sent nothing for idleTimeout
// (measured from the clock passed to touch and tick) stops holding the
// watermark back until it sends again.
//
// Not safe for concurrent use.
type watermarks struct {
	delay       int64         // bounded out-of-orderness, ns
	idleTimeout time.Duration // 0: inputs never go idle
	inputs      []*inputMark  // sorted by source index
	last        *inputMark    // the input of the previous record (fast path)
	wm          int64         // combined, monotonic; noWatermark before any record
}

// inputMark is the progress of one input.
type inputMark struct {
	source     int
	max        int64 // largest event time seen
	idle       bool
	lastActive time.Time // wall clock of its last record; zero: unknown (after Restore)
}

func newWatermarks(delay, idleTimeout time.Duration) *watermarks {
	return &watermarks{delay: int64(delay), idleTimeout: idleTimeout, wm: noWatermark}
}

func (w *watermarks) input(source int) *inputMark {
	if w.last != nil && w.last.source == source {
		return w.last
	}
	i, found := slices.BinarySearchFunc(w.inputs, source, func(m *inputMark, s int) int { return cmpInt(m.source, s) })
	if !found {
		w.inputs = slices.Insert(w.inputs, i, &inputMark{source: source, max: noWatermark})
	}
	w.last = w.inputs[i]
	return w.last
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// observe accounts for one record with event time t from source, received
// at wall-clock now, and reports whether the combined watermark advanced.
func (w *watermarks) observe(source int, t int64, now time.Time) bool {
	m := w.input(source)
	m.lastActive = now
	wasIdle := m.idle
	m.idle = false
	if t <= m.max && !wasIdle {
		return false
	}
	if t > m.max {
		m.max = t
	}
	return w.recompute()
}

// recompute recomputes the combined watermark and reports whether it
// advanced.
func (w *watermarks) recompute() bool {
	active, all := int64(math.MaxInt64), int64(noWatermark)
	anyActive := false
	for _, m := range w.inputs {
		if m.max == noWatermark {
			continue
		}
		mark := m.max - w.delay
		all = max(all, mark)
		if !m.idle {
			anyActive = true
			active = min(active, mark)
		}
	}
	next := all
	if anyActive {
		next = active
	}
	if next > w.wm {
		w.wm = next
		return true
	}
	return false
}

// tick marks inputs idle whose last record is at least idleTimeout old at
// wall-clock now, and reports whether the combined watermark advanced.
func (w *watermarks) tick(now time.Time) bool {
	if w.idleTimeout <= 0 {
		return false
	}
	changed := false
	for _, m := range w.inputs {
		switch {
		case m.idle || m.max == noWatermark:
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
		s.varint(m.max)
		s.bool(m.idle)
	}
}

// readState restores what appendState wrote.
func (w *watermarks) readState(s *stateReader) {
	w.wm = s.varint()
	n := s.count()
	w.inputs, w.last = nil, nil
	for range n {
		m := &inputMark{source: int(s.varint()), max: s.varint(), idle: s.bool()}
		if s.err != nil {
			return
		}
		if len(w.inputs) > 0 && w.inputs[len(w.inputs)-1].source >= m.source {
			s.fail("inputs out of order")
			return
		}
		w.inputs = append(w.inputs, m)
	}
}
