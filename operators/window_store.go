package operators

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// The firings of an output record.
const (
	firingOnTime = "on_time"
	firingLate   = "late"
	firingEarly  = "early"
)

// windowState is one window of one group: its extent, its group, the record
// count and one accumulator per stateful aggregate.
type windowState struct {
	start, end int64 // [start, end) in unix ns
	key        *groupKey
	n          int64
	accs       []accumulator
	fired      bool  // emitted on time (or late): later records re-fire it as late
	dirty      bool  // changed since it was last emitted
	dead       bool  // dropped or merged away (sessions: its timer is stale)
	timerAt    int64 // sessions: the time of its one valid timer
}

// groupKey is one group: its encoded key (see appendKey), shared by every
// window of the group as map key and sort key, and the retained group-by
// values for output.
type groupKey struct {
	enc  string
	vals []any
	refs int // fixed windows: how many windows use it
}

func newGroupKey(enc []byte, vals []value) *groupKey {
	g := &groupKey{enc: string(enc), vals: make([]any, len(vals))}
	for i := range vals {
		g.vals[i] = retain(vals[i].any())
	}
	return g
}

// cmpWindows orders windows for firing: end, then start, then group key.
func cmpWindows(a, b *windowState) int {
	if c := cmpInt64(a.end, b.end); c != 0 {
		return c
	}
	if c := cmpInt64(a.start, b.start); c != 0 {
		return c
	}
	return strings.Compare(a.key.enc, b.key.enc)
}

// emission is an output record tagged with where it belongs in the output:
// after input record seq; phase 0 for a late re-fire caused by that record,
// 1 for firings at the watermark advance that follows it; then window end,
// start and group key. Shards of a parallel window produce emissions
// independently; sorting by these tags gives the order a single instance
// produces.
type emission struct {
	seq        int32
	phase      uint8
	start, end int64
	key        string
	rec        *pipeline.Record
}

func cmpEmissions(a, b emission) int {
	if c := cmpInt64(int64(a.seq), int64(b.seq)); c != 0 {
		return c
	}
	if c := int(a.phase) - int(b.phase); c != 0 {
		return c
	}
	if c := cmpInt64(a.end, b.end); c != 0 {
		return c
	}
	if c := cmpInt64(a.start, b.start); c != 0 {
		return c
	}
	return strings.Compare(a.key, b.key)
}

// taggedDead is a dead letter tagged with its input position.
type taggedDead struct {
	seq int32
	d   pipeline.DeadLetter
}

// windowStore holds the windows of one shard.
type windowStore interface {
	// add folds the shard's current record into every window it belongs
	// to and reports false when it was too late for all of them.
	add(sh *shard, e *entry, key []byte, gvals []value) bool
	// advance fires and drops windows for watermark wm (> sh.wm).
	advance(sh *shard, wm int64)
	// finish fires every window not yet fired, then drops all state.
	finish(sh *shard)
	// windows returns every window, for snapshots.
	windows() []*windowState
	// insert puts back a window from a snapshot.
	insert(sh *shard, ws *windowState)
	// texts returns ws's start and end in pipeline.TimeLayout.
	texts(ws *windowState) (start, end string)
}

// shard is one instance of the window state: every group whose key hashes
// to it. A shard is used by one goroutine at a time.
type shard struct {
	plan  *windowPlan
	args  []valueSource // the distinct per-record aggregate arguments, owned by the shard
	vals  []value       // scratch: argument values of the current record
	skip  []bool        // scratch: per aggregate, the current record's argument is null
	sc    aggScratch
	store windowStore

	wm        int64 // the watermark as the shard has seen it
	nextEarly int64 // the next early firing point; noWatermark until the first watermark
	late      int64 // records too late for every window, since last collected

	tmpl      pipeline.Fields // output fields, in order; values overwritten per emission
	seq       int32           // position tag of emissions and dead letters
	out       []emission
	dead      []taggedDead
	sortBuf   []*windowState
	sortItems []sortItem
}

