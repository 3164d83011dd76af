package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/internal/durable"
	"github.com/weirhq/weir/internal/kafkaconn"
	"github.com/weirhq/weir/internal/killpoint"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("kafka",
		"consume Kafka topics as a member of a consumer group; replayable by partition offsets",
		NewKafkaConfig)
}

// KafkaConfig is the `kafka:` source: one member of a Kafka consumer
// group. N weir processes with the same group (each with its own data_dir)
// share the topics' partitions; Kafka assigns them.
//
//	sources:
//	  - kafka: { brokers: ["127.0.0.1:9092"], topics: [logs], group: weir-app, start_at: committed }
//	  - kafka:
//	      brokers: ["kafka-1:9093"]
//	      topics: ["logs\\..*"]
//	      topic_regex: true
//	      group: weir-app
//	      tls: { ca_file: /etc/weir/ca.pem }
//	      sasl: { mechanism: scram-sha-512, username: weir, password: "${KAFKA_PASSWORD}" }
//
// Records carry the Kafka value, key and headers; Time is the Kafka
// timestamp and Origin is {Name: "topic/partition", Offset: offset}.
//
// # Positions and exactly-once
//
// weir's checkpoint is the source of truth for offsets: Position is the
// JSON of the next offset of every partition this process owns
// ({"logs":{"0":1200,"3":977}}), Seek restores it, and after every
// checkpoint has committed (the runtime runs the batch's AckFunc) the same
// offsets are committed to the group, for lag tooling and for the next
// owner of a partition. A partition that is assigned starts at:
//
//   - the larger of the checkpointed offset and the group's committed
//     offset, when the checkpoint this process restarted from has the
//     partition. The larger, because the group's offset is only ever an
//     offset whose output some weir process has committed: if another
//     process owned the partition since, its offset is ahead and ours is
//     stale; if the group's is behind, we crashed between our checkpoint
//     and our commit to the group, and ours is right.
//   - else the group's committed offset;
//   - else start_at.
//
// # Rebalancing: how a partition moves between processes exactly once
//
// When the group takes partitions away from this process, franz-go calls
// the revoke callback, and the rebalance waits for it to return. In it:
//
//  1. Under the source's lock, the partitions are marked "revoking". From
//     then on Read drops their records: whatever franz-go fetched but Read
//     has not returned is never handed on (the new owner re-reads it), and
//     the partition's next offset is frozen at the last record Read did
//     return.
//  2. Build.RequestCheckpoint is called until the offset acknowledged by a
//     completed checkpoint reaches that frozen offset (once is the rule; a
//     batch still on its way to the runtime's source stage needs a second
//     one). A completed checkpoint means the records up to the offset are
//     in committed sink output, and the checkpoint holds the offset.
//  3. That offset is committed to the group, synchronously.
//  4. Only then are the partitions forgotten (Position stops listing them)
//     and the callback returns; the rebalance goes on, and the new owner
//     reads the group's offset from step 3: the first record this process
//     did not hand on.
//
// Offset commits are serialized (a mutex), and the background commit after
// each checkpoint only commits partitions still owned, so a late commit of
// an older offset can never land after step 3 and rewind the new owner.
// Records of a partition re-assigned later are accepted only from its new
// start offset on, so a fetch left over from an earlier assignment is
// never handed on twice.
//
// What this does not cover, and why: a process that dies (kill -9, lost
// machine) does not run the callback. If it dies after a checkpoint has
// committed its sink output but before step 3's commit to the group, and
// the partition goes to another process before it restarts, the other
// process starts at the group's older offset and re-processes up to one
// checkpoint interval of that partition. Static membership (the default:
// instance_id is stable per data_dir) makes the group keep a dead member's
// partitions for session_timeout, so a process restarted within that time
// gets its partitions back, resumes from its own checkpoint and nothing is
// duplicated; only a process that stays dead longer hands its partitions
// over at the group's offset (at-least-once for that interval).
//
// Tasks close that gap: when the pipeline's sink keeps tasks
// (pipeline.TaskStore: postgres, kafka, parquet, arrow), Build.ClaimTask is
// set, every assigned partition is claimed before it is read and starts at
// its truth's offset (which wins over the checkpoint and the group), and
// the sink commits every owned partition's offset and keyed state with the
// output, refusing a process that lost the partition.
//
// # Per-partition watermarks
//
// Every record's Split is its "topic/partition", and the source reports
// its partitions as splits (pipeline.SplitSource), so event-time operators
// keep one watermark per partition and take the minimum: a partition
// fetched ahead of the others never makes their records late. A partition
// is announced when it is assigned (the first assignment after a start
// replaces whatever the checkpoint held), holds the watermark from then
// until its first record, and is forgotten when it is revoked or lost. It
// stops holding the watermark while it is caught up: a poll returned no
// records and its next offset has reached the end offset the broker lists
// (the last stable offset under read_committed), or, when a transaction
// marker sits at the end, it has returned records since it was assigned
// and two polls in a row found neither it nor its end offset moved. Its
// next record makes it hold again.
//
// # Lag
//
// Per owned partition, the records left to read (the end offset the last
// fetch reported minus the next offset; 0 while caught up) are exported as
// the weir.source.split.lag gauge, with the partition as weir.split, and
// their sum as weir.source.lag.
type KafkaConfig struct {
	kafkaconn.Conn `yaml:",inline"`
	// Topics to consume. Required.
	Topics []string `yaml:"topics"`
	// TopicRegex makes every entry of topics a regular expression;
	// matching topics created later are picked up.
	TopicRegex bool `yaml:"topic_regex"`
	// Group is the consumer group. Required. Processes with the same group
	// share the partitions.
	Group string `yaml:"group"`
	// StartAt is where a partition starts when neither weir's checkpoint
	// nor the group has an offset for it: committed (default: the group's
	// offset, else the earliest offset), earliest, latest, or an RFC 3339
	// time (the first record at or after it). It never overrides an offset
	// the group has: in a group, another weir process may have committed
	// it. To replay, reset the group's offsets and remove data_dir.
	StartAt string `yaml:"start_at"`
	// IsolationLevel is read_committed (default: records of aborted or open
	// transactions are never read) or read_uncommitted.
	IsolationLevel string `yaml:"isolation_level"`
	// StaticMembership makes this process a static group member (KIP-345):
	// a restart within session_timeout gets its partitions back without a
	// rebalance, and resumes them from its own checkpoint. Default true.
	// The price: a process stopped for good keeps its partitions idle
	// until session_timeout expires; set false where scaling in quickly
	// matters more (each partition move then goes through a rebalance).
	StaticMembership bool `yaml:"static_membership"`
	// InstanceID is the static member id; default
	// "weir-<pipeline>.<component>-<random>", created once per data_dir and
	// kept in it. Two processes must never share one.
	InstanceID string `yaml:"instance_id"`
	// SessionTimeout: a member that does not heartbeat for this long is
	// removed and its partitions reassigned; default 45s.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// RebalanceTimeout bounds a rebalance, including the checkpoint taken
	// before partitions are handed over; default 60s.
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// HeartbeatInterval; default 3s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// Balancer is cooperative-sticky (default: only moving partitions are
	// revoked), sticky, range or roundrobin.
	Balancer string `yaml:"balancer"`
	// PollTimeout is how long Read waits for records before it returns an
	// empty batch; default 200ms.
	PollTimeout time.Duration `yaml:"poll_timeout"`
	// Partitioned (partitioned_by) declares the field or expression the
	// producer keys records by, so that `weir validate` can check that
	// keyed operators of a scale-out pipeline are aligned with the
	// partitions (every record of a window's group in one partition).
	Partitioned string `yaml:"partitioned_by"`
	// FetchMaxBytes caps one fetch response; default 50 MiB.
	FetchMaxBytes int32 `yaml:"fetch_max_bytes"`
	// Repartitioned reads a topic that a `repartition` operator (or an
	// upstream weir pipeline like it) writes: the upstream split of every
	// record becomes a sub-split of its partition, control records become
	// split changes, and upstream dead letters go to this pipeline's
	// dead-letter output (see kafka_repartition.go). Set by the loader for
	// the pipeline after a repartition.
	Repartitioned bool `yaml:"repartitioned"`

	startAt   string    // committed | earliest | latest | time
	startTime time.Time // for time
}

