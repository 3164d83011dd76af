package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkaconn"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("kafka",
		"produce to Kafka; exactly-once through one transaction per checkpoint, staged on disk first",
		true, NewKafkaConfig)
}

// KafkaConfig is the `kafka:` sink.
//
//	sinks:
//	  - kafka: { brokers: ["127.0.0.1:9092"], topic: errors, key: service }
//	  - kafka:
//	      brokers: ["kafka-1:9093"]
//	      topic: "alerts-{{ service }}"
//	      headers: { source: '"weir"', level: level }
//	      compression: zstd
//
// The record value is the record as JSON (its fields when parsed, else its
// raw bytes); the Kafka timestamp is the record's Time (now when unset).
//
// # Exactly-once: a write-ahead sink
//
// A franz-go transaction cannot be resumed by another producer after a
// crash, so the sink does not keep one open across a checkpoint. Instead:
//
//   - Write appends each record, with its topic, key and headers resolved,
//     to a staging file under the component's directory (CRC-32C over the
//     file).
//   - PreCommit(k) fsyncs the file and returns the token {instance, k,
//     file, count, bytes, crc, marker topic}. Nothing is visible yet.
//   - Commit(token), after the runtime has made checkpoint k durable,
//     produces the staged records in ONE Kafka transaction and, in the
//     same transaction, commits offset k with metadata {instance, k} for
//     the sink's own consumer group (sink_group, on partition 0 of the
//     marker topic). The transaction commits the records and the marker
//     atomically: the marker says whether the records landed.
//   - Commit is idempotent: a token this process already committed is a
//     no-op; after a failure or a restart, the marker is read first
//     (OffsetFetch with require_stable, so a pending transaction is waited
//     out), and if it already records k (or later) nothing is produced.
//   - Recover(token) first initialises the transactional producer, which
//     fences and aborts whatever the previous incarnation left open, then
//     re-commits the token as above and deletes every other staging file:
//     records written after the last PreCommit are never visible.
//
// The transactional id and the sink group are derived from the pipeline,
// the component and an instance id (random, made on a fresh start and
// carried in every token), so N weir processes with their own data_dirs
// never fence each other, and a data_dir started afresh never mistakes an
// old marker for its own. Set transactional_id and sink_group to pin them
// (ACLs); they must then differ per process.
//
// Under at_least_once the sink produces as it goes with the idempotent
// producer, and Flush (at every checkpoint) waits until everything is
// acknowledged.
type KafkaConfig struct {
	kafkaconn.Conn `yaml:",inline"`
	// Topic to produce to; may hold {{ expression }} templates
	// ("alerts-{{ service }}"). Required.
	Topic *pipeline.Template `yaml:"topic"`
	// Key is an expression for the record key (`service`, `user.id`); its
	// value as text. Default: the record's own key (a Kafka source's key),
	// none for other sources.
	Key *pipeline.Expr `yaml:"key"`
	// Partition is an expression for the partition to produce to (a
	// number); when absent or null, the partition is chosen by key hash,
	// as Kafka's default partitioner does. A number the topic has no
	// partition for sends the record to the dead-letter output.
	Partition *pipeline.Expr `yaml:"partition"`
	// CreateTopic creates the topic, with this many partitions, when it
	// does not exist; an existing topic with another partition count is
	// refused at start. Only for a topic without templates.
	CreateTopic *KafkaCreateTopic `yaml:"create_topic"`
	// Headers maps header names to expressions.
	Headers map[string]*pipeline.Expr `yaml:"headers"`
	// ForwardHeaders copies the record's own headers (a Kafka source's)
	// before those of headers.
	ForwardHeaders bool `yaml:"forward_headers"`
	// Compression is none, gzip, snappy (default), lz4 or zstd.
	Compression string `yaml:"compression"`
	// Linger is how long the producer waits to fill a batch; default 0
	// (franz-go sends as soon as it can while one request is in flight).
	Linger time.Duration `yaml:"linger"`
	// MaxMessageBytes is the largest record batch sent (the brokers'
	// message.max.bytes); default 1 MiB. A raw record larger than this goes
	// to the dead-letter output.
	MaxMessageBytes int32 `yaml:"max_message_bytes"`
	// TransactionalID overrides the transactional id (exactly_once);
	// default "weir.<pipeline>.<component>.<instance>".
	TransactionalID string `yaml:"transactional_id"`
	// SinkGroup overrides the consumer group that holds the commit marker
	// (exactly_once); default "weir-sink.<pipeline>.<component>.<instance>".
	SinkGroup string `yaml:"sink_group"`
	// TransactionTimeout is the broker's limit on one transaction; default
	// 60s. One checkpoint interval's output must be produced within it
	// (and it must not exceed the brokers' transaction.max.timeout.ms).
	TransactionTimeout time.Duration `yaml:"transaction_timeout"`
	// ChangelogTopic holds the keyed state of the pipeline's tasks when
	// this sink keeps them (a consumer group source, exactly_once; see
	// kafka_tasks.go); default "weir-changelog.<pipeline>.<component>",
	// created compacted when missing.
	ChangelogTopic string `yaml:"changelog_topic"`
}

