package operators

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("throttle", "let at most rate records per key through in each interval of event time", func() *ThrottleConfig {
		return &ThrottleConfig{Per: time.Second, Action: "drop"}
	})
}

// ThrottleConfig is the `throttle:` operator:
//
//   - throttle:
//     rate: 100              # records let through per interval and key
//     per: 1s                # the interval (default 1s)
//     key: service           # expression; default: one budget for all records
//     event_time: ts         # expression; default: the record's Time
//     action: drop           # drop (default) or dead_letter
//
// Time is cut into intervals of `per` of event time (aligned to the unix
// epoch, as tumbling windows are). In each interval, the first `rate`
// records of a key pass; the others are dropped, or, with `action:
// dead_letter`, sent to the dead-letter output with reason "throttle" and
// the key, the rate and the interval in the error. A key's interval is the
// latest it has seen: a record from an earlier one counts against it.
// Because time is event time and the counts are checkpointed, the same
// input lets the same records through on every run, restarted or not. A
// null key is a key of its own; a record whose key or event time cannot be
// computed goes to the dead-letter output (reason "throttle" or
// "event_time").
type ThrottleConfig struct {
	Rate      int
	Per       time.Duration
	Key       *pipeline.Expr
	EventTime *pipeline.Expr
	Action    string
}

// UnmarshalYAML decodes the mapping, reporting every problem at its
// position.
func (c *ThrottleConfig) UnmarshalYAML(n ast.Node) error {
	pairs, err := yamlOptions(n, "throttle", "rate", "per", "key", "event_time", "action")
	if err != nil {
		return err
	}
	var errs pipeline.ConfigErrors
	for _, p := range pairs {
		var err error
		switch p.key {
		case "rate":
			c.Rate, err = p.integer("throttle: rate", 1, 1<<30)
		case "per":
			c.Per, err = p.duration("throttle: per", true)
		case "key":
			c.Key, err = p.expr("throttle: key")
		case "event_time":
			c.EventTime, err = p.expr("throttle: event_time")
		case "action":
			var s string
			if s, err = p.scalar("throttle: action"); err == nil {
				if s != "drop" && s != "dead_letter" {
					err = configErr(p.at(), "throttle: action: %q is not one of drop, dead_letter", s)
				}
				c.Action = s
			}
		default:
			err = configErr(p.kn, "throttle: unknown key %q (want %s)", p.key, knownKeys("rate", "per", "key", "event_time", "action"))
		}
		errs = appendConfigErr(errs, err, p.at())
	}
	if c.Rate == 0 && len(errs) == 0 {
		errs = append(errs, configErr(n, "throttle: needs `rate:`, the records let through per interval, such as 100"))
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Validate implements pipeline.Validator.
func (c *ThrottleConfig) Validate() error {
	if c.Rate < 1 {
		return fmt.Errorf("throttle: needs `rate:`, such as {rate: 100, per: 1s}")
	}
	return nil
}

// NewOperator implements pipeline.OperatorConfig.
func (c *ThrottleConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
	t := &throttle{id: b.Component, rate: c.Rate, per: int64(c.Per), deadLetter: c.Action == "dead_letter", keys: map[string]*throttleKey{}}
	if c.Key != nil {
		t.key = c.Key.Clone()
	}
	if c.EventTime != nil {
		t.eventTime = c.EventTime.Clone()
	}
	return t, nil
}

type throttle struct {
	id         string
	rate       int
	per        int64 // ns
	deadLetter bool
	key        *pipeline.Expr // nil: one budget
	eventTime  *pipeline.Expr // nil: Record.Time
	keys       map[string]*throttleKey
	latest     int64 // the latest interval seen, over all keys
	buf        []byte
}

// throttleKey is a key's count in its interval.
type throttleKey struct {
	Interval int64 `json:"i"` // start, unix ns
	Count    int   `json:"n"`
}

func (t *throttle) Process(_ context.Context, b *pipeline.Batch) error {
	out := b.Records[:0]
	for _, r := range b.Records {
		at := r.Time
		if t.eventTime != nil {
			v, err := t.eventTime.Eval(r)
			if err == nil {
				at, err = pipeline.ToTime(v)
			}
			if err != nil {
				b.Reject(r, t.id, "event_time", fmt.Errorf("throttle: event_time: %w", err))
				continue
			}
		}
		t.buf = t.buf[:0]
		if t.key != nil {
			v, err := t.key.Eval(r)
			if err != nil {
				b.Reject(r, t.id, "throttle", fmt.Errorf("throttle: key: %w", err))
				continue
			}
			t.buf = pipeline.AppendText(t.buf, v)
		}
		interval := floorDiv(at.UnixNano(), t.per) * t.per
		if interval > t.latest {
			t.latest = interval
			t.forgetBefore(interval)
		}
		k := t.keys[string(t.buf)]
		if k == nil {
			k = &throttleKey{Interval: interval}
			t.keys[string(t.buf)] = k
		}
		if interval > k.Interval {
			k.Interval, k.Count = interval, 0
		}
		if k.Count < t.rate {
			k.Count++
			out = append(out, r)
			continue
		}
		if t.deadLetter {
			b.Reject(r, t.id, "throttle", fmt.Errorf("throttle: key %q is over %d records per %s in the interval from %s",
				t.buf, t.rate, time.Duration(t.per), time.Unix(0, k.Interval).UTC().Format(pipeline.TimeLayout)))
		}
	}
	clear(b.Records[len(out):])
	b.Records = out
	return nil
}

// forgetBefore drops the keys whose interval ended before the one that
// starts at interval: they would start again from 0 anyway, so memory
// holds only the keys of the current interval and the one before.
func (t *throttle) forgetBefore(interval int64) {
	for k, v := range t.keys {
		if v.Interval < interval-t.per {
			delete(t.keys, k)
		}
	}
}

// throttleState is the checkpointed state.
type throttleState struct {
	Latest int64                   `json:"latest"`
	Keys   map[string]*throttleKey `json:"keys"`
}

// Snapshot implements pipeline.Snapshotter: each key's interval and count.
func (t *throttle) Snapshot() ([]byte, error) {
	return json.Marshal(throttleState{Latest: t.latest, Keys: t.keys})
}

// Restore implements pipeline.Snapshotter.
func (t *throttle) Restore(state []byte) error {
	var s throttleState
	if err := json.Unmarshal(state, &s); err != nil {
		return fmt.Errorf("throttle: restore: %w", err)
	}
	t.latest, t.keys = s.Latest, s.Keys
	if t.keys == nil {
		t.keys = map[string]*throttleKey{}
	}
	return nil
}
