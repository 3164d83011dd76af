package crashgen

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Expected is what the committed output of a configuration must hold,
// computed from its input by the rules of the YAML it runs.
type Expected struct {
	// Sinks holds, per sink, each item it must write and how often: a
	// record as "i=17 k=u3" (plus " j=51" after the map, " d=2026-01-02"
	// under a date path), a window result as
	// "w=<start> k=u3 on_time n=4 s=.. mx=.. mn=..". k and d are where the
	// item was found (file name, partition directory, column), so an item
	// in the wrong place is an unexpected item.
	Sinks []map[string]int
	// Dead holds each dead letter, "<component> <reason> <item>", where
	// item is "i=17" for an input record and "w=<start> <firing> n=<n>"
	// for a window result.
	Dead map[string]int
	// Windows lists, per window and key ("w=<start> k=<k>"), the window
	// results in the order they fire.
	Windows map[string][]string
	// ByLine lists, per input line, every item and dead letter it causes
	// ("s<j> <item>" or "dead <dead letter>"), for inputs that a kill may
	// cut (stdin). Only without a window.
	ByLine map[int][]string
}

// Total is how many items and dead letters there are in all.
func (e *Expected) Total() int {
	n := 0
	for _, s := range e.Sinks {
		for _, c := range s {
			n += c
		}
	}
	for _, c := range e.Dead {
		n += c
	}
	return n
}

// nullKey stands for a missing k.
const nullKey = "<null>"

// outRecord is a record as it reaches the sinks.
type outRecord struct {
	line   int // input line (records only)
	window bool
	i      int
	k      string // nullKey when absent
	hasTS  bool
	ts     int64
	// window results
	start         int64
	firing        string
	n, mx, mn, sm int64
}

func (r outRecord) item(withJ bool) string {
	if r.window {
		return fmt.Sprintf("w=%s k=%s %s n=%d s=%d mx=%d mn=%d", formatMS(r.start), r.k, r.firing, r.n, r.sm, r.mx, r.mn)
	}
	s := fmt.Sprintf("i=%d k=%s", r.i, r.k)
	if withJ {
		s += fmt.Sprintf(" j=%d", 3*r.i)
	}
	return s
}

func (r outRecord) deadItem() string {
	if r.window {
		return fmt.Sprintf("w=%s %s n=%d", formatMS(r.start), r.firing, r.n)
	}
	return fmt.Sprintf("i=%d", r.i)
}