// NewKafkaConfig returns a KafkaConfig with its defaults.
func NewKafkaConfig() *KafkaConfig {
	return &KafkaConfig{Compression: "snappy", MaxMessageBytes: 1 << 20, TransactionTimeout: 60 * time.Second}
}

// Validate implements pipeline.Validator.
func (c *KafkaConfig) Validate() error {
	if err := c.Conn.Validate("kafka"); err != nil {
		return err
	}
	if c.Topic == nil || c.Topic.Source == "" {
		return errors.New("kafka: topic is required")
	}
	if c.Topic.IsConstant() && !kafkaconn.ValidTopic(c.Topic.Source) {
		return fmt.Errorf("kafka: topic %q: %w", c.Topic.Source, kafkaconn.ErrInvalidTopic)
	}
	if _, err := kafkaCompression(c.Compression); err != nil {
		return err
	}
	if c.MaxMessageBytes < 0 || c.Linger < 0 || c.TransactionTimeout < 0 {
		return errors.New("kafka: max_message_bytes, linger and transaction_timeout must not be negative")
	}
	if ct := c.CreateTopic; ct != nil {
		if !c.Topic.IsConstant() {
			return errors.New("kafka: create_topic needs a topic without templates")
		}
		if ct.Partitions < 1 || ct.ReplicationFactor < -1 {
			return errors.New("kafka: create_topic: partitions must be at least 1, and replication_factor -1 (the brokers' default) or more")
		}
	}
	for name, e := range c.Headers {
		if e == nil {
			return fmt.Errorf("kafka: header %q needs an expression", name)
		}
	}
	return nil
}

func kafkaCompression(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "snappy":
		return kgo.SnappyCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("kafka: compression %q is not one of none, gzip, snappy, lz4, zstd", name)
}

type kafkaHeaderExpr struct {
	name string
	expr *pipeline.Expr
}

// kafkaFields evaluates what a record becomes in Kafka. Each KafkaSink
// holds two: one for Write (the sink's goroutine) and one for Check (the
// operator chain's), because expressions are not safe for concurrent use.
type kafkaFields struct {
	topic     *pipeline.Template
	constant  string // the topic when it has no expression
	key       *pipeline.Expr
	headers   []kafkaHeaderExpr
	partition *pipeline.Expr
	forward   bool
	buf       []byte
}

func newKafkaFields(c *KafkaConfig) *kafkaFields {
	f := &kafkaFields{topic: c.Topic.Clone(), forward: c.ForwardHeaders}
	if f.topic.IsConstant() {
		f.constant = f.topic.Source
	}
	if c.Key != nil {
		f.key = c.Key.Clone()
	}
	if c.Partition != nil {
		f.partition = c.Partition.Clone()
	}
	names := make([]string, 0, len(c.Headers))
	for n := range c.Headers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		f.headers = append(f.headers, kafkaHeaderExpr{n, c.Headers[n].Clone()})
	}
	return f
}

func (f *kafkaFields) topicOf(r *pipeline.Record) (string, error) {
	if f.constant != "" {
		return f.constant, nil
	}
	var err error
	f.buf, err = f.topic.Render(f.buf[:0], r)
	if err != nil {
		return "", fmt.Errorf("kafka: topic: %w", err)
	}
	if !kafkaconn.ValidTopic(string(f.buf)) {
		return "", fmt.Errorf("kafka: topic %q (from %q): %w", f.buf, f.topic.Source, kafkaconn.ErrInvalidTopic)
	}
	return string(f.buf), nil
}

func (f *kafkaFields) keyOf(r *pipeline.Record) ([]byte, error) {
	if f.key == nil {
		return r.Key, nil
	}
	v, err := f.key.Eval(r)
	if err != nil {
		return nil, fmt.Errorf("kafka: key: %w", err)
	}
	if v == nil {
		return nil, nil
	}
	return pipeline.AppendText(nil, v), nil
}

