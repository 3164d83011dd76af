package operators

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("dedupe", "drop records whose key was seen within a horizon of event time", func() *DedupeConfig {
		return &DedupeConfig{MaxKeys: 1_000_000}
	})
}

// DedupeConfig is the `dedupe:` operator:
//
//   - dedupe:
//     key: request_id       # expression; records whose key is null pass
//     horizon: 10m          # duplicates are looked for this far in event time
//     event_time: ts        # expression; default: the record's Time
//     watermark: 0s         # bounded out-of-orderness of expiry (default 0)
//     idle_timeout: 0s      # wall clock; default off (as for window)
//     max_keys: 1000000     # most keys remembered (default 1000000)
//
// See Dedupe for the semantics.
type DedupeConfig struct {
	// Key computes the identity of a record.
	Key *pipeline.Expr
	// Horizon is how far apart in event time two records with the same key
	// must be for the later one to be kept.
	Horizon time.Duration
	// EventTime computes a record's event time; nil means the record's Time.
	EventTime *pipeline.Expr
	// Watermark delays the expiry of remembered keys: a key is forgotten
	// once the watermark (largest event time seen minus Watermark, minimum
	// over inputs as for window) passes its time plus Horizon.
	Watermark time.Duration
	// IdleTimeout (0: off) lets a silent input stop holding expiry back.
	IdleTimeout time.Duration
	// MaxKeys bounds the remembered keys; beyond it the oldest are
	// forgotten (and counted, see Dedupe.Evicted).
	MaxKeys int
}

// UnmarshalYAML decodes the dedupe mapping, reporting problems at their
// position.
func (c *DedupeConfig) UnmarshalYAML(n ast.Node) error {
	pairs, err := yamlOptions(n, "dedupe", "key", "horizon", "event_time", "watermark", "idle_timeout", "max_keys")
	if err != nil {
		return err
	}
	for _, p := range pairs {
		switch p.key {
		case "key":
			c.Key, err = p.expr("dedupe: key")
		case "horizon":
			c.Horizon, err = p.duration("dedupe: horizon", true)
		case "event_time":
			c.EventTime, err = p.expr("dedupe: event_time")
		case "watermark":
			c.Watermark, err = p.duration("dedupe: watermark", false)
		case "idle_timeout":
			c.IdleTimeout, err = p.duration("dedupe: idle_timeout", false)
		case "max_keys":
			c.MaxKeys, err = p.integer("dedupe: max_keys", 1, 1<<30)
		default:
			err = configErr(p.kn, "dedupe: unknown key %q (want %s)", p.key, knownKeys("key", "horizon", "event_time", "watermark", "idle_timeout", "max_keys"))
		}
		if err != nil {
			return err
		}
	}
	switch {
	case c.Key == nil:
		return configErr(n, "dedupe: needs `key:`, an expression such as request_id")
	case c.Horizon == 0:
		return configErr(n, "dedupe: needs `horizon:`, a duration such as 10m")
	}
	return nil
}

// Validate implements pipeline.Validator; it catches a `dedupe:` with no
// settings (the decoder checks the rest, with positions).
func (c *DedupeConfig) Validate() error {
	if c.Key == nil || c.Horizon == 0 {
		return fmt.Errorf("needs `key:` and `horizon:`")
	}
	return nil
}

// AlignedWith implements pipeline.KeyedConfig: key is the dedupe key.
func (c *DedupeConfig) AlignedWith(key string) bool {
	if c.Key == nil {
		return false
	}
	name, ok := c.Key.FieldName()
	return ok && name == key || strings.TrimSpace(c.Key.Source) == key
}

// EventTimeExpr implements pipeline.EventTimed.
func (c *DedupeConfig) EventTimeExpr() *pipeline.Expr { return c.EventTime }

// KeyedBy implements pipeline.KeyedConfig.
func (c *DedupeConfig) KeyedBy() string {
	if c.Key == nil {
		return ""
	}
	return "key " + strings.TrimSpace(c.Key.Source)
}

// NewOperator implements pipeline.OperatorConfig.
func (c *DedupeConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
	if c.Key == nil || c.Horizon <= 0 {
		return nil, fmt.Errorf("dedupe: incomplete configuration (needs key and horizon)")
	}
	d := &Dedupe{
		id:      b.Component,
		now:     b.Now,
		key:     newValueSource(c.Key).clone(),
		horizon: int64(c.Horizon),
		maxKeys: max(c.MaxKeys, 1),
		marks:   newWatermarks(c.Watermark, c.IdleTimeout),
		seen:    map[string]int64{},
		expiry:  minHeap[dedupeEntry]{less: dedupeLess},
		delay:   c.Watermark,
		idle:    c.IdleTimeout,
	}
	if d.now == nil {
		d.now = time.Now
	}
	if c.EventTime != nil {
		src := newValueSource(c.EventTime).clone()
		d.eventTime.src = &src
	}
	return d, nil
}