func formatMS(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// Expect computes the expected output of the configuration.
func (c *Config) Expect() *Expected {
	e := &Expected{Dead: map[string]int{}, Windows: map[string][]string{}, ByLine: map[int][]string{}}
	for range c.Sinks {
		e.Sinks = append(e.Sinks, map[string]int{})
	}
	dead := func(line int, comp, reason, item string) {
		d := comp + " " + reason + " " + item
		e.Dead[d]++
		if line >= 0 {
			e.ByLine[line] = append(e.ByLine[line], "dead "+d)
		}
	}
	var recs []outRecord
	for _, l := range c.Input() {
		if l.Kind == LineMalformed {
			dead(l.I, c.component(opParse), "parse", fmt.Sprintf("i=%d", l.I))
			continue
		}
		if c.FilterMod > 0 && l.I%c.FilterMod == c.FilterRem {
			continue
		}
		r := outRecord{line: l.I, i: l.I, k: l.K, hasTS: true, ts: l.TS}
		if l.Kind == LineNoKey {
			r.k = nullKey
		}
		if l.Kind == LineNoTS {
			r.hasTS = false
		}
		recs = append(recs, r)
	}
	if c.Window != nil {
		recs = c.window(recs, func(r outRecord, reason string) { dead(-1, c.component(opWindow), reason, r.deadItem()) }, e)
	}
	for _, r := range recs {
		line := r.line
		if r.window {
			line = -1
		}
		for j, s := range c.Sinks {
			comp := sinkComponent(j, s.Kind)
			if s.Kind != SinkPostgres && r.k == nullKey || s.Kind == SinkFile && s.DatePath && !r.hasTS {
				dead(line, comp, "schema", r.deadItem())
				continue
			}
			item := r.item(c.Map && !r.window)
			if s.Kind == SinkFile && s.DatePath {
				item += " d=" + formatMS(r.ts)[:10]
			}
			e.Sinks[j][item]++
			if line >= 0 {
				e.ByLine[line] = append(e.ByLine[line], fmt.Sprintf("s%d %s", j, item))
			}
		}
	}
	if c.Window != nil {
		e.ByLine = nil
		for j, s := range c.Sinks {
			if s.Upsert { // one row per window and key: its last result
				e.Sinks[j] = map[string]int{}
				for _, items := range e.Windows {
					e.Sinks[j][items[len(items)-1]] = 1
				}
			}
		}
	}
	return e
}

// winKey names one window of one key.
type winKey struct {
	start int64
	k     string
}

type winState struct {
	end           int64
	n, sm, mx, mn int64
	fired         bool
}

// window runs the window operator over recs, in input order, and returns
// its results in firing order; reject receives the records it
// dead-letters. Semantics (see the package doc for why no boundary is
// ever hit exactly): the watermark is the largest event time seen minus
// the watermark delay; after each record every window whose end the
// watermark reached fires on time (ordered by end, start, key); a record
// for a window whose end the watermark already reached, but not its end
// plus allowed_lateness, updates it and re-fires it at once as late; a
// record that every one of its windows refuses so is dead-lettered as
// late; a window is forgotten once the watermark reaches its end plus
// allowed_lateness; at the end of input every window that has not fired
// fires on time.
func (c *Config) window(recs []outRecord, reject func(outRecord, string), e *Expected) []outRecord {
	size, slide := int64(c.Window.Size)*1000, int64(c.Window.Slide)*1000
	delay, lateness := int64(c.Window.Watermark)*1000, int64(c.Window.Lateness)*1000
	states := map[winKey]*winState{}
	var out []outRecord
	emit := func(k winKey, st *winState, firing string) {
		r := outRecord{window: true, k: k.k, start: k.start, firing: firing, n: st.n, sm: st.sm, mx: st.mx, mn: st.mn, hasTS: true}
		out = append(out, r)
		wk := fmt.Sprintf("w=%s k=%s", formatMS(k.start), k.k)
		e.Windows[wk] = append(e.Windows[wk], r.item(false))
	}
	fireOnTime := func(ready func(*winState) bool) {
		var keys []winKey
		for k, st := range states {
			if !st.fired && ready(st) {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(a, b winKey) int {
			return cmp.Or(cmp.Compare(states[a].end, states[b].end), cmp.Compare(a.start, b.start), cmp.Compare(a.k, b.k))
		})
		for _, k := range keys {
			states[k].fired = true
			emit(k, states[k], "on_time")
		}
	}
	haveWM := false
	var maxTS, wm int64
	for _, r := range recs {
		if !r.hasTS {
			reject(r, "event_time")
			continue
		}
		t := r.ts
		last := floorDiv(t, slide) * slide
		first := last
		for first-slide > t-size {
			first -= slide
		}
		accepted := false
		for start := first; start <= last; start += slide {
			end := start + size
			if haveWM && end+lateness <= wm {
				continue
			}
			k := winKey{start, r.k}
			st := states[k]
			if st == nil {
				st = &winState{end: end, mx: int64(r.i), mn: int64(r.i)}
				states[k] = st
			}
			st.n++
			st.sm += int64(r.i)
			st.mx, st.mn = max(st.mx, int64(r.i)), min(st.mn, int64(r.i))
			if haveWM && end <= wm {
				st.fired = true
				emit(k, st, "late")
			}
			accepted = true
		}
		if !accepted {
			reject(r, "late")
		}
		if !haveWM || t > maxTS {
			maxTS = t
		}
		if !haveWM || maxTS-delay > wm {
			haveWM, wm = true, maxTS-delay
			fireOnTime(func(st *winState) bool { return st.end <= wm })
			for k, st := range states {
				if st.end+lateness <= wm {
					delete(states, k)
				}
			}
		}
	}
	fireOnTime(func(*winState) bool { return true })
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// windowItemKey is the "w=<start> k=<k>" prefix of a window item.
func windowItemKey(item string) string {
	// "w=2026-01-01T00:00:00.000Z k=u3 on_time ..."
	sp := 0
	for i := range len(item) {
		if item[i] == ' ' {
			sp++
			if sp == 2 {
				return item[:i]
			}
		}
	}
	return item
}
