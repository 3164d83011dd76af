package operators

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/weirhq/weir/internal/kafkaconn"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("repartition", "re-key the stream through a Kafka topic, so that keyed operators after it see every record of a key in one partition", NewRepartitionConfig)
}

// RepartitionConfig is `repartition: {topic, key}`: the records are
// produced to topic, partitioned by key, and the operators after it read
// them back from that topic in a consumer group, as Kafka Streams does.
// The loader splits the pipeline there into two (see
// pipeline.SplitRepartitions): this operator is the end of the first, and
// a kafka source with `repartitioned: true` the start of the second.
//
// Watermarks cross the topic: every record carries the split it came
// from upstream (header weir-split), and every change of the upstream
// splits (announced, caught up, removed) is written to every partition of
// the topic (header weir-control), so the second pipeline keeps one
// watermark per (partition, upstream split) and a backlog read upstream
// one partition after another never makes records late downstream.
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
	if len(c.Brokers) > 0 {
		return c.Conn.Validate("repartition")
	}
	return nil
}

// Repartition implements pipeline.Repartitioner.
func (c *RepartitionConfig) Repartition() pipeline.Repartition {
	return pipeline.Repartition{Topic: c.Topic, Key: strings.TrimSpace(c.Key), Partitions: c.Partitions, Group: c.Group, HasBrokers: len(c.Brokers) > 0}
}

// NewOperator implements pipeline.OperatorConfig.
func (c *RepartitionConfig) NewOperator(pipeline.Build) (pipeline.Operator, error) {
	return &repartition{partitions: c.Partitions, names: map[repartitionSplit][]byte{}}, nil
}

type repartitionSplit struct {
	source int
	split  string
}

// repartition tags records with their upstream split and turns split
// changes into control records, one per partition of the topic.
type repartition struct {
	partitions int32
	names      map[repartitionSplit][]byte // (source, split) -> header value
}

func (o *repartition) name(source int, split string) []byte {
	k := repartitionSplit{source, split}
	if v, ok := o.names[k]; ok {
		return v
	}
	if len(o.names) > 1<<16 {
		clear(o.names)
	}
	v := []byte(strconv.Itoa(source) + ":" + split)
	o.names[k] = v
	return v
}

// Process implements pipeline.Operator.
func (o *repartition) Process(_ context.Context, b *pipeline.Batch) error {
	block := make([]pipeline.Header, len(b.Records))
	for i, r := range b.Records {
		h := pipeline.Header{Key: pipeline.RepartitionSplitHeader, Value: o.name(r.Source, r.Split)}
		if len(r.Headers) == 0 {
			block[i] = h
			r.Headers = block[i : i+1 : i+1]
			continue
		}
		r.Headers = append(r.Headers, h)
	}
	return nil
}

// OnSplits implements pipeline.SplitHandler.
func (o *repartition) OnSplits(_ context.Context, source int, c pipeline.SplitChange, b *pipeline.Batch) (bool, error) {
	for _, ev := range []struct {
		event  string
		splits []string
	}{{pipeline.RepartitionAdded, c.Added}, {pipeline.RepartitionCaughtUp, c.CaughtUp}, {pipeline.RepartitionRemoved, c.Removed}} {
		for _, split := range ev.splits {
			name := o.name(source, split)
			for p := range o.partitions {
				r := &pipeline.Record{Source: source, Split: split, Headers: []pipeline.Header{
					{Key: pipeline.RepartitionControlHeader, Value: []byte(ev.event)},
					{Key: pipeline.RepartitionSplitHeader, Value: name},
				}}
				fs := r.SetFields()
				fs.Set(pipeline.RepartitionPartitionField, int64(p))
				fs.Set("event", ev.event)
				fs.Set("split", string(name))
				b.Records = append(b.Records, r)
			}
		}
	}
	return false, nil
}
