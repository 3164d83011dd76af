package sources

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("generate", "synthetic JSON log lines, deterministic for a seed, at a fixed rate",
		func() *GenerateConfig { return NewGenerateConfig() })
}

const (
	// generateLinger is how long a due record may wait for more to fill
	// its batch when a rate is set.
	generateLinger = 50 * time.Millisecond
	// generateMaxLine bounds the length of one generated line, for sizing
	// a batch's slab.
	generateMaxLine = 192
	// generateStep is the event-time distance between consecutive records.
	generateStep = 7 * time.Millisecond
)

// generateEpoch is the event time of record 0.
var generateEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// GenerateConfig is the `generate` source:
//
//	sources:
//	  - generate: { rate: 1000, seed: 1, count: 100000 }
//
// It emits synthetic JSON log lines shaped like the reference benchmark
// input (/work/shared/bench/gen_logs.py):
//
//	{"ts":"2026-01-01T00:00:00.007Z","level":"info","service":"billing","msg":"user session refreshed","latency_ms":12.345,"status":200}
//
// Record i (from 0) has ts = 2026-01-01T00:00:00Z + 7 ms × i, which is also
// its Time, level info/warn/error/debug at 70/15/10/5 %, status 500 for 70 %
// of errors, and is a pure function of (seed, i): the same seed gives the
// same records whatever the batching, and the source is replayable
// (pipeline.Positioned; the position is the next index). As event times
// only increase, it reports the last one returned as its watermark
// (pipeline.WatermarkSource). Records arrive
// already parsed (their fields are the JSON object), with Origin
// {Name: "generate", Offset: i}.
type GenerateConfig struct {
	// Rate is records per second; 0 (default) is as fast as possible.
	// Pacing follows a schedule fixed at the first Read (record k of the run
	// is due k/rate seconds after it), so it never drifts; after a stall
	// the source catches up.
	Rate float64 `yaml:"rate"`
	// Seed selects the sequence; default 0.
	Seed int64 `yaml:"seed"`
	// Count is how many records to emit before Read returns io.EOF;
	// 0 or absent (default) is endless.
	Count int64 `yaml:"count"`
}

// NewGenerateConfig returns a generate source configuration with its
// defaults: endless, as fast as possible, seed 0.
func NewGenerateConfig() *GenerateConfig { return &GenerateConfig{} }

// Validate implements pipeline.Validator.
func (c *GenerateConfig) Validate() error {
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("rate: want records per second, 0 or more, got %v", c.Rate)
	}
	if c.Count < 0 {
		return fmt.Errorf("count: want 0 (endless) or more, got %d", c.Count)
	}
	return nil
}

// NewSource implements pipeline.SourceConfig.
func (c *GenerateConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	batch := b.BatchSize
	if batch <= 0 {
		batch = pipeline.DefaultBatchSize
	}
	return &generateSource{seed: uint64(c.Seed), rate: c.Rate, count: c.Count, batch: batch, source: b.Index}, nil
}

// generateSource is the running generate source; it is used by the
// reader goroutine only.
type generateSource struct {
	seed   uint64
	rate   float64
	count  int64 // 0: endless
	batch  int
	source int

	next     int64     // index of the next record
	started  bool      // pacing: the schedule has begun
	start    time.Time // pacing: when record startIdx was due
	startIdx int64
	timer    *time.Timer
}

// Read implements pipeline.Source.
func (s *generateSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := int64(s.batch)
	if s.count > 0 {
		if s.next >= s.count {
			return nil, io.EOF
		}
		n = min(n, s.count-s.next)
	}
	if s.rate > 0 {
		var err error
		if n, err = s.pace(ctx, n); n == 0 || err != nil {
			return nil, err
		}
	}
	s.emit(b, int(n))
	return nil, nil
}

// due returns when record i is due.
func (s *generateSource) due(i int64) time.Time {
	return s.start.Add(time.Duration(float64(i-s.startIdx) / s.rate * float64(time.Second)))
}

// pace waits until records are due and returns how many to emit (at most
// want): a full batch as soon as one is due, else what is due once the
// first of them has lingered generateLinger. It returns 0 after about
// maxReadWait with nothing due.
func (s *generateSource) pace(ctx context.Context, want int64) (int64, error) {
	now := time.Now()
	if !s.started {
		s.started, s.start, s.startIdx = true, now, s.next
	}
	deadline := now.Add(maxReadWait)
	for {
		avail := s.startIdx + int64(now.Sub(s.start).Seconds()*s.rate) + 1 - s.next
		if avail >= want {
			return want, nil
		}
		if avail > 0 && !now.Before(s.due(s.next).Add(generateLinger)) {
			return avail, nil
		}
		wake := s.due(s.next + want - 1)
		if lingerEnd := s.due(s.next).Add(generateLinger); lingerEnd.Before(wake) {
			wake = lingerEnd
		}
		if avail == 0 && deadline.Before(wake) {
			if !now.Before(deadline) {
				return 0, nil
			}
			wake = deadline
		}
		if err := s.sleep(ctx, wake.Sub(now)); err != nil {
			return 0, err
		}
		now = time.Now()
	}
}