// SplitsAreTasks implements pipeline.TaskSourceConfig: with a sink that
// keeps tasks, every partition is a task.
func (c *KafkaConfig) SplitsAreTasks() bool { return true }

// PartitionedBy implements pipeline.TaskSourceConfig.
func (c *KafkaConfig) PartitionedBy() string { return c.Partitioned }

// NewKafkaConfig returns a KafkaConfig with its defaults.
func NewKafkaConfig() *KafkaConfig {
	return &KafkaConfig{StartAt: "committed", IsolationLevel: "read_committed", StaticMembership: true,
		SessionTimeout: 45 * time.Second, RebalanceTimeout: 60 * time.Second, HeartbeatInterval: 3 * time.Second,
		Balancer: "cooperative-sticky", PollTimeout: 200 * time.Millisecond, FetchMaxBytes: 50 << 20}
}

// Validate implements pipeline.Validator.
func (c *KafkaConfig) Validate() error {
	if err := c.Conn.Validate("kafka"); err != nil {
		return err
	}
	if len(c.Topics) == 0 {
		return errors.New("kafka: topics is required")
	}
	for _, t := range c.Topics {
		if c.TopicRegex {
			if _, err := regexp.Compile(t); err != nil {
				return fmt.Errorf("kafka: topic regex %q: %w", t, err)
			}
		} else if !kafkaconn.ValidTopic(t) {
			return fmt.Errorf("kafka: topic %q: %w", t, kafkaconn.ErrInvalidTopic)
		}
	}
	if c.Group == "" {
		return errors.New("kafka: group is required (the consumer group that spreads partitions over weir processes)")
	}
	switch c.StartAt {
	case "", "committed", "earliest", "latest":
		c.startAt = c.StartAt
		if c.startAt == "" {
			c.startAt = "committed"
		}
	default:
		t, err := time.Parse(time.RFC3339Nano, c.StartAt)
		if err != nil {
			return fmt.Errorf("kafka: start_at %q: want committed, earliest, latest or an RFC 3339 time", c.StartAt)
		}
		c.startAt, c.startTime = "time", t
	}
	switch c.IsolationLevel {
	case "", "read_committed", "read_uncommitted":
	default:
		return fmt.Errorf("kafka: isolation_level %q is not read_committed or read_uncommitted", c.IsolationLevel)
	}
	if _, err := kafkaBalancer(c.Balancer); err != nil {
		return err
	}
	if c.SessionTimeout < 0 || c.RebalanceTimeout < 0 || c.HeartbeatInterval < 0 || c.PollTimeout < 0 {
		return errors.New("kafka: durations must not be negative")
	}
	if c.FetchMaxBytes < 0 {
		return errors.New("kafka: fetch_max_bytes must not be negative")
	}
	return nil
}