func newShard(plan *windowPlan) *shard {
	sh := &shard{plan: plan, wm: noWatermark, nextEarly: noWatermark}
	for _, e := range plan.argExprs {
		sh.args = append(sh.args, newValueSource(e).clone())
	}
	sh.vals = make([]value, len(sh.args))
	sh.skip = make([]bool, len(plan.aggs))
	sh.tmpl.Set("window_start", nil)
	sh.tmpl.Set("window_end", nil)
	for _, name := range plan.groupNames {
		sh.tmpl.Set(name, nil)
	}
	for _, a := range plan.aggs {
		sh.tmpl.Set(a.Name, nil)
	}
	sh.tmpl.Set("firing", nil)
	sh.reset()
	return sh
}

// reset drops every window.
func (sh *shard) reset() {
	switch sh.plan.kind {
	case windowSession:
		sh.store = &sessionStore{keys: map[string]*sessionKey{}, timers: minHeap[timer]{less: func(a, b timer) bool { return a.at < b.at }}}
	default:
		sh.store = &fixedStore{panes: map[int64]*pane{}, groups: map[string]*groupKey{}, nextFire: noWatermark, nextExpire: noWatermark}
	}
}

// run processes the shard's entries of one batch, interleaved with the
// batch's watermark advances: an advance at seq s comes after record s.
func (sh *shard) run(entries []entry, advances []advance, arena []byte, gvals []value, ngroups int) {
	ai := 0
	for i := range entries {
		e := &entries[i]
		for ai < len(advances) && advances[ai].seq < e.seq {
			sh.seq = advances[ai].seq
			sh.advance(advances[ai].wm)
			ai++
		}
		sh.seq = e.seq
		sh.process(e, arena[e.keyOff:e.keyEnd], gvals[e.gOff:e.gOff+int32(ngroups)])
	}
	for ; ai < len(advances); ai++ {
		sh.seq = advances[ai].seq
		sh.advance(advances[ai].wm)
	}
	clear(sh.vals)
}

// process evaluates and checks the record's aggregate arguments, then adds
// it to its windows.
func (sh *shard) process(e *entry, key []byte, gvals []value) {
	for i := range sh.args {
		if err := sh.args[i].read(e.r, &sh.vals[i]); err != nil {
			sh.reject(e.r, "aggregate", fmt.Errorf("window: aggregate argument: %w", err))
			return
		}
	}
	for i, a := range sh.plan.aggs {
		if !a.stateful() {
			continue
		}
		x, y := sh.argValues(i)
		skip, err := a.check(x, y)
		if err != nil {
			sh.reject(e.r, "aggregate", fmt.Errorf("window: aggregate %q: %w", a.Name, err))
			return
		}
		sh.skip[i] = skip
	}
	if !sh.store.add(sh, e, key, gvals) {
		sh.late++
		sh.reject(e.r, "late", fmt.Errorf("window: event time %s is more than allowed_lateness (%s) behind the watermark %s",
			formatTime(e.t), time.Duration(sh.plan.lateness), formatTime(sh.wm)))
	}
}

// argValues returns the current record's arguments of aggregate agg (nil
// where it has fewer).
func (sh *shard) argValues(agg int) (x, y *value) {
	slots := &sh.plan.argSlots[agg]
	if slots[0] >= 0 {
		x = &sh.vals[slots[0]]
	}
	if slots[1] >= 0 {
		y = &sh.vals[slots[1]]
	}
	return x, y
}

func (sh *shard) reject(r *pipeline.Record, reason string, err error) {
	d := pipeline.DeadLetter{Record: r, Reason: reason, Component: sh.plan.id}
	if err != nil {
		d.Error = err.Error()
	}
	sh.dead = append(sh.dead, taggedDead{seq: sh.seq, d: d})
}

// newWindow makes an empty window of group g.
func (sh *shard) newWindow(start, end int64, g *groupKey) *windowState {
	ws := &windowState{start: start, end: end, key: g, timerAt: noWatermark}
	if sh.plan.nStateful > 0 {
		ws.accs = make([]accumulator, 0, sh.plan.nStateful)
		for _, a := range sh.plan.aggs {
			if a.stateful() {
				ws.accs = append(ws.accs, a.newAccumulator())
			}
		}
	}
	return ws
}