func (s *generateSource) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	if s.timer == nil {
		s.timer = time.NewTimer(d)
	} else {
		s.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		s.timer.Stop()
		return ctx.Err()
	case <-s.timer.C:
		return nil
	}
}

// emit appends records next .. next+n-1 to b, their lines in one slab.
func (s *generateSource) emit(b *pipeline.Batch, n int) {
	recs := pipeline.NewRecords(n)
	slab := make([]byte, 0, n*generateMaxLine)
	for k, r := range recs {
		i := s.next + int64(k)
		o := len(slab)
		var ts time.Time
		slab, ts = appendGenerated(slab, s.seed, i)
		r.Value = slab[o:len(slab):len(slab)]
		r.Time = ts
		r.Source = s.source
		r.Origin = pipeline.Origin{Name: "generate", Offset: i}
		_ = r.SetFields().ParseJSONObject(r.Value) // generated JSON is always valid
	}
	b.Records = append(b.Records, recs...)
	s.next += int64(n)
}

// Watermark implements pipeline.WatermarkSource: event times strictly
// increase with the index, so no record older than the last one returned
// will follow.
func (s *generateSource) Watermark() (time.Time, bool) {
	if s.next == 0 {
		return time.Time{}, false
	}
	return generateEpoch.Add(generateStep * time.Duration(s.next-1)), true
}

// generatePosition is the generate source's position: the next index.
type generatePosition struct {
	Next int64 `json:"next"`
}

// Position implements pipeline.Positioned: {"next": index of the next record}.
func (s *generateSource) Position() ([]byte, error) {
	return append(strconv.AppendInt([]byte(`{"next":`), s.next, 10), '}'), nil
}

// Seek implements pipeline.Positioned. Pacing restarts from the seek.
func (s *generateSource) Seek(_ context.Context, pos []byte) error {
	if len(pos) == 0 {
		return nil
	}
	var p generatePosition
	if err := json.Unmarshal(pos, &p); err != nil {
		return fmt.Errorf("generate: decode position: %w", err)
	}
	if p.Next < 0 {
		return fmt.Errorf("generate: decode position: negative index %d", p.Next)
	}
	s.next, s.started = p.Next, false
	return nil
}

// Close implements pipeline.Source.
func (s *generateSource) Close(context.Context) error {
	if s.timer != nil {
		s.timer.Stop()
	}
	return nil
}

var (
	genServices = [...]string{"api-gateway", "auth-service", "billing", "search", "inventory", "checkout", "notifications", "user-profile"}
	genMsgs     = [...]string{"request completed successfully", "upstream timeout while calling dependency",
		"cache miss for key, fetching from database", "user session refreshed",
		"payment authorization declined by provider", "connection pool exhausted, retrying",
		"rate limit exceeded for client", "background job finished"}
	genStatuses = [...]int{200, 200, 200, 201, 204, 301, 404, 429}
)

// splitmix64 is a small, fast, well-mixed PRNG; each record seeds its own
// from (seed, index), which makes record i independent of every other.
type splitmix64 uint64

func (x *splitmix64) next() uint64 {
	*x += 0x9e3779b97f4a7c15
	z := uint64(*x)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float returns a uniform value in [0, 1).
func (x *splitmix64) float() float64 { return float64(x.next()>>11) / (1 << 53) }

// appendGenerated appends generated record i of seed (no newline) and
// returns its event time.
func appendGenerated(dst []byte, seed uint64, i int64) ([]byte, time.Time) {
	mix := splitmix64(seed)
	rng := splitmix64(mix.next() ^ uint64(i))
	rng.next()
	ts := generateEpoch.Add(generateStep * time.Duration(i))
	var level string
	switch p := rng.next() % 100; {
	case p < 70:
		level = "info"
	case p < 85:
		level = "warn"
	case p < 95:
		level = "error"
	default:
		level = "debug"
	}
	status := genStatuses[rng.next()%uint64(len(genStatuses))]
	if level == "error" && rng.float() < 0.7 {
		status = 500
	}
	latency := math.Round(-math.Log(1-rng.float())*45*1000) / 1000
	dst = append(dst, `{"ts":"`...)
	dst = ts.AppendFormat(dst, pipeline.TimeLayout)
	dst = append(dst, `","level":"`...)
	dst = append(dst, level...)
	dst = append(dst, `","service":"`...)
	dst = append(dst, genServices[rng.next()%uint64(len(genServices))]...)
	dst = append(dst, `","msg":"`...)
	dst = append(dst, genMsgs[rng.next()%uint64(len(genMsgs))]...)
	dst = append(dst, `","latency_ms":`...)
	o := len(dst)
	dst = strconv.AppendFloat(dst, latency, 'f', -1, 64)
	if !containsByte(dst[o:], '.') {
		dst = append(dst, ".0"...)
	}
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	return append(dst, '}'), ts
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}