func kafkaBalancer(name string) (kgo.GroupBalancer, error) {
	switch name {
	case "", "cooperative-sticky":
		return kgo.CooperativeStickyBalancer(), nil
	case "sticky":
		return kgo.StickyBalancer(), nil
	case "range":
		return kgo.RangeBalancer(), nil
	case "roundrobin":
		return kgo.RoundRobinBalancer(), nil
	}
	return nil, fmt.Errorf("kafka: balancer %q is not one of cooperative-sticky, sticky, range, roundrobin", name)
}

// NewSource implements pipeline.SourceConfig. It checks that the brokers
// answer and that the topics exist (unless topic_regex) before returning;
// the group is joined by the first Read, after Seek.
func (c *KafkaConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
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
	known, err := c.probe(base)
	if err != nil {
		return nil, err
	}
	batch := b.BatchSize
	if batch <= 0 {
		batch = pipeline.DefaultBatchSize
	}
	s := &kafkaSource{cfg: *c, component: b.Component, logger: logger, batch: batch, request: b.RequestCheckpoint, claim: b.ClaimTask,
		parts: map[kafkaTP]*kafkaPartition{}, seek: map[kafkaTP]int64{},
		ready: make(chan struct{}), commitWake: make(chan struct{}, 1), stopCommit: make(chan struct{}), commitDone: make(chan struct{})}
	s.splits.Known = known
	if s.cfg.PollTimeout == 0 {
		s.cfg.PollTimeout = 200 * time.Millisecond
	}
	bal, _ := kafkaBalancer(c.Balancer)
	opts := append(base,
		kgo.ConsumerGroup(c.Group),
		kgo.ConsumeTopics(c.Topics...),
		kgo.DisableAutoCommit(),
		// The sentinel that tells "no committed offset" apart in adjust;
		// also where a partition resumes if its offset fell out of
		// retention.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(bal),
		kgo.AdjustFetchOffsetsFn(s.adjust),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
	)
	if c.TopicRegex {
		opts = append(opts, kgo.ConsumeRegex())
	}
	if c.IsolationLevel != "read_uncommitted" {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if c.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(c.SessionTimeout))
	}
	if c.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(c.RebalanceTimeout))
	}
	if c.HeartbeatInterval > 0 {
		opts = append(opts, kgo.HeartbeatInterval(c.HeartbeatInterval))
	}
	if c.FetchMaxBytes > 0 {
		opts = append(opts, kgo.FetchMaxBytes(c.FetchMaxBytes))
	}
	if c.StaticMembership {
		id := c.InstanceID
		if id == "" && b.Dir == "" {
			// Outside the runtime (no data_dir): an id for this run only.
			id = "weir-" + kafkaconn.Slug(b.Component) + "-" + kafkaconn.RandomHex(6)
		}
		if id == "" {
			dir, err := b.MkDir()
			if err != nil {
				return nil, fmt.Errorf("kafka: create component dir: %w", err)
			}
			if id, err = durable.ReadOrCreateID(filepath.Join(dir, "instance-id"), "weir-"+kafkaconn.Slug(b.Component)+"-"); err != nil {
				return nil, fmt.Errorf("kafka: %w", err)
			}
		}
		opts = append(opts, kgo.InstanceID(id))
		s.instanceID = id
	}
	s.opts = opts
	return s, nil
}

// probe checks the brokers and the topics with a short-lived client, and
// returns the topics' partitions as splits (none with topic_regex).
func (c *KafkaConfig) probe(base []kgo.Opt) ([]string, error) {
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout())
	defer cancel()
	if err := kafkaconn.Ping(ctx, cl, &c.Conn); err != nil {
		return nil, err
	}
	if c.TopicRegex {
		return nil, nil
	}
	details, err := kadm.NewClient(cl).ListTopics(ctx, c.Topics...)
	if err != nil {
		return nil, fmt.Errorf("kafka: list topics: %w", err)
	}
	var known []string
	for _, t := range c.Topics {
		d, ok := details[t]
		if (!ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition)) && c.Repartitioned {
			// The pipeline before the repartition creates it as it starts.
			if d, err = c.awaitTopic(cl, t); err != nil {
				return nil, err
			}
			ok = true
		}
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("kafka: topic %q does not exist", t)
		}
		if d.Err != nil {
			return nil, fmt.Errorf("kafka: topic %q: %w", t, d.Err)
		}
		for _, p := range slices.Sorted(maps.Keys(d.Partitions)) {
			known = append(known, kafkaSplit(kafkaTP{t, p}))
		}
	}
	return known, nil
}