// apply folds the current record (its checked arguments in sh.vals) into ws.
func (sh *shard) apply(ws *windowState, t int64) {
	ws.n++
	ws.dirty = true
	for i := range sh.plan.aggs {
		slot := sh.plan.slots[i]
		if slot < 0 || sh.skip[i] {
			continue
		}
		x, y := sh.argValues(i)
		ws.accs[slot].add(x, y, t, &sh.sc)
	}
}

// mergeWindow folds o (a later window of the same group) into ws.
func (sh *shard) mergeWindow(ws, o *windowState) {
	ws.n += o.n
	ws.dirty = ws.dirty || o.dirty
	for i := range ws.accs {
		ws.accs[i].merge(o.accs[i], &sh.sc)
	}
	o.dead = true
}

// emit appends ws's current result as an output record. r, when not nil,
// is the zeroed record to fill (emitSorted allocates them in blocks).
func (sh *shard) emit(ws *windowState, firing string, phase uint8, r *pipeline.Record) {
	p := sh.plan
	if r == nil {
		r = new(pipeline.Record)
	}
	r.Time = time.Unix(0, ws.end).UTC()
	// The output fields are filled in a template and copied with one
	// allocation; every name is already there, so Set never appends.
	t := &sh.tmpl
	start, end := sh.store.texts(ws)
	t.Set("window_start", start)
	t.Set("window_end", end)
	for i, name := range p.groupNames {
		t.Set(name, ws.key.vals[i])
	}
	for i, a := range p.aggs {
		if slot := p.slots[i]; slot >= 0 {
			t.Set(a.Name, ws.accs[slot].result())
		} else {
			t.Set(a.Name, ws.n)
		}
	}
	t.Set("firing", firing)
	*r.SetFields() = t.Clone()
	ws.dirty = false
	if firing != firingEarly {
		ws.fired = true
	}
	sh.out = append(sh.out, emission{seq: sh.seq, phase: phase, start: ws.start, end: ws.end, key: ws.key.enc, rec: r})
}

// emitSorted emits windows in firing order.
func (sh *shard) emitSorted(list []*windowState, firing string) {
	if len(list) == 0 {
		return
	}
	sh.sortWindows(list)
	recs := pipeline.NewRecords(len(list))
	for i, ws := range list {
		sh.emit(ws, firing, 1, recs[i])
	}
}

// sortItem is a window with the first 16 bytes of its key held inline, so
// that sorting many windows rarely follows a pointer.
type sortItem struct {
	end, start int64
	p0, p1     uint64
	ws         *windowState
}

