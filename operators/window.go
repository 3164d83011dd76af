package operators

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("window", "event-time tumbling, hopping or session windows with aggregates", func() *WindowConfig { return &WindowConfig{} })
}

// WindowConfig is the `window:` operator:
//
//   - window:
//     tumbling: 1m          # or hopping: {size: 10s, slide: 2s} (alias sliding), or session: {gap: 30s} (or session: 30s)
//     event_time: ts        # expression; default: the record's Time
//     watermark: 5s         # bounded out-of-orderness (default 0)
//     allowed_lateness: 1m  # late records re-fire their window (default 0)
//     idle_timeout: 30s     # wall clock; default off
//     early_every: 10s      # event-time early firings; default off
//     parallelism: 1        # keyed parallel instances (default 1)
//     group_by: [service, 'lower(host)', {region: 'geo.region'}]
//     aggregate:
//     errors: count()
//     p99: quantile(latency_ms, 0.99)
//
// A group_by item is a field name (the output field has that name; any
// name as $["name"], such as $["service.name"]), an expression (the output
// field is named by its text), or a mapping of output names to
// expressions. The aggregate functions are listed with
// Aggregate. Each output record has, in order, window_start and window_end
// (RFC 3339 UTC with milliseconds), the group-by fields, the aggregates,
// and firing (on_time, late or early); see Window for the semantics.
type WindowConfig struct {
	// Kind is "tumbling", "hopping" or "session".
	Kind string
	// Size and Slide are the window length and step (tumbling: Slide =
	// Size); Gap is the session gap.
	Size, Slide, Gap time.Duration
	// EventTime computes a record's event time; nil means the record's Time.
	EventTime *pipeline.Expr
	// Watermark is the bounded out-of-orderness: the watermark trails the
	// largest event time seen on an input by this much.
	Watermark time.Duration
	// AllowedLateness is how long after the watermark passed a window's
	// end the window is kept, re-firing for each late record.
	AllowedLateness time.Duration
	// IdleTimeout (0: off) is how long an input may send nothing (wall
	// clock) before it stops holding the watermark back.
	IdleTimeout time.Duration
	// EarlyEvery (0: off) fires open windows early, with firing "early",
	// each time the watermark passes a multiple of it.
	EarlyEvery time.Duration
	// Parallelism is the number of keyed instances (1 to 64).
	Parallelism int
	// GroupBy are the grouping values, with their output names.
	GroupBy []GroupField
	// Aggregates are the aggregate calls, in output order.
	Aggregates []*Aggregate
}

// GroupField is one group-by value: an output field name and the expression
// that computes it.
type GroupField struct {
	Name string
	Expr *pipeline.Expr
}

// reservedFields are the output fields every window record has.
var reservedFields = []string{"window_start", "window_end", "firing"}

// windowKeys are the keys of a window mapping.
var windowKeys = []string{"tumbling", "hopping", "sliding", "session", "event_time",
	"watermark", "allowed_lateness", "idle_timeout", "early_every", "parallelism", "group_by", "aggregate"}