// awaitTopic waits, up to a minute, for a repartition topic that the
// pipeline before it creates.
func (c *KafkaConfig) awaitTopic(cl *kgo.Client, topic string) (kadm.TopicDetail, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
		if d, ok := details[topic]; err == nil && ok && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return kadm.TopicDetail{}, fmt.Errorf("kafka: repartition topic %q does not exist, and the pipeline before the repartition did not create it within a minute", topic)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type kafkaTP struct {
	topic     string
	partition int32
}

// kafkaPartition is one owned partition. A new value is made each time the
// partition is assigned, so an AckFunc from an earlier ownership (compared
// by pointer) changes nothing.
type kafkaPartition struct {
	next      int64 // offset after the last record Read returned; -1 until known
	acked     int64 // next offset as of the last completed checkpoint; -1 until known
	committed int64 // last offset committed to the group by this process
	revoking  bool  // being handed back: Read drops its records

	// Split state (see "Per-partition watermarks" on KafkaConfig).
	caughtUp bool  // reported caught up, and no record since
	moved    bool  // Read returned a record of it since it was assigned
	stalled  int64 // next offset at the previous empty poll that found it short of its end; -1: none
	end      int64 // end offset listed at that poll

	// subs caches the sub-split names of a repartitioned partition by
	// their weir-split header, so that a record does not build its own.
	subs map[string]string

	// endOffset is the partition's end for this consumer (endOf) as the
	// last fetch Read took, or the last listing, reported it; -1 until
	// known. It gives the lag (see SplitLags).
	endOffset int64
}

// lag is how many records of the partition are left to read, and whether
// that is known: none while caught up, else the end offset minus the next
// offset.
func (p *kafkaPartition) lag() (int64, bool) {
	switch {
	case p.next < 0 || p.endOffset < 0:
		return 0, false
	case p.caughtUp:
		return 0, true
	}
	return max(p.endOffset-p.next, 0), true
}

type kafkaSource struct {
	cfg       KafkaConfig
	component string
	opts      []kgo.Opt
	logger    *slog.Logger
	batch     int
	request   func(context.Context) error // Build.RequestCheckpoint; nil outside the runtime
	claim     pipeline.TaskClaimer        // Build.ClaimTask; nil: partitions are not tasks
	// instanceID is the static member id (empty without static membership).
	instanceID string

	cl  *kgo.Client // made by the first Read, after Seek; then never changes
	adm *kadm.Client
	// ready is closed once cl and adm are set: franz-go may call the group
	// callbacks before kgo.NewClient has returned to start.
	ready chan struct{}

	// mu guards parts, seek and closing. Read, Position, the acks (from the
	// runtime's coordinator), franz-go's group callbacks and the metrics
	// reader (SplitLags, Lag) all take it; none holds it across a network
	// call.
	mu      sync.Mutex
	parts   map[kafkaTP]*kafkaPartition // owned partitions
	seek    map[kafkaTP]int64           // checkpointed offsets not yet used by an assignment
	closing bool
	// splits is the split change not yet taken by SplitChanges; assigned
	// tells whether an assignment happened since the start (the first one
	// resets the splits restored from a checkpoint).
	splits   pipeline.SplitChange
	assigned bool
	// claimErr is a failed task claim: Read returns it, and the pipeline
	// restarts (its partitions cannot be read without their truth).
	claimErr error

	// commitMu serializes offset commits to the group (the committer
	// goroutine, the revoke callback, Close), so that a commit of an older
	// offset never lands after the revoke callback's last one. Lock order:
	// commitMu before mu.
	commitMu   sync.Mutex
	commitWake chan struct{} // an ack moved an offset: commit it
	stopCommit chan struct{}
	commitDone chan struct{}
}

func (s *kafkaSource) start() error {
	cl, err := kgo.NewClient(s.opts...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	s.cl, s.adm = cl, kadm.NewClient(cl)
	close(s.ready)
	go s.committer()
	return nil
}

// Read implements pipeline.Source: it returns what franz-go has fetched (up
// to the batch size), or an empty batch after poll_timeout.
func (s *kafkaSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	if s.cl == nil {
		if err := s.start(); err != nil {
			return nil, err
		}
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PollTimeout)
	fetches := s.cl.PollRecords(pctx, s.batch)
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	resets, err := s.fetchErrors(fetches)
	if err != nil {
		return nil, err
	}
	if len(resets) > 0 {
		s.applyResets(resets)
	}
	s.mu.Lock()
	cerr := s.claimErr
	s.mu.Unlock()
	if cerr != nil {
		return nil, cerr
	}
	n := fetches.NumRecords()
	if n == 0 {
		s.checkCaughtUp(ctx)
		return nil, nil
	}
	recs := pipeline.NewRecords(n)
	used := 0
	var moved []kafkaAck
	s.mu.Lock()
	defer s.mu.Unlock()
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		key := kafkaTP{p.Topic, p.Partition}
		st := s.parts[key]
		if st == nil || st.revoking {
			return // not ours (any more): the owner re-reads from the committed offset
		}
		if end := s.endOf(p.FetchPartition); p.Err == nil && end >= 0 {
			st.endOffset = end
		}
		if len(p.Records) == 0 {
			return
		}
		name := kafkaSplit(key)
		for _, kr := range p.Records {
			if kr.Offset < st.next {
				continue // left over from an earlier assignment
			}
			if s.cfg.Repartitioned && s.upstreamRecord(kr, name, b) {
				st.next = kr.Offset + 1
				st.moved, st.caughtUp, st.stalled = true, false, -1
				continue
			}
			r := recs[used]
			used++
			r.Value, r.Key, r.Time = kr.Value, kr.Key, kr.Timestamp
			r.Split = name
			r.Origin = pipeline.Origin{Name: name, Offset: kr.Offset}
			if len(kr.Headers) > 0 {
				r.Headers = make([]pipeline.Header, 0, len(kr.Headers))
				for _, h := range kr.Headers {
					if s.cfg.Repartitioned && h.Key == pipeline.RepartitionSplitHeader {
						r.Split = st.subSplit(name, h.Value)
						continue
					}
					r.Headers = append(r.Headers, pipeline.Header{Key: h.Key, Value: h.Value})
				}
			}
			st.next = kr.Offset + 1
			st.moved, st.caughtUp, st.stalled = true, false, -1
		}
		if !st.caughtUp && st.next >= s.endOf(p.FetchPartition) {
			st.caughtUp = true
			s.splits.CaughtUp = append(s.splits.CaughtUp, name)
		}
		moved = append(moved, kafkaAck{key, st, st.next})
	})
	b.Records = append(b.Records, recs[:used]...)
	if len(moved) == 0 {
		return nil, nil
	}
	return func(context.Context) error { s.ack(moved); return nil }, nil
}

