package operators

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/internal/kafkaconn"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("repartition", "re-key the stream through a Kafka topic, so that keyed operators after it see every record of a key in one partition", NewRepartitionConfig)
}

// RepartitionConfig is `repartition: {topic, key}`: the records are
// produced to topic, partitioned by key, and the operators after it read
// them back from that topic in a consumer group, as Kafka Streams does.
// The loader splits the pipeline there into two (pipeline/repartition.go):
// this operator is the end of the first, and a kafka source with
// `repartitioned: true` the start of the second.
//
// Watermarks cross the topic: every record carries the split it came
// from upstream (header weir-split), and the operator writes to every
// partition of the topic, as control records (header weir-control), each
// upstream split's announcement, its removal, and about every 100 ms its
// progress: the largest event time it has sent. The second pipeline keeps
// one watermark per (partition, upstream split), which moves on with that
// progress even in a partition that gets none of the split's records. An
// upstream split whose owner died therefore holds the watermark after the
// repartition where it was, until its next owner sends it on: records of
// a backlog re-read upstream are never made late downstream.
type RepartitionConfig struct {
	// The Kafka connection (brokers, tls, sasl...); default that of the
	// pipeline's first kafka source.
	kafkaconn.Conn `yaml:",inline"`
	// Topic is the repartition topic; created, with Partitions partitions,
	// when missing. Required.
	Topic string `yaml:"topic"`
	// Key is the field (or expression) the records are re-keyed by.
	// Required. Keyed operators after the repartition must be aligned
	// with it (their group_by or key includes it).
	Key string `yaml:"key"`
	// Partitions is the topic's partition count, the most processes that
	// share the work after the repartition; default 6.
	Partitions int32 `yaml:"partitions"`
	// Group is the consumer group that reads the topic; default
	// "weir-<pipeline>-<topic>".
	Group string `yaml:"group"`
	// EventTime is the event time progress is reported in; default that
	// of the first window or dedupe after the repartition.
	EventTime *pipeline.Expr `yaml:"event_time"`

	eventTimeSet bool // event_time was configured
}

// NewRepartitionConfig returns a RepartitionConfig with its defaults.
func NewRepartitionConfig() *RepartitionConfig { return &RepartitionConfig{Partitions: 6} }

// Validate implements pipeline.Validator.
func (c *RepartitionConfig) Validate() error {
	switch {
	case c.Topic == "":
		return errors.New("repartition: topic is required")
	case !kafkaconn.ValidTopic(c.Topic):
		return fmt.Errorf("repartition: topic %q: %w", c.Topic, kafkaconn.ErrInvalidTopic)
	case strings.TrimSpace(c.Key) == "":
		return errors.New("repartition: key is required (the field the records are re-keyed by)")
	case c.Partitions < 1 || c.Partitions > 10000:
		return fmt.Errorf("repartition: partitions must be from 1 to 10000, got %d", c.Partitions)
	}
	if _, err := pipeline.CompileExpr(c.Key, pipeline.Pos{}); err != nil {
		return fmt.Errorf("repartition: key: %w", err)
	}
	c.eventTimeSet = c.EventTime != nil
	if len(c.Brokers) > 0 {
		return c.Conn.Validate("repartition")
	}
	return nil
}

// Repartition implements pipeline.Repartitioner.
func (c *RepartitionConfig) Repartition() pipeline.Repartition {
	return pipeline.Repartition{Topic: c.Topic, Key: strings.TrimSpace(c.Key), Partitions: c.Partitions, Group: c.Group, HasBrokers: len(c.Brokers) > 0}
}

// FollowEventTime implements pipeline.Repartitioner.
func (c *RepartitionConfig) FollowEventTime(e *pipeline.Expr) {
	if !c.eventTimeSet {
		c.EventTime = e
	}
}

// NewOperator implements pipeline.OperatorConfig.
func (c *RepartitionConfig) NewOperator(pipeline.Build) (pipeline.Operator, error) {
	o := &repartition{partitions: c.Partitions, splits: map[repartitionSplit]*repartitionProgress{}}
	if c.EventTime != nil {
		src := newValueSource(c.EventTime).clone()
		o.eventTime.src = &src
	}
	return o, nil
}

type repartitionSplit struct {
	source int
	split  string
}