// sortWindows sorts list in firing order (cmpWindows).
func (sh *shard) sortWindows(list []*windowState) {
	if len(list) < 16 {
		slices.SortFunc(list, cmpWindows)
		return
	}
	items := sh.sortItems[:0]
	for _, ws := range list {
		var pfx [16]byte
		copy(pfx[:], ws.key.enc)
		items = append(items, sortItem{end: ws.end, start: ws.start, p0: binary.BigEndian.Uint64(pfx[:8]), p1: binary.BigEndian.Uint64(pfx[8:]), ws: ws})
	}
	slices.SortFunc(items, func(a, b sortItem) int {
		switch {
		case a.end != b.end:
			return cmpInt64(a.end, b.end)
		case a.start != b.start:
			return cmpInt64(a.start, b.start)
		case a.p0 != b.p0:
			return cmpUint64(a.p0, b.p0)
		case a.p1 != b.p1:
			return cmpUint64(a.p1, b.p1)
		}
		return strings.Compare(a.ws.key.enc, b.ws.key.enc)
	})
	for i := range items {
		list[i] = items[i].ws
	}
	clear(items)
	sh.sortItems = items[:0]
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// advance moves the shard's watermark to wm, firing what it passes.
func (sh *shard) advance(wm int64) {
	if wm <= sh.wm {
		return
	}
	sh.wm = wm
	sh.store.advance(sh, wm)
}

// earlyPoint reports whether wm passed an early firing point, and the
// latest one it passed. The first watermark only sets the grid: no point
// has been passed before it.
func (sh *shard) earlyPoint(wm int64) (int64, bool) {
	e := sh.plan.early
	if e <= 0 {
		return 0, false
	}
	point := floorDiv(wm, e) * e
	if sh.nextEarly == noWatermark {
		sh.nextEarly = point + e
		return 0, false
	}
	if wm < sh.nextEarly {
		return 0, false
	}
	sh.nextEarly = point + e
	return point, true
}

// finish fires every open window (on time) and drops all state.
func (sh *shard) finish() {
	sh.store.finish(sh)
	sh.reset()
}

// floorDiv is ⌊a/b⌋ for b > 0, also for negative a.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// pane is one fixed window extent [start, end) with the windows of every
// group that has records in it. All its windows fire together.
type pane struct {
	start, end         int64
	groups             map[string]*windowState // by groupKey.enc
	fired              bool                    // the watermark passed end
	startText, endText string                  // formatted on first use
}

// fixedStore holds tumbling and hopping windows: panes by start, and the
// groups they use (interned, reference-counted).
type fixedStore struct {
	panes      map[int64]*pane
	order      []*pane // by start (hence by end: every pane has the same size)
	last       *pane   // the pane of the previous lookup
	groups     map[string]*groupKey
	nextFire   int64 // smallest end of an unfired pane; noWatermark: none
	nextExpire int64 // smallest end+lateness of a pane; noWatermark: none
}

func (fs *fixedStore) pane(sh *shard, start, end int64) *pane {
	if p := fs.last; p != nil && p.start == start {
		return p
	}
	p := fs.panes[start]
	if p == nil {
		p = &pane{start: start, end: end, groups: map[string]*windowState{}, fired: sh.wm != noWatermark && end <= sh.wm}
		fs.panes[start] = p
		i, _ := slices.BinarySearchFunc(fs.order, start, func(q *pane, s int64) int { return cmpInt64(q.start, s) })
		fs.order = slices.Insert(fs.order, i, p)
		if !p.fired && (fs.nextFire == noWatermark || end < fs.nextFire) {
			fs.nextFire = end
		}
		if x := end + sh.plan.lateness; fs.nextExpire == noWatermark || x < fs.nextExpire {
			fs.nextExpire = x
		}
	}
	fs.last = p
	return p
}

func (fs *fixedStore) texts(ws *windowState) (string, string) {
	p := fs.panes[ws.start]
	if p == nil { // not reached: emitted windows are in a pane
		return formatTime(ws.start), formatTime(ws.end)
	}
	if p.startText == "" {
		p.startText, p.endText = formatTime(p.start), formatTime(p.end)
	}
	return p.startText, p.endText
}

func (fs *fixedStore) group(key []byte, gvals []value) *groupKey {
	if g, ok := fs.groups[string(key)]; ok {
		return g
	}
	g := newGroupKey(key, gvals)
	fs.groups[g.enc] = g
	return g
}

func (fs *fixedStore) add(sh *shard, e *entry, key []byte, gvals []value) bool {
	size, slide, lateness := sh.plan.size, sh.plan.slide, sh.plan.lateness
	// The windows that contain t start at multiples of slide in (t-size, t].
	lastStart := floorDiv(e.t, slide) * slide
	start := lastStart
	for start-slide > e.t-size {
		start -= slide
	}
	accepted := false
	for ; start <= lastStart; start += slide {
		end := start + size
		if sh.wm != noWatermark && end+lateness <= sh.wm {
			continue // expired: its state is gone
		}
		p := fs.pane(sh, start, end)
		ws := p.groups[string(key)]
		if ws == nil {
			g := fs.group(key, gvals)
			g.refs++
			ws = sh.newWindow(start, end, g)
			p.groups[g.enc] = ws
		}
		sh.apply(ws, e.t)
		if p.fired {
			sh.emit(ws, firingLate, 0, nil)
		}
		accepted = true
	}
	return accepted
}

func (fs *fixedStore) advance(sh *shard, wm int64) {
	if fs.nextFire != noWatermark && fs.nextFire <= wm {
		fs.nextFire = noWatermark
		for _, p := range fs.order {
			if p.fired {
				continue
			}
			if p.end > wm {
				fs.nextFire = p.end
				break
			}
			p.fired = true
			sh.emitSorted(fs.collect(sh, p, false), firingOnTime)
		}
	}
	if point, ok := sh.earlyPoint(wm); ok {
		for _, p := range fs.order {
			if p.start >= point {
				break
			}
			if !p.fired {
				sh.emitSorted(fs.collect(sh, p, true), firingEarly)
			}
		}
	}
	if fs.nextExpire != noWatermark && fs.nextExpire <= wm {
		n := 0
		for _, p := range fs.order {
			if p.end+sh.plan.lateness > wm {
				break
			}
			fs.drop(p)
			n++
		}
		fs.order = slices.Delete(fs.order, 0, n)
		fs.nextExpire = noWatermark
		if len(fs.order) > 0 {
			fs.nextExpire = fs.order[0].end + sh.plan.lateness
		}
	}
}

// collect lists a pane's windows (only the changed ones when dirtyOnly)
// in the shard's sort buffer.
func (fs *fixedStore) collect(sh *shard, p *pane, dirtyOnly bool) []*windowState {
	list := sh.sortBuf[:0]
	for _, ws := range p.groups {
		if !dirtyOnly || ws.dirty {
			list = append(list, ws)
		}
	}
	sh.sortBuf = list
	return list
}

func (fs *fixedStore) drop(p *pane) {
	for _, ws := range p.groups {
		ws.dead = true
		if ws.key.refs--; ws.key.refs == 0 {
			delete(fs.groups, ws.key.enc)
		}
	}
	delete(fs.panes, p.start)
	if fs.last == p {
		fs.last = nil
	}
}

func (fs *fixedStore) finish(sh *shard) {
	for _, p := range fs.order {
		if !p.fired {
			p.fired = true
			sh.emitSorted(fs.collect(sh, p, false), firingOnTime)
		}
	}
}

func (fs *fixedStore) windows() []*windowState {
	var out []*windowState
	for _, p := range fs.order {
		for _, ws := range p.groups {
			out = append(out, ws)
		}
	}
	return out
}

func (fs *fixedStore) insert(sh *shard, ws *windowState) {
	p := fs.pane(sh, ws.start, ws.end)
	p.fired = ws.fired
	if g, ok := fs.groups[ws.key.enc]; ok {
		ws.key = g
	} else {
		fs.groups[ws.key.enc] = ws.key
	}
	ws.key.refs++
	p.groups[ws.key.enc] = ws
	fs.nextFire = noWatermark
	for _, q := range fs.order {
		if !q.fired {
			fs.nextFire = q.end
			break
		}
	}
}

// sessionKey is one group's sessions, disjoint and sorted by start.
type sessionKey struct {
	g  *groupKey
	ws []*windowState
}

// sessionStore holds session windows: per group a list of sessions, and a
// timer heap with one valid timer per session (the session's timerAt;
// others are stale and skipped).
type sessionStore struct {
	keys   map[string]*sessionKey
	timers minHeap[timer] // by time
}

type timer struct {
	at int64
	ws *windowState
}

func (ss *sessionStore) texts(ws *windowState) (string, string) {
	return formatTime(ws.start), formatTime(ws.end)
}

func (ss *sessionStore) schedule(ws *windowState, at int64) {
	if ws.timerAt == at {
		return
	}
	ws.timerAt = at
	ss.timers.push(timer{at: at, ws: ws})
}

func (ss *sessionStore) add(sh *shard, e *entry, key []byte, gvals []value) bool {
	gap, lateness := sh.plan.gap, sh.plan.lateness
	lo, hi := e.t, e.t+gap
	sk := ss.keys[string(key)]
	first, last := -1, -1
	start, end := lo, hi
	if sk != nil {
		for i, ws := range sk.ws {
			if ws.start < hi && lo < ws.end {
				if first < 0 {
					first = i
				}
				last = i
				start, end = min(start, ws.start), max(end, ws.end)
			}
		}
	}
	if sh.wm != noWatermark && end+lateness <= sh.wm {
		return false
	}
	if sk == nil {
		sk = &sessionKey{g: newGroupKey(key, gvals)}
		ss.keys[sk.g.enc] = sk
	}
	var ws *windowState
	if first < 0 {
		ws = sh.newWindow(lo, hi, sk.g)
		i, _ := slices.BinarySearchFunc(sk.ws, lo, func(w *windowState, s int64) int { return cmpInt64(w.start, s) })
		sk.ws = slices.Insert(sk.ws, i, ws)
		ss.schedule(ws, hi)
	} else {
		ws = sk.ws[first]
		for _, o := range sk.ws[first+1 : last+1] {
			sh.mergeWindow(ws, o)
		}
		sk.ws = slices.Delete(sk.ws, first+1, last+1)
		ws.start, ws.end = start, end
		if ws.fired && (sh.wm == noWatermark || end > sh.wm) {
			ws.fired = false // reopened: it grew past the watermark
			ss.schedule(ws, end)
		}
	}
	sh.apply(ws, e.t)
	if sh.wm != noWatermark && ws.end <= sh.wm {
		sh.emit(ws, firingLate, 0, nil)
	}
	return true
}

func (ss *sessionStore) advance(sh *shard, wm int64) {
	fire := sh.sortBuf[:0]
	for ss.timers.len() > 0 && ss.timers.top().at <= wm {
		t := ss.timers.pop()
		ws := t.ws
		if ws.dead || t.at != ws.timerAt {
			continue
		}
		ws.timerAt = noWatermark
		switch {
		case !ws.fired && ws.end <= wm:
			fire = append(fire, ws)
		case !ws.fired:
			ss.schedule(ws, ws.end)
		case ws.end+sh.plan.lateness <= wm:
			ss.drop(ws)
		default:
			ss.schedule(ws, ws.end+sh.plan.lateness)
		}
	}
	sh.emitSorted(fire, firingOnTime)
	for _, ws := range fire {
		if ws.end+sh.plan.lateness <= wm {
			ss.drop(ws)
		} else {
			ss.schedule(ws, ws.end+sh.plan.lateness)
		}
	}
	clear(fire)
	sh.sortBuf = fire[:0]
	if point, ok := sh.earlyPoint(wm); ok {
		early := sh.sortBuf[:0]
		for _, sk := range ss.keys {
			for _, ws := range sk.ws {
				if !ws.fired && ws.dirty && ws.start < point {
					early = append(early, ws)
				}
			}
		}
		sh.emitSorted(early, firingEarly)
		clear(early)
		sh.sortBuf = early[:0]
	}
}

func (ss *sessionStore) drop(ws *windowState) {
	ws.dead = true
	sk := ss.keys[ws.key.enc]
	if sk == nil {
		return
	}
	if i := slices.Index(sk.ws, ws); i >= 0 {
		sk.ws = slices.Delete(sk.ws, i, i+1)
	}
	if len(sk.ws) == 0 {
		delete(ss.keys, ws.key.enc)
	}
}

func (ss *sessionStore) finish(sh *shard) {
	var list []*windowState
	for _, sk := range ss.keys {
		for _, ws := range sk.ws {
			if !ws.fired {
				list = append(list, ws)
			}
		}
	}
	sh.emitSorted(list, firingOnTime)
}

func (ss *sessionStore) windows() []*windowState {
	var out []*windowState
	for _, sk := range ss.keys {
		out = append(out, sk.ws...)
	}
	return out
}

func (ss *sessionStore) insert(sh *shard, ws *windowState) {
	sk := ss.keys[ws.key.enc]
	if sk == nil {
		sk = &sessionKey{g: ws.key}
		ss.keys[ws.key.enc] = sk
	}
	ws.key = sk.g
	i, _ := slices.BinarySearchFunc(sk.ws, ws.start, func(w *windowState, s int64) int { return cmpInt64(w.start, s) })
	sk.ws = slices.Insert(sk.ws, i, ws)
	if ws.fired {
		ss.schedule(ws, ws.end+sh.plan.lateness)
	} else {
		ss.schedule(ws, ws.end)
	}
}