type kafkaAck struct {
	key  kafkaTP
	part *kafkaPartition
	next int64
}

// ack runs once the checkpoint covering a batch has committed.
func (s *kafkaSource) ack(moved []kafkaAck) {
	s.mu.Lock()
	for _, m := range moved {
		if s.parts[m.key] == m.part && m.next > m.part.acked {
			m.part.acked = m.next
		}
	}
	s.mu.Unlock()
	select {
	case s.commitWake <- struct{}{}:
	default:
	}
}

// fetchErrors logs what franz-go retries by itself, returns the
// partitions franz-go reset after losing its place, and returns as an
// error what it cannot fix (refused authorization).
func (s *kafkaSource) fetchErrors(fs kgo.Fetches) ([]*kgo.ErrDataLoss, error) {
	var fatal error
	var resets []*kgo.ErrDataLoss
	fs.EachError(func(t string, p int32, err error) {
		var loss *kgo.ErrDataLoss
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			// the idle poll timeout
		case errors.Is(err, kgo.ErrClientClosed):
			fatal = errors.New("kafka: client closed")
		case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed),
			errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
			fatal = fmt.Errorf("kafka: %w", err)
		case errors.As(err, &loss):
			s.logger.Warn("kafka: records were lost before weir read them (retention, truncation or a re-created topic)",
				"topic", t, "partition", p, "err", err)
			resets = append(resets, loss)
		default:
			s.logger.Warn("kafka: fetch", "topic", t, "partition", p, "err", err)
		}
	})
	return resets, fatal
}

// applyResets follows franz-go when it moved a partition back (a log
// truncated or a topic re-created): the records from there on are new, and
// must not be dropped as left-overs of an earlier assignment.
func (s *kafkaSource) applyResets(resets []*kgo.ErrDataLoss) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range resets {
		if st := s.parts[kafkaTP{r.Topic, r.Partition}]; st != nil && !st.revoking && r.ResetTo >= 0 && r.ResetTo < st.next {
			st.next = r.ResetTo
		}
	}
}

// claimTasks claims every assigned partition as a task (when the runtime
// made partitions tasks) in the current group generation, and returns the
// start offsets the claims found. A claim that fails is returned as an
// error: the runtime restarts the pipeline, and the group rebalances.
func (s *kafkaSource) claimTasks(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[kafkaTP]int64, error) {
	if s.claim == nil {
		return nil, nil
	}
	f := s.GroupFence()
	out := map[kafkaTP]int64{}
	for t, ps := range offsets {
		for p := range ps {
			key := kafkaTP{t, p}
			c, err := s.claim(ctx, kafkaSplit(key), f)
			if err != nil && ctx.Err() != nil {
				// The group moved on (a rebalance, a lost session) while the
				// claim was under way: this assignment is over.
				err = fmt.Errorf("%w (%v)", pipeline.ErrFenced, err)
			}
			if err != nil {
				return out, fmt.Errorf("kafka: claim task %s in generation %d: %w", kafkaSplit(key), f.Generation, err)
			}
			if c.Found {
				out[key] = c.Offset
			}
		}
	}
	return out, nil
}

