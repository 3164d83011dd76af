package operators

import (
	"context"
	"fmt"
	"math"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("sample", "keep a fraction of the records, chosen by a hash of a key", func() *SampleConfig { return &SampleConfig{} })
}

// SampleConfig is the `sample:` operator:
//
//   - sample: 0.1              # keep 10% of the records
//   - sample:
//     rate: 0.1                # the fraction kept, from 0 to 1
//     key: trace_id            # expression; default: the whole record
//
// Whether a record is kept depends on its key alone: a 64-bit FNV-1a hash
// of the key's text, mixed, below rate × 2^64. So the choice is the same
// on every run and after every restart, whatever the batching, and a key
// is kept or dropped as a whole: with `key: trace_id`, all of a trace's
// spans or none (as OpenTelemetry's trace-id ratio sampler does). Without
// a key, the hash is of the record's bytes as read (or as written, for a
// record made by an operator). A record whose key is null is kept only
// when rate is 1.
type SampleConfig struct {
	Rate float64
	Key  *pipeline.Expr
}

// UnmarshalYAML takes the rate alone, or the mapping.
func (c *SampleConfig) UnmarshalYAML(n ast.Node) error {
	if _, ok := pipeline.UnwrapValue(n).(ast.ScalarNode); ok {
		return c.setRate(yamlPair{key: "sample", kn: n, value: pipeline.UnwrapValue(n)})
	}
	pairs, err := yamlOptions(n, "sample", "rate", "key")
	if err != nil {
		return err
	}
	hasRate := false
	for _, p := range pairs {
		switch p.key {
		case "rate":
			err, hasRate = c.setRate(p), true
		case "key":
			c.Key, err = p.expr("sample: key")
		default:
			err = configErr(p.kn, "sample: unknown key %q (want rate, key)", p.key)
		}
		if err != nil {
			return err
		}
	}
	if !hasRate {
		return configErr(n, "sample: needs `rate:`, the fraction of records kept, such as 0.1")
	}
	return nil
}

func (c *SampleConfig) setRate(p yamlPair) error {
	s, err := p.scalar("sample: rate")
	if err != nil {
		return err
	}
	var r float64
	if _, err := fmt.Sscan(s, &r); err != nil || math.IsNaN(r) || r < 0 || r > 1 {
		return configErr(p.at(), "sample: rate: want a fraction from 0 to 1, such as 0.1, got %q", s)
	}
	c.Rate = r
	return nil
}

// Validate implements pipeline.Validator.
func (c *SampleConfig) Validate() error { return nil }

// NewOperator implements pipeline.OperatorConfig.
func (c *SampleConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
	s := &sample{id: b.Component}
	if f := c.Rate * 0x1p64; f >= 0x1p64 {
		s.all = true
	} else {
		s.below = uint64(f)
	}
	if c.Key != nil {
		s.key = c.Key.Clone()
	}
	return s, nil
}

type sample struct {
	id    string
	key   *pipeline.Expr // nil: the record's bytes
	all   bool           // rate 1: keep everything
	below uint64         // keep a record whose hash is below this
	buf   []byte
}

// Stateless implements pipeline.Stateless.
func (s *sample) Stateless() bool { return true }

func (s *sample) Process(_ context.Context, b *pipeline.Batch) error {
	if s.all {
		return nil
	}
	out := b.Records[:0]
	for _, r := range b.Records {
		keep, err := s.keep(r)
		if err != nil {
			b.Reject(r, s.id, "sample", err)
			continue
		}
		if keep {
			out = append(out, r)
		}
	}
	clear(b.Records[len(out):])
	b.Records = out
	return nil
}

func (s *sample) keep(r *pipeline.Record) (bool, error) {
	s.buf = s.buf[:0]
	switch {
	case s.key != nil:
		v, err := s.key.Eval(r)
		if err != nil {
			return false, err
		}
		if v == nil {
			return false, nil
		}
		s.buf = pipeline.AppendText(s.buf, v)
	case len(r.Value) > 0:
		s.buf = append(s.buf, r.Value...)
	default:
		s.buf = r.AppendJSON(s.buf)
	}
	return sampleHash(s.buf) < s.below, nil
}

// sampleHash is FNV-1a of b with a final avalanche (splitmix64's), so
// that keys differing in their last byte spread over the whole range.
func sampleHash(b []byte) uint64 {
	x := uint64(14695981039346656037) // FNV-1a 64 offset basis
	for _, c := range b {
		x ^= uint64(c)
		x *= 1099511628211 // FNV-1a 64 prime
	}
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