func (f *kafkaFields) headersOf(r *pipeline.Record) ([]kgo.RecordHeader, error) {
	var hs []kgo.RecordHeader
	if f.forward {
		for _, h := range r.Headers {
			hs = append(hs, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	for _, h := range f.headers {
		v, err := h.expr.Eval(r)
		if err != nil {
			return nil, fmt.Errorf("kafka: header %q: %w", h.name, err)
		}
		hs = append(hs, kgo.RecordHeader{Key: h.name, Value: pipeline.AppendText(nil, v)})
	}
	p, err := f.partitionOf(r)
	if err != nil {
		return nil, err
	}
	return withPartition(hs, p), nil
}

// NewSink implements pipeline.SinkConfig. It checks that the brokers
// answer before returning.
func (c *KafkaConfig) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	logger := b.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	base, err := c.Conn.Options(logger)
	if err != nil {
		return nil, err
	}
	codec, _ := kafkaCompression(c.Compression)
	maxBytes := c.MaxMessageBytes
	if maxBytes == 0 {
		maxBytes = 1 << 20
	}
	base = append(base, kgo.ProducerBatchCompression(codec), kgo.ProducerBatchMaxBytes(maxBytes))
	if c.Linger > 0 {
		base = append(base, kgo.ProducerLinger(c.Linger))
	}
	if c.Partition != nil {
		base = append(base, kgo.RecordPartitioner(newKafkaPartitioner()))
	}
	s := &KafkaSink{cfg: *c, logger: logger, base: base, maxBytes: int(maxBytes), slug: kafkaconn.Slug(b.Component),
		exactly: b.Guarantee == pipeline.ExactlyOnce, write: newKafkaFields(c), check: newKafkaFields(c),
		topics: map[string]kafkaTopicState{}}
	// meta checks the brokers now and answers Check's topic lookups; the
	// transactional client needs the instance id, which only Recover
	// learns from the checkpoint.
	if b.KeepTasks {
		s.setUpTasks(b)
	}
	meta, err := kgo.NewClient(base...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	s.meta = meta
	if err := s.start(b); err != nil {
		meta.Close()
		return nil, err
	}
	return s, nil
}

func (s *KafkaSink) start(b pipeline.Build) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout())
	defer cancel()
	if err := kafkaconn.Ping(ctx, s.meta, &s.cfg.Conn); err != nil {
		return err
	}
	if t := s.write.constant; t != "" {
		exists, partitions, err := s.lookupTopic(ctx, t)
		switch ct := s.cfg.CreateTopic; {
		case err != nil:
		case !exists && ct != nil:
			if err := s.createTopic(ctx, t); err != nil {
				return err
			}
			s.partitions = ct.Partitions
		case !exists:
			return fmt.Errorf("kafka: topic %q does not exist", t)
		case ct != nil && int32(partitions) != ct.Partitions:
			return fmt.Errorf("kafka: topic %q has %d partitions, but create_topic says %d: make them agree (records placed by partition would miss some)", t, partitions, ct.Partitions)
		default:
			s.partitions = int32(partitions)
		}
	}
	if s.exactly {
		dir, err := b.MkDir()
		if err != nil {
			return fmt.Errorf("kafka: create staging dir: %w", err)
		}
		s.dir = filepath.Join(dir, "staging")
		if err := os.MkdirAll(s.dir, 0o755); err != nil {
			return fmt.Errorf("kafka: create staging dir: %w", err)
		}
		return nil
	}
	cl, err := kgo.NewClient(s.base...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	s.cl = cl
	return nil
}

// lookupTopic asks the brokers whether topic exists. An error means they
// could not say.
func (s *KafkaSink) lookupTopic(ctx context.Context, topic string) (exists bool, partitions int, err error) {
	details, err := kadm.NewClient(s.meta).ListTopics(ctx, topic)
	if err != nil {
		return false, 0, err
	}
	d, ok := details[topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return false, 0, nil
	}
	return d.Err == nil, len(d.Partitions), d.Err
}

type kafkaTopicState struct {
	exists     bool
	partitions int32
	checked    time.Time
}

// topicExists caches lookupTopic for Check: a topic found stays found; one
// missing is asked about again after a few seconds (it may be created).
func (s *KafkaSink) topicExists(topic string) bool {
	return s.topicState(topic).exists
}

// topicState caches lookupTopic for Check; partitions is 0 when the
// brokers could not say.
func (s *KafkaSink) topicState(topic string) kafkaTopicState {
	if st, ok := s.topics[topic]; ok && (st.exists || time.Since(st.checked) < 5*time.Second) {
		return st
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	exists, partitions, err := s.lookupTopic(ctx, topic)
	if err != nil {
		return kafkaTopicState{exists: true} // the brokers could not say: let the producer find out
	}
	if len(s.topics) > 10000 {
		clear(s.topics)
	}
	st := kafkaTopicState{exists: exists, partitions: int32(partitions), checked: time.Now()}
	s.topics[topic] = st
	return st
}

// KafkaSink produces records to Kafka; see KafkaConfig for the protocol.
// Its methods are called from the sink's goroutine, except Check, which
// the operator chain calls and which shares nothing mutable with them.
type KafkaSink struct {
	cfg      KafkaConfig
	logger   *slog.Logger
	base     []kgo.Opt
	maxBytes int
	closed   bool
	slug     string // component id as a Kafka-safe string
	exactly  bool

	write *kafkaFields // Write's evaluators
	check *kafkaFields // Check's evaluators

	cl   *kgo.Client // the producer (transactional under exactly_once, made by Recover)
	meta *kgo.Client // metadata lookups and the start-up check

	// topics caches which rendered topics exist; only Check uses it.
	topics map[string]kafkaTopicState
	// partitions is the constant topic's partition count, learned at
	// start; 0 when unknown.
	partitions int32

	// at_least_once: the first error of an asynchronous produce.
	errMu    sync.Mutex // guards asyncErr; produce callbacks run on franz-go's goroutines
	asyncErr error

	// exactly_once
	dir       string // staging directory
	instance  string
	txnID     string
	group     string
	adm       *kadm.Client
	stage     *kafkaStagingFile // records written since the last PreCommit; nil when none
	stageSeq  int
	committed uint64 // the highest checkpoint this process saw land
	verify    bool   // read the marker before producing: a restart or a failed attempt happened
	topicIDs  map[string][16]byte
	entry     []byte      // one encoded staging entry
	body      []byte      // its body, before the length prefix
	tasks     *kafkaTasks // set when the sink keeps the pipeline's tasks
}

// Check implements pipeline.RecordChecker: a record whose topic, key or
// headers cannot be computed, whose topic does not exist, or whose raw
// value is over max_message_bytes, goes to the dead-letter output instead.
func (s *KafkaSink) Check(r *pipeline.Record) error {
	topic, err := s.check.topicOf(r)
	if err != nil {
		return err
	}
	if s.check.constant == "" && !s.topicExists(topic) {
		return fmt.Errorf("kafka: topic %q (from %q) does not exist", topic, s.cfg.Topic.Source)
	}
	if _, err := s.check.keyOf(r); err != nil {
		return err
	}
	hs, err := s.check.headersOf(r)
	if err != nil {
		return err
	}
	if p, ok := headerPartition(hs); ok {
		n := s.partitions
		if s.check.constant == "" {
			n = s.topicState(topic).partitions
		}
		if n > 0 && p >= n {
			return fmt.Errorf("kafka: partition %d: topic %q has %d partitions", p, topic, n)
		}
	}
	if !r.Parsed() && len(r.Value)+len(r.Key) > s.maxBytes {
		return fmt.Errorf("kafka: record of %d bytes is over max_message_bytes (%d)", len(r.Value)+len(r.Key), s.maxBytes)
	}
	return nil
}

// Write implements pipeline.Sink.
func (s *KafkaSink) Write(ctx context.Context, b *pipeline.Batch) error {
	if s.exactly {
		return s.stageRecords(b)
	}
	if err := s.err(); err != nil {
		return err
	}
	for _, r := range b.Records {
		kr, err := s.kafkaRecord(r)
		if err != nil {
			return err
		}
		takePartition(ctx, kr)
		s.cl.Produce(ctx, kr, s.produced)
	}
	return s.err()
}

func (s *KafkaSink) kafkaRecord(r *pipeline.Record) (*kgo.Record, error) {
	topic, err := s.write.topicOf(r)
	if err != nil {
		return nil, err
	}
	key, err := s.write.keyOf(r)
	if err != nil {
		return nil, err
	}
	hs, err := s.write.headersOf(r)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: topic, Key: key, Value: r.AppendJSON(nil), Headers: hs, Timestamp: r.Time}, nil
}

func (s *KafkaSink) produced(_ *kgo.Record, err error) {
	if err == nil {
		return
	}
	s.errMu.Lock()
	if s.asyncErr == nil {
		s.asyncErr = fmt.Errorf("kafka: produce: %w", err)
	}
	s.errMu.Unlock()
}

func (s *KafkaSink) err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.asyncErr
}

// Flush implements pipeline.Flusher (at_least_once): it returns once every
// record written so far is acknowledged by the brokers.
func (s *KafkaSink) Flush(ctx context.Context) error {
	if s.exactly {
		return nil
	}
	if err := s.cl.Flush(ctx); err != nil {
		return fmt.Errorf("kafka: flush: %w", err)
	}
	return s.err()
}

// Close implements pipeline.Sink. Under exactly_once, records staged since
// the last PreCommit stay on disk; Recover discards them.
func (s *KafkaSink) Close(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.stage != nil {
		err = s.stage.f.Close()
		s.stage = nil
	}
	s.meta.Close()
	if s.cl == nil {
		return err
	}
	if !s.exactly {
		if ferr := s.cl.Flush(ctx); ferr != nil && err == nil {
			err = fmt.Errorf("kafka: flush: %w", ferr)
		}
	}
	s.cl.Close()
	if err == nil {
		err = s.err()
	}
	return err
}