// Dedupe is the running dedupe operator.
//
// A record whose key was kept before with an event time less than horizon
// away (before or after) is a duplicate: it is dropped and counted
// (Duplicates). Other records pass unchanged and in order; the operator
// remembers the latest event time kept for each key. A record whose key is
// null passes without being remembered; one whose key or event time cannot
// be computed goes to the dead-letter output (reason "dedupe" or
// "event_time").
//
// State is bounded: a key is forgotten once the watermark reaches its time
// plus horizon, and when more than max_keys are remembered the oldest (by
// event time) are forgotten and counted (Evicted). A duplicate that arrives
// after its key was forgotten — later than the watermark allows, or after
// an eviction — passes.
//
// The watermark advances per record in input order, so the output does not
// depend on batching. Process, Tick, Snapshot and Restore are called from
// one goroutine; the counters, Watermark and SplitWatermarks may be read
// from any.
type Dedupe struct {
	id        string
	now       func() time.Time
	key       valueSource
	eventTime eventTimeSource
	horizon   int64
	maxKeys   int
	delay     time.Duration
	idle      time.Duration

	marks  *watermarks
	seen   map[string]int64     // key → latest kept event time
	expiry minHeap[dedupeEntry] // (time, key) per remembered time; stale entries skipped
	buf    []byte
	x      value // scratch

	duplicates atomic.Int64
	evicted    atomic.Int64
	keys       atomic.Int64   // len(seen) after the last call
	watermark  atomic.Int64   // the watermark after the last call
	published  publishedMarks // the per-split watermarks after the last call
}

// SplitWatermarks implements pipeline.SplitWatermarker: each split's own
// watermark as of the end of the last call. Safe for concurrent use.
func (d *Dedupe) SplitWatermarks() map[pipeline.SplitID]time.Time {
	return d.published.splitWatermarks()
}

// Watermark returns the operator's event-time watermark (zero before the
// first record), for lag metrics.
func (d *Dedupe) Watermark() time.Time { return watermarkTime(d.watermark.Load()) }

// Duplicates returns how many records were dropped as duplicates.
func (d *Dedupe) Duplicates() int64 { return d.duplicates.Load() }

// Evicted returns how many keys were forgotten early because more than
// max_keys were remembered.
func (d *Dedupe) Evicted() int64 { return d.evicted.Load() }

// Keys returns how many keys are remembered.
func (d *Dedupe) Keys() int { return int(d.keys.Load()) }

type dedupeEntry struct {
	t   int64
	key string
}

// dedupeLess orders entries by time, then key (a total order, so that
// eviction is deterministic).
func dedupeLess(a, b dedupeEntry) bool {
	if a.t != b.t {
		return a.t < b.t
	}
	return a.key < b.key
}

// Process implements pipeline.Operator.
func (d *Dedupe) Process(_ context.Context, b *pipeline.Batch) error {
	now := d.now()
	out := b.Records[:0]
	var dups int64
	for _, r := range b.Records {
		t, err := d.eventTime.of(r, &d.x)
		if err != nil {
			b.Reject(r, d.id, "event_time", fmt.Errorf("dedupe: %w", err))
			continue
		}
		advanced := d.marks.observe(r.Source, r.Split, t, now)
		keep, err := d.check(r, t)
		if err != nil {
			b.Reject(r, d.id, "dedupe", fmt.Errorf("dedupe: key: %w", err))
		} else if keep {
			out = append(out, r)
		} else {
			dups++
		}
		if advanced {
			d.expire(d.marks.wm)
		}
		d.evict()
	}
	clear(b.Records[len(out):])
	b.Records = out
	d.duplicates.Add(dups)
	d.keys.Store(int64(len(d.seen)))
	d.watermark.Store(d.marks.wm)
	d.published.publish(d.marks)
	return nil
}

// check reports whether r (event time t) is kept, remembering its key.
func (d *Dedupe) check(r *pipeline.Record, t int64) (bool, error) {
	if err := d.key.read(r, &d.x); err != nil || d.x.null() {
		return err == nil, err
	}
	d.buf = appendKeyValue(d.buf[:0], &d.x)
	t0, ok := d.seen[string(d.buf)]
	if ok && t-t0 < d.horizon && t0-t < d.horizon {
		return false, nil
	}
	switch {
	case !ok:
		k := string(d.buf)
		d.seen[k] = t
		d.expiry.push(dedupeEntry{t: t, key: k})
	case t > t0:
		d.seen[string(d.buf)] = t
		d.expiry.push(dedupeEntry{t: t, key: string(d.buf)})
	}
	return true, nil
}