// UnmarshalYAML decodes the window mapping, reporting each problem at its
// position.
func (c *WindowConfig) UnmarshalYAML(n ast.Node) error {
	pairs, err := yamlOptions(n, "window", windowKeys...)
	if err != nil {
		return err
	}
	if c.Parallelism == 0 {
		c.Parallelism = 1
	}
	var kindNode ast.Node
	kindKey := "" // the key as written (sliding, for hopping)
	setKind := func(p yamlPair, kind string) error {
		if c.Kind != "" {
			return configErr(p.kn, "window: %s and %s: choose one window kind", kindKey, p.key)
		}
		c.Kind, kindNode, kindKey = kind, p.kn, p.key
		return nil
	}
	// Every key is decoded, and every problem reported, not only the first.
	var errs pipeline.ConfigErrors
	decode := func(p yamlPair) (err error) {
		switch p.key {
		case "tumbling":
			if err := setKind(p, "tumbling"); err != nil {
				return err
			}
			if c.Size, err = p.duration("window: tumbling", true); err != nil {
				return err
			}
			c.Slide = c.Size
		case "hopping", "sliding": // sliding: Flink's name for the same windows
			if err := setKind(p, "hopping"); err != nil {
				return err
			}
			if err := c.decodeHopping(p); err != nil {
				return err
			}
		case "session":
			if err := setKind(p, "session"); err != nil {
				return err
			}
			if err := c.decodeSession(p); err != nil {
				return err
			}
		case "event_time":
			if c.EventTime, err = p.expr("window: event_time"); err != nil {
				return err
			}
		case "watermark":
			c.Watermark, err = p.duration("window: watermark", false)
		case "allowed_lateness":
			c.AllowedLateness, err = p.duration("window: allowed_lateness", false)
		case "idle_timeout":
			c.IdleTimeout, err = p.duration("window: idle_timeout", false)
		case "early_every":
			c.EarlyEvery, err = p.duration("window: early_every", true)
		case "parallelism":
			c.Parallelism, err = p.integer("window: parallelism", 1, 64)
		case "group_by":
			err = c.decodeGroupBy(p)
		case "aggregate":
			err = c.decodeAggregates(p)
		default:
			return configErr(p.kn, "window: unknown key %q (want %s)", p.key, knownKeys(windowKeys...))
		}
		return err
	}
	for _, p := range pairs {
		errs = appendConfigErr(errs, decode(p), p.kn)
	}
	if len(errs) > 0 {
		return errs
	}
	if c.Kind == "" {
		return configErr(n, "window: needs one of tumbling, hopping or session")
	}
	if len(c.Aggregates) == 0 {
		return configErr(n, "window: needs `aggregate:` with at least one `name: call`, such as `n: count()`")
	}
	if c.EarlyEvery > 0 && c.Kind != "session" && c.EarlyEvery >= c.Size {
		return configErr(kindNode, "window: early_every (%s) must be shorter than the window (%s)", c.EarlyEvery, c.Size)
	}
	return c.checkNames()
}

func (c *WindowConfig) decodeHopping(p yamlPair) error {
	label := "window: " + p.key // hopping, or its alias sliding
	pairs, err := yamlOptions(p.value, label, "size", "slide")
	if err != nil {
		return err
	}
	var slideNode ast.Node
	for _, q := range pairs {
		switch q.key {
		case "size":
			c.Size, err = q.duration(label+": size", true)
		case "slide":
			c.Slide, err = q.duration(label+": slide", true)
			slideNode = q.at()
		default:
			err = configErr(q.kn, "%s: unknown key %q (want size, slide)", label, q.key)
		}
		if err != nil {
			return err
		}
	}
	switch {
	case c.Size == 0 || c.Slide == 0:
		return configErr(p.at(), "%s: needs size and slide, such as {size: 10s, slide: 2s}", label)
	case c.Slide > c.Size:
		return configErr(slideNode, "%s: slide (%s) must not exceed size (%s), or records would fall between windows", label, c.Slide, c.Size)
	case c.Size/c.Slide > 1000:
		return configErr(slideNode, "%s: size/slide is %d; at most 1000 windows may overlap", label, c.Size/c.Slide)
	}
	return nil
}

func (c *WindowConfig) decodeSession(p yamlPair) error {
	if _, isMap := p.value.(*ast.MappingNode); !isMap {
		if _, isMV := p.value.(*ast.MappingValueNode); !isMV {
			var err error
			c.Gap, err = p.duration("window: session", true)
			return err
		}
	}
	pairs, err := yamlOptions(p.value, "window: session", "gap")
	if err != nil {
		return err
	}
	for _, q := range pairs {
		if q.key != "gap" {
			return configErr(q.kn, "window: session: unknown key %q (want gap)", q.key)
		}
		if c.Gap, err = q.duration("window: session: gap", true); err != nil {
			return err
		}
	}
	if c.Gap == 0 {
		return configErr(p.at(), "window: session: needs gap, such as {gap: 30s}")
	}
	return nil
}

func (c *WindowConfig) decodeGroupBy(p yamlPair) error {
	var items []ast.Node
	switch v := p.value.(type) {
	case nil:
		return nil
	case *ast.SequenceNode:
		items = v.Values
	default:
		items = []ast.Node{v}
	}
	for _, item := range items {
		item = pipeline.UnwrapValue(item)
		switch item.(type) {
		case *ast.MappingNode, *ast.MappingValueNode:
			pairs, err := yamlMapping(item, "window: group_by")
			if err != nil {
				return err
			}
			for _, q := range pairs {
				e, err := q.expr(fmt.Sprintf("window: group_by %q", q.key))
				if err != nil {
					return err
				}
				c.GroupBy = append(c.GroupBy, GroupField{Name: q.key, Expr: e})
			}
		default:
			e, err := compileNodeExpr(item, "window: group_by")
			if err != nil {
				return err
			}
			name, ok := e.FieldName() // service, $["service.name"]
			if !ok {
				name = strings.TrimSpace(e.Source)
			}
			c.GroupBy = append(c.GroupBy, GroupField{Name: name, Expr: e})
		}
	}
	return nil
}

