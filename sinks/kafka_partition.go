package sinks

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/pipeline"
)

// The kafka sink's explicit partitions (`partition:`) and the topic it
// creates when missing (`create_topic:`).
//
// A record whose partition expression gives a number carries it, through
// Write or the exactly_once staging file, as a last header named
// kafkaPartitionHeader; produce strips that header and hands the number
// to kafkaPartitioner in the record's context. Records without one are
// partitioned as franz-go's default partitioner does (by key hash, or
// sticky when there is no key).

// KafkaCreateTopic is the `create_topic` option: the topic is created with
// these settings when it does not exist.
type KafkaCreateTopic struct {
	// Partitions is the partition count; required.
	Partitions int32 `yaml:"partitions"`
	// ReplicationFactor is the replica count; default -1 (the brokers'
	// default.replication.factor).
	ReplicationFactor int16 `yaml:"replication_factor"`
}

const kafkaPartitionHeader = "weir-partition"

type kafkaPartitionKey struct{}

// partitionOf evaluates the partition expression: -1 when there is none
// or it gives null.
func (f *kafkaFields) partitionOf(r *pipeline.Record) (int32, error) {
	if f.partition == nil {
		return -1, nil
	}
	v, err := f.partition.Eval(r)
	if err != nil {
		return -1, fmt.Errorf("kafka: partition: %w", err)
	}
	var n int64
	switch x := v.(type) {
	case nil:
		return -1, nil
	case int:
		n = int64(x)
	case int64:
		n = x
	case float64:
		if x != float64(int64(x)) {
			return -1, fmt.Errorf("kafka: partition: %v is not a whole number", x)
		}
		n = int64(x)
	case string:
		if n, err = strconv.ParseInt(x, 10, 32); err != nil {
			return -1, fmt.Errorf("kafka: partition: %q is not a number", x)
		}
	default:
		return -1, fmt.Errorf("kafka: partition: %v (%T) is not a number", v, v)
	}
	if n < 0 || n > 1<<31-1 {
		return -1, fmt.Errorf("kafka: partition: %d is out of range", n)
	}
	return int32(n), nil
}

// withPartition appends the partition header when p is one.
func withPartition(hs []kgo.RecordHeader, p int32) []kgo.RecordHeader {
	if p < 0 {
		return hs
	}
	return append(hs, kgo.RecordHeader{Key: kafkaPartitionHeader, Value: strconv.AppendInt(nil, int64(p), 10)})
}

// headerPartition reads the partition header withPartition appended.
func headerPartition(hs []kgo.RecordHeader) (int32, bool) {
	n := len(hs)
	if n == 0 || hs[n-1].Key != kafkaPartitionHeader {
		return 0, false
	}
	p, err := strconv.ParseInt(string(hs[n-1].Value), 10, 32)
	return int32(p), err == nil
}

// takePartition strips the partition header from a record about to be
// produced, and puts the partition where kafkaPartitioner finds it.
func takePartition(ctx context.Context, r *kgo.Record) {
	p, ok := headerPartition(r.Headers)
	if !ok {
		return
	}
	r.Headers = r.Headers[:len(r.Headers)-1]
	r.Context = context.WithValue(ctx, kafkaPartitionKey{}, p)
}

func forcedPartition(r *kgo.Record) (int32, bool) {
	if r.Context == nil {
		return 0, false
	}
	p, ok := r.Context.Value(kafkaPartitionKey{}).(int32)
	return p, ok
}

// kafkaPartitioner is franz-go's default partitioner, except for records
// with an explicit partition.
type kafkaPartitioner struct{ kgo.Partitioner }

func newKafkaPartitioner() kgo.Partitioner {
	return kafkaPartitioner{kgo.UniformBytesPartitioner(64<<10, true, true, nil)}
}

func (p kafkaPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return &kafkaTopicPartitioner{inner: p.Partitioner.ForTopic(topic)}
}

type kafkaTopicPartitioner struct{ inner kgo.TopicPartitioner }

func (p *kafkaTopicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	if _, ok := forcedPartition(r); ok {
		return true
	}
	return p.inner.RequiresConsistency(r)
}

func (p *kafkaTopicPartitioner) Partition(r *kgo.Record, n int) int {
	if f, ok := forcedPartition(r); ok {
		return int(f) % n // Check refused partitions the topic does not have
	}
	return p.inner.Partition(r, n)
}

func (p *kafkaTopicPartitioner) OnNewBatch() {
	if nb, ok := p.inner.(kgo.TopicPartitionerOnNewBatch); ok {
		nb.OnNewBatch()
	}
}

func (p *kafkaTopicPartitioner) PartitionByBackup(r *kgo.Record, n int, it kgo.TopicBackupIter) int {
	if f, ok := forcedPartition(r); ok {
		return int(f) % n
	}
	if bp, ok := p.inner.(kgo.TopicBackupPartitioner); ok {
		return bp.PartitionByBackup(r, n, it)
	}
	return p.inner.Partition(r, n)
}

// createTopic creates the sink's topic as create_topic says, when it is
// missing; a topic created meanwhile by another process is no error.
func (s *KafkaSink) createTopic(ctx context.Context, topic string) error {
	ct := s.cfg.CreateTopic
	rf := ct.ReplicationFactor
	if rf == 0 {
		rf = -1
	}
	resp, err := kadm.NewClient(s.meta).CreateTopic(ctx, ct.Partitions, rf, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("kafka: create topic %q: %w", topic, err)
	}
	s.logger.Info("kafka: created topic", "topic", topic, "partitions", ct.Partitions)
	return nil
}
