package sources

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("nexmark", "Nexmark benchmark events (person, auction, bid), deterministic for a seed",
		func() *NexmarkConfig { return NewNexmarkConfig() })
}

// NexmarkDefaultEventRate is the default event_rate: the 10 M events/s of
// the Flink Nexmark benchmark's workload.
const NexmarkDefaultEventRate = 10_000_000

// nexmarkMaxEventRate bounds event_rate, so that event-time arithmetic
// cannot overflow.
const nexmarkMaxEventRate = 1_000_000_000_000

// NexmarkConfig is the `nexmark` source, the event generator of the
// Nexmark benchmark:
//
//	sources:
//	  - nexmark: { events: 10000000, event_rate: 10000000, seed: 1 }
//
// It follows the Nexmark specification and its Beam and Flink generators:
// every 50 events are 1 person, 3 auctions and 46 bids, in that order;
// half of the bids go to the hot auction (the first of the latest 100
// auctions) and three quarters come from the hot bidder (the second of
// the latest 100 people); three quarters of the auctions are by the hot
// seller (the first of the latest 100 people); the other bids are for one
// of the latest 100 auctions, by one of the latest 1000 people. Ids only
// name people and auctions generated earlier. See NexmarkGenerator.
//
// Records are flat and already parsed, with event_type person, auction or
// bid and the Nexmark SQL schema's fields in snake_case:
//
//	{"event_type":"bid","auction":1000,"bidder":1001,"price":4871,"channel":"Google","url":"https://www.nexmark.com/…","date_time":"2026-01-01T00:00:00.000Z","extra":"…"}
//
// person has id, name, email_address, credit_card, city, state,
// date_time, extra; auction has id, item_name, description, initial_bid,
// reserve, date_time, expires, seller, category, extra. date_time (RFC
// 3339 UTC with milliseconds) is event i's base_time + ⌊i·1000/event_rate⌋
// ms, and is also the record's Time, so windows need no event_time
// expression. Event i is a pure function of (seed, base_time, event_rate,
// i): the source is replayable (pipeline.Positioned; the position is the
// next index, so a checkpoint holds one number), and as event times never
// decrease it reports the last one returned as its watermark. Origin is
// {Name: "nexmark", Offset: i}.
type NexmarkConfig struct {
	// Events is how many events to emit before Read returns io.EOF. 0
	// (default) is endless: until the event time would pass the year
	// 9999.
	Events int64 `yaml:"events"`
	// EventRate is events per second of event time: it spaces date_time
	// (default NexmarkDefaultEventRate).
	EventRate int64 `yaml:"event_rate"`
	// Rate is events per second of wall-clock time; 0 (default) is as fast
	// as possible. Pacing is the generate source's.
	Rate float64 `yaml:"rate"`
	// Seed selects the sequence; default 0.
	Seed int64 `yaml:"seed"`
	// BaseTime is the date_time of event 0, RFC 3339 with at most
	// millisecond precision (default 2026-01-01T00:00:00Z).
	BaseTime string `yaml:"base_time"`

	keys map[string]pipeline.Pos // where each key was written, for errors
}

// NewNexmarkConfig returns a nexmark source configuration with its
// defaults: endless, 10 M events/s of event time, as fast as possible,
// seed 0, starting 2026-01-01T00:00:00Z.
func NewNexmarkConfig() *NexmarkConfig {
	return &NexmarkConfig{EventRate: NexmarkDefaultEventRate}
}

// UnmarshalYAML decodes the mapping and remembers where each key is, so
// that Validate can point at the key in error.
func (c *NexmarkConfig) UnmarshalYAML(n ast.Node) error {
	type plain NexmarkConfig
	if err := pipeline.DecodeNode(n, (*plain)(c)); err != nil {
		return err
	}
	c.keys = map[string]pipeline.Pos{}
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	}
	for _, v := range values {
		c.keys[v.Key.GetToken().Value] = pipeline.NodePos(v.Key)
	}
	return nil
}

// errAt returns a configuration error at key's position when the key came
// from YAML, else a plain one.
func (c *NexmarkConfig) errAt(key, format string, args ...any) error {
	msg := key + ": " + fmt.Sprintf(format, args...)
	if pos, ok := c.keys[key]; ok {
		return &pipeline.ConfigError{Pos: pos, Msg: "nexmark: " + msg}
	}
	return fmt.Errorf("%s", msg)
}

// baseTime returns the parsed base_time.
func (c *NexmarkConfig) baseTime() (time.Time, error) {
	if strings.TrimSpace(c.BaseTime) == "" {
		return generateEpoch, nil
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(c.BaseTime))
	if err != nil {
		return time.Time{}, c.errAt("base_time", "want an RFC 3339 time such as 2026-01-01T00:00:00Z, got %q", c.BaseTime)
	}
	if t.Nanosecond()%int(time.Millisecond) != 0 {
		return time.Time{}, c.errAt("base_time", "%q is finer than a millisecond; event times are whole milliseconds", c.BaseTime)
	}
	if t.After(nexmarkMaxTime) || t.Year() < 1 {
		return time.Time{}, c.errAt("base_time", "%q is outside years 1 to 9999", c.BaseTime)
	}
	return t.UTC(), nil
}