func (c *WindowConfig) decodeAggregates(p yamlPair) error {
	pairs, err := yamlMapping(p.value, "window: aggregate")
	if err != nil {
		return err
	}
	var errs pipeline.ConfigErrors
	for _, q := range pairs {
		text, pos, ok := scalarTextPos(q.value)
		if !ok {
			errs = append(errs, configErr(q.at(), "window: aggregate %q: want a call such as count() or sum(bytes), got %s", q.key, yamlDescribe(q.value)))
			continue
		}
		a, err := parseAggregate(q.key, text, pos)
		if err != nil {
			errs = appendConfigErr(errs, err, q.kn)
			continue
		}
		a.namePos = pipeline.NodePos(q.kn)
		c.Aggregates = append(c.Aggregates, a)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// checkNames refuses two output fields with the same name.
func (c *WindowConfig) checkNames() error {
	seen := map[string]string{}
	for _, r := range reservedFields {
		seen[r] = "a field every window record has"
	}
	for _, g := range c.GroupBy {
		if prev, dup := seen[g.Name]; dup {
			return &pipeline.ConfigError{Pos: g.Expr.Pos, Msg: fmt.Sprintf("window: group_by %q: output field name already used (%s)", g.Name, prev)}
		}
		seen[g.Name] = "a group_by field"
	}
	for _, a := range c.Aggregates {
		if prev, dup := seen[a.Name]; dup {
			return &pipeline.ConfigError{Pos: a.namePos, Msg: fmt.Sprintf("window: aggregate %q: output field name already used (%s)", a.Name, prev)}
		}
		seen[a.Name] = "an aggregate"
	}
	return nil
}

// Validate implements pipeline.Validator; it catches a `window:` with no
// settings at all (the decoder checks everything else, with positions).
func (c *WindowConfig) Validate() error {
	if c.Kind == "" {
		return fmt.Errorf("needs one of tumbling, hopping or session, and an aggregate list")
	}
	return nil
}

type windowKind uint8

const (
	windowFixed windowKind = iota // tumbling and hopping
	windowSession
)

// windowPlan is the immutable, compiled form of a configuration that every
// shard shares.
type windowPlan struct {
	id          string
	kind        windowKind
	size, slide int64 // fixed windows, ns
	gap         int64 // sessions, ns
	lateness    int64
	early       int64
	groupNames  []string
	aggs        []*Aggregate
	slots       []int            // per aggregate: its accumulator index, -1 for count()
	argExprs    []*pipeline.Expr // the distinct per-record arguments (by text), read once per record
	argSlots    [][2]int         // per aggregate: indexes of its arguments in argExprs (-1: none)
	nStateful   int
	fingerprint string // what state depends on; checked on Restore
}

func (c *WindowConfig) plan(id string) *windowPlan {
	slide := c.Slide
	if slide == 0 || c.Kind == "tumbling" {
		slide = c.Size
	}
	p := &windowPlan{
		id: id, size: int64(c.Size), slide: int64(slide), gap: int64(c.Gap),
		lateness: int64(c.AllowedLateness), early: int64(c.EarlyEvery), aggs: c.Aggregates,
	}
	if c.Kind == "session" {
		p.kind = windowSession
	}
	for _, g := range c.GroupBy {
		p.groupNames = append(p.groupNames, g.Name)
	}
	var fp strings.Builder
	fmt.Fprintf(&fp, "%s size=%d slide=%d gap=%d groups=%d", c.Kind, p.size, p.slide, p.gap, len(c.GroupBy))
	for _, a := range c.Aggregates {
		slots := [2]int{-1, -1}
		for i, e := range a.Args {
			text := strings.TrimSpace(e.Source)
			j := slices.IndexFunc(p.argExprs, func(x *pipeline.Expr) bool { return strings.TrimSpace(x.Source) == text })
			if j < 0 {
				j = len(p.argExprs)
				p.argExprs = append(p.argExprs, e)
			}
			slots[i] = j
		}
		p.argSlots = append(p.argSlots, slots)
		if a.stateful() {
			p.slots = append(p.slots, p.nStateful)
			p.nStateful++
			fmt.Fprintf(&fp, " %s/%d/%g/%d", a.Func, len(a.Args), a.Q, a.N)
		} else {
			p.slots = append(p.slots, -1)
		}
	}
	p.fingerprint = fp.String()
	return p
}

// describeWindowFingerprint renders a plan's fingerprint in the units of
// the configuration: "tumbling 10s, 1 group_by field, aggregates
// sum(1 argument), quantile(q=0.99)". A fingerprint it cannot read is
// shown as it is.
func describeWindowFingerprint(fp string) string {
	parts := strings.Fields(fp)
	if len(parts) < 5 {
		return strconv.Quote(fp)
	}
	num := func(kv string) (int64, bool) {
		_, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		return n, ok && err == nil
	}
	size, ok1 := num(parts[1])
	slide, ok2 := num(parts[2])
	gap, ok3 := num(parts[3])
	groups, ok4 := num(parts[4])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return strconv.Quote(fp)
	}
	var b strings.Builder
	switch parts[0] {
	case "session":
		fmt.Fprintf(&b, "session gap %s", time.Duration(gap))
	case "hopping":
		fmt.Fprintf(&b, "hopping size %s slide %s", time.Duration(size), time.Duration(slide))
	default:
		fmt.Fprintf(&b, "%s %s", parts[0], time.Duration(size))
	}
	fmt.Fprintf(&b, ", %d group_by field(s)", groups)
	var aggs []string
	for _, a := range parts[5:] {
		f := strings.Split(a, "/")
		if len(f) != 4 {
			aggs = append(aggs, a)
			continue
		}
		desc := f[0] + "(" + f[1] + " argument(s)"
		if f[2] != "0" {
			desc += ", q=" + f[2]
		}
		if f[3] != "0" {
			desc += ", n=" + f[3]
		}
		aggs = append(aggs, desc+")")
	}
	if len(aggs) > 0 {
		b.WriteString(", aggregates with state: " + strings.Join(aggs, ", "))
	}
	return b.String()
}

// check validates a configuration built in Go rather than decoded from
// YAML (the decoder checks all of this with positions).
func (c *WindowConfig) check() error {
	switch c.Kind {
	case "tumbling", "hopping":
		if c.Size <= 0 || c.Slide < 0 || c.Slide > c.Size || c.Size > maxDuration {
			return fmt.Errorf("window: %s: size %s and slide %s: want 0 < slide <= size", c.Kind, c.Size, c.Slide)
		}
	case "session":
		if c.Gap <= 0 || c.Gap > maxDuration {
			return fmt.Errorf("window: session: gap %s: want a positive duration", c.Gap)
		}
	default:
		return fmt.Errorf("window: kind %q: want tumbling, hopping or session", c.Kind)
	}
	for _, d := range []time.Duration{c.Watermark, c.AllowedLateness, c.IdleTimeout, c.EarlyEvery} {
		if d < 0 || d > maxDuration {
			return fmt.Errorf("window: duration %s out of range", d)
		}
	}
	if len(c.Aggregates) == 0 {
		return fmt.Errorf("window: no aggregates")
	}
	for _, a := range c.Aggregates {
		fn, ok := aggFuncs[a.Func]
		if !ok || fn.kind != a.kind || len(a.Args) < fn.minArgs || len(a.Args) > fn.maxArgs || slices.Contains(a.Args, nil) ||
			(a.kind == aggQuantile && !(a.Q >= 0 && a.Q <= 1)) || (a.kind == aggCollect && (a.N < 1 || a.N > collectLimit)) {
			return fmt.Errorf("window: aggregate %q: bad call %s with %d arguments (use ParseAggregate)", a.Name, a.Func, len(a.Args))
		}
	}
	for _, g := range c.GroupBy {
		if g.Expr == nil {
			return fmt.Errorf("window: group_by %q: no expression", g.Name)
		}
	}
	return c.checkNames()
}

// AlignedWith implements pipeline.KeyedConfig: key is one of the
// group_by values (by name or expression).
func (c *WindowConfig) AlignedWith(key string) bool {
	for _, g := range c.GroupBy {
		if g.Name == key || (g.Expr != nil && strings.TrimSpace(g.Expr.Source) == key) {
			return true
		}
	}
	return false
}

// EventTimeExpr implements pipeline.EventTimed.
func (c *WindowConfig) EventTimeExpr() *pipeline.Expr { return c.EventTime }

// KeyedBy implements pipeline.KeyedConfig.
func (c *WindowConfig) KeyedBy() string {
	if len(c.GroupBy) == 0 {
		return ""
	}
	names := make([]string, len(c.GroupBy))
	for i, g := range c.GroupBy {
		names[i] = g.Name
	}
	return "group_by [" + strings.Join(names, ", ") + "]"
}

// NewOperator implements pipeline.OperatorConfig.
func (c *WindowConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	w := &Window{
		plan:  c.plan(b.Component),
		now:   b.Now,
		marks: newWatermarks(c.Watermark, c.IdleTimeout),
		seed:  maphash.MakeSeed(),
	}
	if w.now == nil {
		w.now = time.Now
	}
	if c.EventTime != nil {
		src := newValueSource(c.EventTime).clone()
		w.eventTime.src = &src
	}
	for _, g := range c.GroupBy {
		w.groups = append(w.groups, newValueSource(g.Expr).clone())
	}
	par := max(c.Parallelism, 1)
	for range par {
		w.shards = append(w.shards, newShard(w.plan))
	}
	w.entries = make([][]entry, par)
	return w, nil
}

// Window is the running window operator (see WindowConfig for the YAML).
//
// Semantics:
//   - Each record's event time comes from event_time; a record whose event
//     time cannot be computed goes to the dead-letter output with reason
//     "event_time".
//   - The watermark is, per split (Record.Source and Record.Split: a
//     Kafka partition, a file), the largest event time seen minus
//     `watermark`; the operator's watermark is the minimum over splits
//     that are not idle or caught up (an announced split with no record
//     yet holds it too), and never moves back (see watermarks).
//     It advances per record in input order: after each record, every
//     window the watermark passes fires before the next record is looked
//     at, so output never depends on how the input was batched.
//   - A window [start, end) fires on time once the watermark reaches end.
//     A record for a window that already fired, arriving while the
//     watermark is below end + allowed_lateness, updates the window and
//     re-fires it at once with firing "late". A record later than that for
//     every window it belongs to goes to the dead-letter output with reason
//     "late" and is counted (Late). Window state is dropped once the
//     watermark reaches end + allowed_lateness.
//   - Sessions: per group, records less than gap apart share a session
//     [first, last+gap); a record that bridges two sessions merges them.
//   - early_every: when the watermark passes a multiple of early_every,
//     every open window that began before that point and changed since it
//     was last emitted fires with firing "early".
//   - Finish (end of finite input) fires every open window on time.
//   - Firings at one point of the input come out in order of window end,
//     window start, then group key (the byte order of the encoded group-by
//     values: null, booleans, numbers, strings, times), so the same input
//     gives the same output whatever the batching or parallelism.
//   - A record with a valid event time advances the watermark even when it
//     is then dead-lettered (bad group_by or aggregate argument, reason
//     "group_by" or "aggregate").
//
// Parallelism N splits the groups over N shards by key hash. Process
// computes event times, group keys and the watermark progression in input
// order, then the shards evaluate aggregate arguments and update windows
// concurrently, each told the batch's watermark advances; their outputs are
// merged by input position and firing order, so the output is the same as
// with N = 1.
//
// Process, Finish, Tick, Snapshot and Restore are called from one goroutine
// (the operator chain); Late, Watermark and SplitWatermarks may be called
// from any goroutine.
type Window struct {
	plan      *windowPlan
	now       func() time.Time
	eventTime eventTimeSource
	groups    []valueSource
	marks     *watermarks
	// shards hold the window state, split by group-key hash. Each is used
	// by one goroutine at a time: during runShards shard i (i > 0) runs on
	// a goroutine of its own and reads only its own entries and the batch's
	// arena, gvals and advances, which nothing writes until all are done.
	shards    []*shard
	seed      maphash.Seed
	late      atomic.Int64   // records dead-lettered as too late
	watermark atomic.Int64   // the watermark after the last call, for Watermark
	published publishedMarks // the per-split watermarks after the last call

	// Per-batch scratch, reused.
	entries  [][]entry // per shard
	advances []advance
	arena    []byte  // encoded group keys of the batch
	gvals    []value // group values of the batch, len(groups) per entry
	tv       value   // scratch for event times
	dead     []taggedDead
	merged   []emission // the shards' outputs in order (parallelism > 1)
}

// entry is one record of a batch as the splitting step prepared it.
type entry struct {
	r              *pipeline.Record
	t              int64 // event time, ns
	seq            int32 // position in the batch
	keyOff, keyEnd int32 // its encoded group key in the batch arena
	gOff           int32 // its group values in the batch's gvals
}

// advance is a watermark advance after record seq of a batch.
type advance struct {
	seq int32
	wm  int64
}

// Late returns how many records were too late for every window they belong
// to (dead-lettered with reason "late") since the operator started,
// including before the last Restore.
func (w *Window) Late() int64 { return w.late.Load() }

// Watermark returns the operator's event-time watermark (zero before the
// first record), for lag metrics.
func (w *Window) Watermark() time.Time { return watermarkTime(w.watermark.Load()) }

// SplitWatermarks implements pipeline.SplitWatermarker: each split's own
// watermark as of the end of the last call. Safe for concurrent use.
func (w *Window) SplitWatermarks() map[pipeline.SplitID]time.Time {
	return w.published.splitWatermarks()
}

func watermarkTime(wm int64) time.Time {
	if wm == noWatermark || wm == 0 {
		return time.Time{}
	}
	return time.Unix(0, wm).UTC()
}

// Process implements pipeline.Operator: b's records are consumed, and
// replaced by the window results that fire while they are processed.
func (w *Window) Process(_ context.Context, b *pipeline.Batch) error {
	if len(b.Records) > 1<<30 {
		return fmt.Errorf("window: batch of %d records is too large", len(b.Records))
	}
	w.split(b.Records, w.now())
	w.runShards()
	w.collect(b, true)
	return nil
}

// split is the serial step: event time, watermark progression and group
// key of every record, in input order.
func (w *Window) split(records []*pipeline.Record, now time.Time) {
	par := len(w.shards)
	for i := range w.entries {
		w.entries[i] = w.entries[i][:0]
	}
	w.advances, w.arena, w.gvals = w.advances[:0], w.arena[:0], w.gvals[:0]
	for i, r := range records {
		seq := int32(i)
		t, err := w.eventTime.of(r, &w.tv)
		if err != nil {
			w.dead = append(w.dead, taggedDead{seq: seq, d: w.deadLetter(r, "event_time", fmt.Errorf("window: %w", err))})
			continue
		}
		advanced := w.marks.observe(r.Source, r.Split, t, now)
		keyOff, gOff := len(w.arena), len(w.gvals)
		ok := true
		for gi := range w.groups {
			w.gvals = append(w.gvals, value{})
			x := &w.gvals[len(w.gvals)-1]
			if err := w.groups[gi].read(r, x); err != nil {
				w.dead = append(w.dead, taggedDead{seq: seq, d: w.deadLetter(r, "group_by", fmt.Errorf("window: group_by: %w", err))})
				ok = false
				break
			}
			w.arena = appendKeyValue(w.arena, x)
		}
		if ok {
			s := 0
			if par > 1 {
				s = int(maphash.Bytes(w.seed, w.arena[keyOff:]) % uint64(par))
			}
			w.entries[s] = append(w.entries[s], entry{r: r, t: t, seq: seq, keyOff: int32(keyOff), keyEnd: int32(len(w.arena)), gOff: int32(gOff)})
		} else {
			w.arena, w.gvals = w.arena[:keyOff], w.gvals[:gOff]
		}
		if advanced {
			w.advances = append(w.advances, advance{seq: seq, wm: w.marks.wm})
		}
	}
}

func (w *Window) deadLetter(r *pipeline.Record, reason string, err error) pipeline.DeadLetter {
	return pipeline.DeadLetter{Record: r, Reason: reason, Component: w.plan.id, Error: err.Error()}
}

// runShards lets every shard process its entries, concurrently when there
// are several.
func (w *Window) runShards() {
	ng := len(w.groups)
	if len(w.shards) == 1 {
		w.shards[0].run(w.entries[0], w.advances, w.arena, w.gvals, ng)
	} else {
		var wg sync.WaitGroup
		for i := 1; i < len(w.shards); i++ {
			wg.Go(func() { w.shards[i].run(w.entries[i], w.advances, w.arena, w.gvals, ng) })
		}
		w.shards[0].run(w.entries[0], w.advances, w.arena, w.gvals, ng)
		wg.Wait()
	}
	clear(w.gvals) // do not keep the batch's records alive through aliased strings
	for i := range w.entries {
		clear(w.entries[i])
	}
}

// collect moves the shards' output into b in deterministic order: into
// b.Records replacing the input when replace is set, else appended.
func (w *Window) collect(b *pipeline.Batch, replace bool) {
	var out []emission
	if len(w.shards) == 1 {
		out = w.shards[0].out
	} else {
		out = w.merge()
	}
	dead := w.dead
	for _, sh := range w.shards {
		dead = append(dead, sh.dead...)
		w.late.Add(sh.late)
		sh.late = 0
	}
	slices.SortStableFunc(dead, func(a, b taggedDead) int { return cmpInt64(int64(a.seq), int64(b.seq)) })
	for _, d := range dead {
		b.Dead = append(b.Dead, d.d)
	}
	records := b.Records
	if replace {
		records = b.Records[:0]
	}
	for _, e := range out {
		records = append(records, e.rec)
	}
	if replace && len(records) < len(b.Records) {
		clear(b.Records[len(records):])
	}
	b.Records = records
	for _, sh := range w.shards {
		clear(sh.out)
		sh.out = sh.out[:0]
		clear(sh.dead)
		sh.dead = sh.dead[:0]
	}
	clear(dead)
	w.dead = w.dead[:0]
	clear(w.merged)
	w.watermark.Store(w.marks.wm)
	w.published.publish(w.marks)
}

// merge merges the shards' outputs, each already in emission order, into
// w.merged.
func (w *Window) merge() []emission {
	out := w.merged[:0]
	heads := make([]int, len(w.shards))
	for {
		best := -1
		for i, sh := range w.shards {
			if heads[i] < len(sh.out) && (best < 0 || cmpEmissions(sh.out[heads[i]], w.shards[best].out[heads[best]]) < 0) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		out = append(out, w.shards[best].out[heads[best]])
		heads[best]++
	}
	w.merged = out
	return out
}

// Tick implements pipeline.Ticker: inputs silent for idle_timeout stop
// holding the watermark back, which may fire windows.
func (w *Window) Tick(_ context.Context, now time.Time, b *pipeline.Batch) error {
	if !w.marks.tick(now) {
		return nil
	}
	for _, sh := range w.shards {
		sh.seq = 0
		sh.advance(w.marks.wm)
	}
	w.collect(b, false)
	return nil
}

// OnSplits implements pipeline.SplitHandler: the watermark follows the
// source's splits, which may fire windows (a removed or caught-up split no
// longer holds them back). Window results are new records without a
// split, so the change is not forwarded.
func (w *Window) OnSplits(_ context.Context, source int, c pipeline.SplitChange, b *pipeline.Batch) (bool, error) {
	if !w.marks.splits(source, c, w.now()) {
		w.published.publish(w.marks)
		return false, nil
	}
	for _, sh := range w.shards {
		sh.seq = 0
		sh.advance(w.marks.wm)
	}
	w.collect(b, false)
	return false, nil
}

// Finish implements pipeline.Finisher: every open window fires on time, in
// firing order, and all state is dropped.
func (w *Window) Finish(_ context.Context, b *pipeline.Batch) error {
	for _, sh := range w.shards {
		sh.seq = 0
		sh.finish()
	}
	w.collect(b, false)
	return nil
}

const windowMagic = "WWIN"

// compatibleAggregates says whether state written under the fingerprint
// was can be restored under is: the same kind, size, slide, gap and
// number of group_by fields, and the stateful aggregates of was found, in
// their order, among those of is (aggregates were added; none was taken
// away or changed). It returns, per stateful aggregate of is, whether its
// state is in the snapshot. An added aggregate starts empty in the windows
// that were open, so it covers only the records after the restore there.
func compatibleAggregates(was, is string) ([]bool, bool) {
	old, cur := strings.Fields(was), strings.Fields(is)
	if len(old) < 5 || len(cur) < 5 || !slices.Equal(old[:5], cur[:5]) {
		return nil, false
	}
	from := make([]bool, len(cur)-5)
	k := 5
	for j, a := range cur[5:] {
		if k < len(old) && old[k] == a {
			from[j] = true
			k++
		}
	}
	return from, k == len(old)
}

// Snapshot implements pipeline.Snapshotter. The state is every open
// window (extent, group values, flags, record count and aggregate states,
// sketches included), the watermarks, the early-firing grid and the late
// counter, in a versioned binary format with a checksum (see
// window_state.go). The body is: the configuration fingerprint (string);
// the watermark, then per input its source, largest event time and idle
// flag; the next early-firing point; the late count; the number of
// windows, then per window (in firing order) start, end, fired, dirty,
// record count, group values, and each stateful aggregate's state (sketches
// in their libraries' own encodings). The same state always gives the
// same bytes, and a snapshot restores with any parallelism.
func (w *Window) Snapshot() ([]byte, error) {
	s := newStateWriter(windowMagic)
	s.str(w.plan.fingerprint)
	w.marks.appendState(s)
	s.varint(w.shards[0].nextEarly)
	s.varint(w.late.Load())
	var all []*windowState
	for _, sh := range w.shards {
		all = append(all, sh.store.windows()...)
	}
	slices.SortFunc(all, cmpWindows)
	s.uvarint(uint64(len(all)))
	for _, ws := range all {
		s.varint(ws.start)
		s.varint(ws.end)
		s.bool(ws.fired)
		s.bool(ws.dirty)
		s.varint(ws.n)
		s.uvarint(uint64(len(ws.key.vals)))
		for _, v := range ws.key.vals {
			s.value(v)
		}
		for _, acc := range ws.accs {
			acc.appendState(s)
		}
	}
	return s.finish(), nil
}

// Restore implements pipeline.Snapshotter: it replaces all state with a
// snapshot's. A snapshot of a window with a different kind, size, group
// count or aggregate functions is refused, but for one compatible change:
// aggregates added to those the snapshot has (see compatibleAggregates).
// Allowed lateness, watermark and early firing are not part of the state
// and may change freely.
func (w *Window) Restore(state []byte) error {
	s, err := newStateReader(state, windowMagic)
	if err != nil {
		return fmt.Errorf("window: restore: %w", err)
	}
	var from []bool // per stateful aggregate: its state is in the snapshot
	if fp := s.str(); s.err == nil && fp != w.plan.fingerprint {
		var ok bool
		if from, ok = compatibleAggregates(fp, w.plan.fingerprint); !ok {
			return fmt.Errorf("window: restore: the state was written by a different window configuration: it was %s, it is now %s", describeWindowFingerprint(fp), describeWindowFingerprint(w.plan.fingerprint))
		}
	}
	marks := newWatermarks(time.Duration(w.marks.delay), w.marks.idleTimeout)
	marks.readState(s)
	nextEarly, late := s.varint(), s.varint()
	shards := make([]*shard, len(w.shards))
	for i := range shards {
		shards[i] = newShard(w.plan)
		shards[i].wm, shards[i].nextEarly = marks.wm, nextEarly
	}
	n := s.count()
	var key []byte
	for range n {
		ws := &windowState{start: s.varint(), end: s.varint(), fired: s.bool(), dirty: s.bool(), n: s.varint(), timerAt: noWatermark}
		nv := s.count()
		if s.err == nil && nv != len(w.groups) {
			s.fail(fmt.Sprintf("window has %d group values, want %d", nv, len(w.groups)))
		}
		vals := make([]any, nv)
		key = key[:0]
		for i := range vals {
			vals[i] = s.value()
			key = appendKey(key, vals[i])
		}
		if s.err != nil {
			break
		}
		if ws.end <= ws.start {
			s.fail("window ends before it starts")
			break
		}
		sh := shards[0]
		if len(shards) > 1 {
			sh = shards[maphash.Bytes(w.seed, key)%uint64(len(shards))]
		}
		ws.key = &groupKey{enc: string(key), vals: vals}
		ws.accs = sh.newWindow(0, 0, nil).accs
		for j, acc := range ws.accs {
			if from == nil || from[j] {
				acc.readState(s)
			}
		}
		if s.err != nil {
			break
		}
		sh.store.insert(sh, ws)
	}
	if err := s.done(); err != nil {
		return fmt.Errorf("window: restore: %w", err)
	}
	w.marks, w.shards = marks, shards
	w.late.Store(late)
	w.watermark.Store(marks.wm)
	w.published.publish(marks)
	return nil
}