// GroupFence implements pipeline.TaskSource: the group membership now.
func (s *kafkaSource) GroupFence() pipeline.Fence {
	f := pipeline.Fence{Group: s.cfg.Group, InstanceID: s.instanceID, Generation: -1}
	select {
	case <-s.ready:
	default:
		return f // not in the group yet
	}
	member, gen := s.cl.GroupMetadata()
	f.MemberID, f.Generation = member, int64(gen)
	return f
}

// TaskOffsets implements pipeline.TaskSource: the next offset of every
// owned partition (one being handed back included: the checkpoint before
// the hand-over commits its truth). Nil when partitions are not tasks.
func (s *kafkaSource) TaskOffsets() map[string]int64 {
	if s.claim == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.parts))
	for k, st := range s.parts {
		if st.next >= 0 {
			out[kafkaSplit(k)] = st.next
		}
	}
	return out
}

// kafkaSplit is a partition's split name, as in Record.Split and Origin.
func kafkaSplit(k kafkaTP) string { return k.topic + "/" + strconv.Itoa(int(k.partition)) }

// SplitLags implements pipeline.SplitLagger: per owned partition
// ("topic/partition"), the records left to read, in messages: the end
// offset (the high watermark, or the last stable offset under
// read_committed) minus the offset after the last record Read returned; 0
// while the partition is caught up (see "Per-partition watermarks" on
// KafkaConfig: a transaction marker at the end is not a record to read).
// The end offset is the one the last fetch Read took reported (or the
// listing of an empty poll), so while Read is not called (backpressure)
// the figure stays where it was. A partition is listed once both its next
// offset and its end offset are known. Safe for concurrent use.
func (s *kafkaSource) SplitLags() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.parts))
	for k, st := range s.parts {
		if lag, ok := st.lag(); ok {
			out[kafkaSplit(k)] = lag
		}
	}
	return out
}

// Lag implements pipeline.Lagger: the sum of SplitLags, in messages.
func (s *kafkaSource) Lag() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, st := range s.parts {
		if lag, ok := st.lag(); ok {
			n += lag
		}
	}
	return n
}

// SplitChanges implements pipeline.SplitSource.
func (s *kafkaSource) SplitChanges() pipeline.SplitChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.splits
	s.splits = pipeline.SplitChange{}
	return c
}

// endOf is where a fetched partition ends for this consumer: the last
// stable offset under read_committed, else the high watermark.
func (s *kafkaSource) endOf(p kgo.FetchPartition) int64 {
	if s.cfg.IsolationLevel == "read_uncommitted" {
		return p.HighWatermark
	}
	return p.LastStableOffset
}