// expire forgets keys whose time plus horizon the watermark reached.
func (d *Dedupe) expire(wm int64) {
	for d.expiry.len() > 0 && d.expiry.top().t+d.horizon <= wm {
		e := d.expiry.pop()
		if t, ok := d.seen[e.key]; ok && t == e.t {
			delete(d.seen, e.key)
		}
	}
}

// evict forgets the oldest keys beyond maxKeys.
func (d *Dedupe) evict() {
	for len(d.seen) > d.maxKeys && d.expiry.len() > 0 {
		e := d.expiry.pop()
		if t, ok := d.seen[e.key]; ok && t == e.t {
			delete(d.seen, e.key)
			d.evicted.Add(1)
		}
	}
}

// Tick implements pipeline.Ticker: a silent input stops holding expiry
// back after idle_timeout.
func (d *Dedupe) Tick(_ context.Context, now time.Time, _ *pipeline.Batch) error {
	if d.marks.tick(now) {
		d.expire(d.marks.wm)
		d.keys.Store(int64(len(d.seen)))
		d.watermark.Store(d.marks.wm)
	}
	return nil
}

// OnSplits implements pipeline.SplitHandler: the watermark follows the
// source's splits (a removed split no longer holds expiry back). Records
// pass through dedupe unchanged, so the change is forwarded.
func (d *Dedupe) OnSplits(_ context.Context, source int, c pipeline.SplitChange, _ *pipeline.Batch) (bool, error) {
	if d.marks.splits(source, c, d.now()) {
		d.expire(d.marks.wm)
		d.keys.Store(int64(len(d.seen)))
		d.watermark.Store(d.marks.wm)
	}
	d.published.publish(d.marks)
	return true, nil
}

const dedupeMagic = "WDDP"

// Snapshot implements pipeline.Snapshotter: watermarks, counters and every
// remembered key with its time, in the binary format of window_state.go.
func (d *Dedupe) Snapshot() ([]byte, error) {
	s := newStateWriter(dedupeMagic)
	s.varint(d.horizon)
	d.marks.appendState(s)
	s.varint(d.duplicates.Load())
	s.varint(d.evicted.Load())
	entries := make([]dedupeEntry, 0, len(d.seen))
	for k, t := range d.seen {
		entries = append(entries, dedupeEntry{t: t, key: k})
	}
	slices.SortFunc(entries, func(a, b dedupeEntry) int {
		if c := cmpInt64(a.t, b.t); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	s.uvarint(uint64(len(entries)))
	prev := int64(0)
	for _, e := range entries {
		s.varint(e.t - prev) // times ascend: small deltas
		prev = e.t
		s.str(e.key)
	}
	return s.finish(), nil
}

// Restore implements pipeline.Snapshotter. State written with another
// horizon is refused.
func (d *Dedupe) Restore(state []byte) error {
	s, err := newStateReader(state, dedupeMagic)
	if err != nil {
		return fmt.Errorf("dedupe: restore: %w", err)
	}
	if h := s.varint(); s.err == nil && h != d.horizon {
		return fmt.Errorf("dedupe: restore: the state was written with horizon %s, now %s", time.Duration(h), time.Duration(d.horizon))
	}
	marks := newWatermarks(d.delay, d.idle)
	marks.readState(s)
	dups, evicted := s.varint(), s.varint()
	n := s.count()
	seen := make(map[string]int64, n)
	expiry := minHeap[dedupeEntry]{items: make([]dedupeEntry, 0, n), less: dedupeLess}
	t := int64(0)
	for range n {
		t += s.varint()
		k := s.str()
		if s.err != nil {
			break
		}
		if _, dup := seen[k]; dup {
			s.fail("duplicate key")
			break
		}
		seen[k] = t
		expiry.items = append(expiry.items, dedupeEntry{t: t, key: k})
	}
	if err := s.done(); err != nil {
		return fmt.Errorf("dedupe: restore: %w", err)
	}
	expiry.init()
	d.marks, d.seen, d.expiry = marks, seen, expiry
	d.duplicates.Store(dups)
	d.evicted.Store(evicted)
	d.keys.Store(int64(len(seen)))
	d.watermark.Store(marks.wm)
	d.published.publish(marks)
	return nil
}