// Validate implements pipeline.Validator. It refuses an event budget whose
// event times (or auction expiries) would pass the year 9999.
func (c *NexmarkConfig) Validate() error {
	if c.Events < 0 {
		return c.errAt("events", "want 0 (endless) or more, got %d", c.Events)
	}
	if c.EventRate < 1 || c.EventRate > nexmarkMaxEventRate {
		return c.errAt("event_rate", "want events per second of event time, from 1 to %d, got %d", int64(nexmarkMaxEventRate), c.EventRate)
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return c.errAt("rate", "want events per second, 0 (as fast as possible) or more, got %v", c.Rate)
	}
	base, err := c.baseTime()
	if err != nil {
		return err
	}
	if limit := nexmarkLimit(base.UnixMilli(), c.EventRate); c.Events > limit {
		return c.errAt("events", "%d events at event_rate %d from %s would have event times past the year 9999; at most %d fit",
			c.Events, c.EventRate, base.Format(time.RFC3339), limit)
	}
	return nil
}

// NewSource implements pipeline.SourceConfig.
func (c *NexmarkConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("nexmark: %w", err)
	}
	base, _ := c.baseTime()
	batch := b.BatchSize
	if batch <= 0 {
		batch = pipeline.DefaultBatchSize
	}
	count := c.Events
	if count == 0 {
		count = nexmarkLimit(base.UnixMilli(), c.EventRate)
	}
	return &nexmarkSource{
		gen:    NewNexmarkGenerator(c.Seed, base, c.EventRate),
		count:  count,
		batch:  batch,
		source: b.Index,
		pacer:  generateSource{rate: c.Rate},
	}, nil
}

// nexmarkSource is the running nexmark source; it is used by the reader
// goroutine only.
type nexmarkSource struct {
	gen    *NexmarkGenerator
	count  int64 // events in all
	batch  int
	source int
	next   int64 // index of the next event
	// people and auctions are scratch for emit: the batch's records of
	// those kinds.
	people, auctions []*pipeline.Record
	// pacer paces a positive rate; only its pacing fields are used, with
	// its next kept equal to this source's.
	pacer generateSource
}

// Read implements pipeline.Source.
func (s *nexmarkSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.next >= s.count {
		return nil, io.EOF
	}
	n := min(int64(s.batch), s.count-s.next)
	if s.pacer.rate > 0 {
		s.pacer.next = s.next
		var err error
		if n, err = s.pacer.pace(ctx, n); n == 0 || err != nil {
			return nil, err
		}
	}
	s.emit(b, int(n))
	return nil, nil
}

// nexmarkSlab is the size of the blocks event bytes are carved from.
const nexmarkSlab = 256 << 10

// emit appends events next .. next+n-1 to b. Their bytes share large
// blocks and their fields one allocation per batch; the fields alias the
// bytes, so nothing is parsed.
func (s *nexmarkSource) emit(b *pipeline.Batch, n int) {
	recs := pipeline.NewRecords(n)
	// Room for each event's fields, all from three allocations: people
	// have 9, auctions 11, bids 8.
	s.people, s.auctions = s.people[:0], s.auctions[:0]
	for k, r := range recs {
		switch NexmarkKind(s.next + int64(k)) {
		case "person":
			s.people = append(s.people, r)
		case "auction":
			s.auctions = append(s.auctions, r)
		}
	}
	pipeline.ReserveFields(s.people, 9)
	pipeline.ReserveFields(s.auctions, 11)
	pipeline.ReserveFields(recs, 8)
	clear(s.people)
	clear(s.auctions)
	var slab []byte
	for k, r := range recs {
		if cap(slab)-len(slab) < nexmarkMaxEvent {
			slab = make([]byte, 0, max(nexmarkSlab, (n-k)*300))
		}
		i := s.next + int64(k)
		o := len(slab)
		var ms int64
		slab, ms = s.gen.AppendEvent(slab, i)
		r.Value = slab[o:len(slab):len(slab)]
		r.Time = time.UnixMilli(ms).UTC()
		r.Source = s.source
		r.Origin = pipeline.Origin{Name: "nexmark", Offset: i}
		s.gen.fields(r.SetFields(), r.Value)
	}
	b.Records = append(b.Records, recs...)
	s.next += int64(n)
}

// Watermark implements pipeline.WatermarkSource: event times never
// decrease with the index, so no record older than the last one returned
// will follow.
func (s *nexmarkSource) Watermark() (time.Time, bool) {
	if s.next == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(s.gen.EventTime(s.next - 1)).UTC(), true
}

// Position implements pipeline.Positioned: {"next": index of the next event}.
func (s *nexmarkSource) Position() ([]byte, error) {
	return append(strconv.AppendInt([]byte(`{"next":`), s.next, 10), '}'), nil
}

// Seek implements pipeline.Positioned. Pacing restarts from the seek.
func (s *nexmarkSource) Seek(_ context.Context, pos []byte) error {
	if len(pos) == 0 {
		return nil
	}
	var p generatePosition
	if err := json.Unmarshal(pos, &p); err != nil {
		return fmt.Errorf("nexmark: decode position: %w", err)
	}
	if p.Next < 0 || p.Next > s.count {
		return fmt.Errorf("nexmark: decode position: index %d outside 0 to %d", p.Next, s.count)
	}
	s.next, s.pacer.started = p.Next, false
	return nil
}

// Close implements pipeline.Source.
func (s *nexmarkSource) Close(ctx context.Context) error { return s.pacer.Close(ctx) }