// checkCaughtUp runs after a poll that returned no records: owned
// partitions that have reached the end offset the broker lists are caught
// up (see "Per-partition watermarks" on KafkaConfig). A failed listing
// changes nothing: the partitions keep holding the watermark.
func (s *kafkaSource) checkCaughtUp(ctx context.Context) {
	s.mu.Lock()
	var topics []string
	for k, st := range s.parts {
		if !st.caughtUp && !st.revoking && st.next >= 0 && !slices.Contains(topics, k.topic) {
			topics = append(topics, k.topic)
		}
	}
	s.mu.Unlock()
	if len(topics) == 0 {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.PollTimeout*5)
	defer cancel()
	var listed kadm.ListedOffsets
	var err error
	if s.cfg.IsolationLevel == "read_uncommitted" {
		listed, err = s.adm.ListEndOffsets(lctx, topics...)
	} else {
		listed, err = s.adm.ListCommittedOffsets(lctx, topics...)
	}
	if err != nil {
		s.logger.Debug("kafka: list end offsets", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, st := range s.parts {
		if st.caughtUp || st.revoking || st.next < 0 {
			continue
		}
		o, ok := listed.Lookup(k.topic, k.partition)
		if !ok || o.Err != nil {
			continue
		}
		st.endOffset = o.Offset
		switch {
		case st.next >= o.Offset:
		case st.moved && st.stalled == st.next && st.end == o.Offset:
			// Short of the end by what can only be transaction markers:
			// nothing came in two empty polls, and the end did not move.
		default:
			st.stalled, st.end = st.next, o.Offset
			continue
		}
		st.caughtUp = true
		s.splits.CaughtUp = append(s.splits.CaughtUp, kafkaSplit(k))
	}
}

// kafkaPosition is the checkpointed form: topic → partition → next offset.
type kafkaPosition map[string]map[string]int64

// Position implements pipeline.Positioned: the next offset of every owned
// partition, plus checkpointed offsets that no assignment has used yet
// (still this process's best knowledge; see the type's doc).
func (s *kafkaSource) Position() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pos := kafkaPosition{}
	put := func(k kafkaTP, off int64) {
		if off < 0 {
			return
		}
		if pos[k.topic] == nil {
			pos[k.topic] = map[string]int64{}
		}
		pos[k.topic][strconv.Itoa(int(k.partition))] = off
	}
	for k, off := range s.seek {
		put(k, off)
	}
	for k, st := range s.parts {
		put(k, st.next)
	}
	return json.Marshal(pos)
}

// Seek implements pipeline.Positioned.
func (s *kafkaSource) Seek(_ context.Context, data []byte) error {
	var pos kafkaPosition
	if err := json.Unmarshal(data, &pos); err != nil {
		return fmt.Errorf("kafka: checkpointed position: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, ps := range pos {
		for p, off := range ps {
			n, err := strconv.ParseInt(p, 10, 32)
			if err != nil || n < 0 || off < 0 {
				return fmt.Errorf("kafka: checkpointed position: bad partition %s/%s at %d", t, p, off)
			}
			s.seek[kafkaTP{t, int32(n)}] = off
		}
	}
	return nil
}

// adjust runs when partitions are assigned, after franz-go has fetched the
// group's committed offsets and before it fetches records: it picks each
// partition's start (see the type's doc) and takes ownership.
func (s *kafkaSource) adjust(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	<-s.ready
	starts := map[kafkaTP]int64{}
	var unknown []kafkaTP
	s.mu.Lock()
	for t, ps := range offsets {
		for p, o := range ps {
			key := kafkaTP{t, p}
			committed := o.EpochOffset().Offset // the reset sentinel AtStart is -2: no commit
			ck, hasCk := s.seek[key]
			if s.claim != nil {
				// With tasks the truth is the sink's: a checkpoint of this
				// process may be ahead of it (its commit never landed), so
				// a partition the truth does not know starts at the
				// group's offset, never at the checkpoint's.
				delete(s.seek, key)
				hasCk = false
			}
			switch {
			case hasCk:
				starts[key] = max(ck, committed)
				delete(s.seek, key)
			case committed >= 0:
				starts[key] = committed
			default:
				unknown = append(unknown, key)
			}
		}
	}
	s.mu.Unlock()
	resolved := s.resolveStart(ctx, unknown)
	claimed, cerr := s.claimTasks(ctx, offsets)
	killpoint.Hit(killpoint.KafkaAssigned)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cerr != nil && s.claimErr == nil {
		s.claimErr = cerr
	}
	for _, key := range unknown {
		if off, ok := resolved[key]; ok {
			starts[key] = off
		}
	}
	for key, off := range claimed {
		starts[key] = off // the task's truth wins over the checkpoint and the group
	}
	for t, ps := range offsets {
		for p := range ps {
			key := kafkaTP{t, p}
			off, ok := starts[key]
			if !ok {
				// Could not list offsets: let franz-go resolve start_at;
				// the first record fixes the position.
				ps[p] = s.symbolicStart()
				s.parts[key] = &kafkaPartition{next: -1, acked: -1, committed: -1, endOffset: -1}
				continue
			}
			ps[p] = kgo.NewOffset().At(off)
			s.parts[key] = &kafkaPartition{next: off, acked: off, committed: -1, endOffset: -1}
		}
	}
	for t, ps := range offsets {
		for p := range ps {
			s.parts[kafkaTP{t, p}].stalled = -1
			s.splits.Added = append(s.splits.Added, kafkaSplit(kafkaTP{t, p}))
		}
	}
	if !s.assigned {
		// The first assignment is the whole set: splits restored from the
		// checkpoint that it does not hold belong to another process now.
		s.assigned, s.splits.Reset = true, true
	}
	assigned := map[string][]int32{}
	for t, ps := range offsets {
		for p := range ps {
			assigned[t] = append(assigned[t], p)
		}
	}
	s.logger.Info("kafka: partitions assigned", "group", s.cfg.Group, "partitions", describeKafkaPartitions(assigned))
	return offsets, nil
}

func (s *kafkaSource) symbolicStart() kgo.Offset {
	switch s.cfg.startAt {
	case "latest":
		return kgo.NewOffset().AtEnd()
	case "time":
		return kgo.NewOffset().AfterMilli(s.cfg.startTime.UnixMilli())
	}
	return kgo.NewOffset().AtStart()
}

// resolveStart lists start_at's offset for partitions with no offset.
func (s *kafkaSource) resolveStart(ctx context.Context, keys []kafkaTP) map[kafkaTP]int64 {
	if len(keys) == 0 {
		return nil
	}
	var topics []string
	for _, k := range keys {
		if !slices.Contains(topics, k.topic) {
			topics = append(topics, k.topic)
		}
	}
	var listed kadm.ListedOffsets
	var err error
	switch s.cfg.startAt {
	case "latest":
		if s.cfg.IsolationLevel == "read_uncommitted" {
			listed, err = s.adm.ListEndOffsets(ctx, topics...)
		} else {
			listed, err = s.adm.ListCommittedOffsets(ctx, topics...)
		}
	case "time":
		listed, err = s.adm.ListOffsetsAfterMilli(ctx, s.cfg.startTime.UnixMilli(), topics...)
	default:
		listed, err = s.adm.ListStartOffsets(ctx, topics...)
	}
	if err != nil {
		s.logger.Warn("kafka: list start offsets", "err", err)
	}
	out := map[kafkaTP]int64{}
	for _, k := range keys {
		if o, ok := listed.Lookup(k.topic, k.partition); ok && o.Err == nil && o.Offset >= 0 {
			out[k] = o.Offset
		}
	}
	return out
}

// onRevoked hands partitions back; see the type's doc for the order.
func (s *kafkaSource) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	<-s.ready
	var keys []kafkaTP
	s.mu.Lock()
	closing := s.closing
	for t, ps := range revoked {
		for _, p := range ps {
			key := kafkaTP{t, p}
			if st := s.parts[key]; st != nil {
				st.revoking = true
				keys = append(keys, key)
			}
		}
	}
	s.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	if !closing && s.request != nil {
		killpoint.Hit(killpoint.KafkaRevokeBeforeCheckpoint)
		s.checkpointBeforeHandoff(ctx, keys)
		killpoint.Hit(killpoint.KafkaRevokeBeforeCommit)
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.commitAcked(ctx, keys)
	s.mu.Lock()
	for _, k := range keys {
		delete(s.parts, k)
		s.splits.Removed = append(s.splits.Removed, kafkaSplit(k))
	}
	s.mu.Unlock()
	s.logger.Info("kafka: partitions handed back", "group", s.cfg.Group, "partitions", describeKafkaPartitions(revoked))
}

// checkpointBeforeHandoff asks for checkpoints until every record Read
// returned from keys is in a completed one.
func (s *kafkaSource) checkpointBeforeHandoff(ctx context.Context, keys []kafkaTP) {
	timeout := s.cfg.RebalanceTimeout * 3 / 4
	if timeout <= 0 {
		timeout = 45 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for attempt := 0; attempt < 20; attempt++ {
		if s.allAcked(keys) {
			return
		}
		if err := s.request(ctx); err != nil {
			s.logger.Warn("kafka: no checkpoint before handing partitions back; their new owner starts at the last committed offset and may process records again",
				"group", s.cfg.Group, "err", err)
			return
		}
	}
	s.logger.Warn("kafka: checkpoints did not cover the partitions being handed back", "group", s.cfg.Group)
}

func (s *kafkaSource) allAcked(keys []kafkaTP) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if st := s.parts[k]; st != nil && st.acked < st.next {
			return false
		}
	}
	return true
}

// onLost forgets partitions the group took without a revoke (session
// expired): nothing can be committed for them any more.
func (s *kafkaSource) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	<-s.ready
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, ps := range lost {
		for _, p := range ps {
			if _, ok := s.parts[kafkaTP{t, p}]; ok {
				delete(s.parts, kafkaTP{t, p})
				s.splits.Removed = append(s.splits.Removed, kafkaSplit(kafkaTP{t, p}))
			}
		}
	}
	s.logger.Warn("kafka: partitions lost (session expired or fenced); their new owner starts at the last committed offset",
		"group", s.cfg.Group, "partitions", describeKafkaPartitions(lost))
}