// repartitionProgress is what the operator knows of one upstream split.
type repartitionProgress struct {
	name      []byte // the weir-split header value, "<source>:<split>"
	max, sent int64  // the largest event time seen, and last reported; ns
}

// repartition tags records with their upstream split, and turns split
// changes and progress into control records, one per partition.
type repartition struct {
	partitions int32
	eventTime  eventTimeSource
	tv         value
	splits     map[repartitionSplit]*repartitionProgress
	last       *repartitionProgress // the split of the previous record
	lastKey    repartitionSplit
}

func (o *repartition) split(source int, split string) *repartitionProgress {
	k := repartitionSplit{source, split}
	if o.last != nil && o.lastKey == k {
		return o.last
	}
	p, ok := o.splits[k]
	if !ok {
		p = &repartitionProgress{name: []byte(strconv.Itoa(source) + ":" + split), max: noWatermark, sent: noWatermark}
		o.splits[k] = p
	}
	o.last, o.lastKey = p, k
	return p
}

// Process implements pipeline.Operator.
func (o *repartition) Process(_ context.Context, b *pipeline.Batch) error {
	block := make([]pipeline.Header, len(b.Records))
	for i, r := range b.Records {
		p := o.split(r.Source, r.Split)
		if t, err := o.eventTime.of(r, &o.tv); err == nil && t > p.max {
			p.max = t // a record without one is dead-lettered after the topic
		}
		h := pipeline.Header{Key: pipeline.RepartitionSplitHeader, Value: p.name}
		if len(r.Headers) == 0 {
			block[i] = h
			r.Headers = block[i : i+1 : i+1]
			continue
		}
		r.Headers = append(r.Headers, h)
	}
	return nil
}

// Tick implements pipeline.Ticker: the progress of every upstream split
// that moved since the last tick goes to every partition.
func (o *repartition) Tick(_ context.Context, _ time.Time, b *pipeline.Batch) error {
	keys := slices.SortedFunc(maps.Keys(o.splits), func(a, b repartitionSplit) int {
		return cmp.Or(cmp.Compare(a.source, b.source), cmp.Compare(a.split, b.split))
	})
	for _, k := range keys {
		if p := o.splits[k]; p.max > p.sent {
			o.control(b, k.source, p, pipeline.RepartitionProgress, strconv.AppendInt(nil, p.max, 10))
			p.sent = p.max
		}
	}
	return nil
}

// OnSplits implements pipeline.SplitHandler.
func (o *repartition) OnSplits(_ context.Context, source int, c pipeline.SplitChange, b *pipeline.Batch) (bool, error) {
	// Every split of the source, read here or not, holds the second
	// stage's watermark from the start, until its progress comes.
	for _, split := range c.Known {
		if _, ok := o.splits[repartitionSplit{source, split}]; !ok {
			o.control(b, source, o.split(source, split), pipeline.RepartitionAdded, nil)
		}
	}
	for _, split := range c.Added {
		o.control(b, source, o.split(source, split), pipeline.RepartitionAdded, nil)
	}
	for _, split := range c.Removed {
		k := repartitionSplit{source, split}
		p, ok := o.splits[k]
		if !ok {
			continue
		}
		if p.max > p.sent {
			o.control(b, source, p, pipeline.RepartitionProgress, strconv.AppendInt(nil, p.max, 10))
		}
		if c.Finished {
			// Ended: the second stage forgets it. A split that moved to
			// another process (a revoked partition) keeps holding there
			// where it was, until its new owner sends it on.
			o.control(b, source, p, pipeline.RepartitionRemoved, nil)
		}
		delete(o.splits, k)
		o.last = nil
	}
	return false, nil
}

// control appends one control record per partition.
func (o *repartition) control(b *pipeline.Batch, source int, p *repartitionProgress, event string, at []byte) {
	for part := range o.partitions {
		r := &pipeline.Record{Source: source, Headers: []pipeline.Header{
			{Key: pipeline.RepartitionControlHeader, Value: []byte(event)},
			{Key: pipeline.RepartitionSplitHeader, Value: p.name},
		}}
		if at != nil {
			r.Headers = append(r.Headers, pipeline.Header{Key: pipeline.RepartitionTimeHeader, Value: at})
		}
		fs := r.SetFields()
		fs.Set(pipeline.RepartitionPartitionField, int64(part))
		fs.Set("event", event)
		fs.Set("split", string(p.name))
		b.Records = append(b.Records, r)
	}
}