// committer commits acknowledged offsets to the group after checkpoints.
func (s *kafkaSource) committer() {
	defer close(s.commitDone)
	for {
		select {
		case <-s.stopCommit:
			return
		case <-s.commitWake:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.commitMu.Lock()
		s.commitAcked(ctx, nil)
		s.commitMu.Unlock()
		cancel()
	}
}

// commitAcked commits the acknowledged offsets of keys (nil: every owned
// partition) that moved since the last commit. The caller holds commitMu.
func (s *kafkaSource) commitAcked(ctx context.Context, keys []kafkaTP) {
	type pending struct {
		part *kafkaPartition
		off  int64
	}
	todo := map[kafkaTP]pending{}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	s.mu.Lock()
	add := func(k kafkaTP, st *kafkaPartition) {
		if st == nil || st.acked < 0 || st.acked <= st.committed {
			return
		}
		todo[k] = pending{st, st.acked}
		if offsets[k.topic] == nil {
			offsets[k.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[k.topic][k.partition] = kgo.EpochOffset{Epoch: -1, Offset: st.acked}
	}
	if keys == nil {
		for k, st := range s.parts {
			add(k, st)
		}
	} else {
		for _, k := range keys {
			add(k, s.parts[k])
		}
	}
	s.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	var cerr error
	s.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, e)
				}
			}
		}
	})
	if cerr != nil {
		s.logger.Warn("kafka: commit offsets to the group", "group", s.cfg.Group, "err", cerr)
		return
	}
	s.mu.Lock()
	for _, p := range todo {
		p.part.committed = max(p.part.committed, p.off)
	}
	s.mu.Unlock()
}

// Close implements pipeline.Source: it commits the acknowledged offsets to
// the group and leaves it (a static member stays, so a restart within
// session_timeout keeps its partitions).
func (s *kafkaSource) Close(ctx context.Context) error {
	s.mu.Lock()
	already := s.closing
	s.closing = true
	s.mu.Unlock()
	if s.cl == nil || already {
		return nil
	}
	close(s.stopCommit)
	<-s.commitDone
	s.commitMu.Lock()
	s.commitAcked(ctx, nil)
	s.commitMu.Unlock()
	s.cl.Close()
	return nil
}

// describe renders partitions for logs: "logs/0,logs/3".
func describeKafkaPartitions(m map[string][]int32) string {
	var out []string
	for t, ps := range m {
		for _, p := range ps {
			out = append(out, t+"/"+strconv.Itoa(int(p)))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}
