package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

// The Kafka sink keeps task truths (pipeline.TaskStore) in Kafka, in the
// transaction that produces the output, as Kafka Streams' exactly-once v2
// does:
//
//   - the source's consumer group gets the tasks' next offsets through
//     TxnOffsetCommit with the member id, instance id and generation of
//     the process now: the broker refuses them (and the transaction is
//     aborted, its output never visible) once the member is stale, so a
//     process that lost its partitions cannot commit for them;
//   - the tasks' states go to a compacted changelog topic (default
//     "weir-changelog.<component>"), in chunks of at most 512 KiB keyed
//     "<task>#<i>";
//   - a tasks group ("weir-tasks.<component>", shared by every process of
//     the pipeline) gets each task's next offset on the task's own topic
//     and partition, with metadata naming the state's chunks (changelog
//     offsets): that is what a claim reads, waiting out transactions in
//     flight (require_stable).
//
// A checkpoint that was saved but whose transaction did not land is never
// produced again after a restart: its tasks' truths are still the
// previous commit's, which whoever owns the tasks now resumes from.

// kafkaTaskTruth is one task's truth in a commit token.
type kafkaTaskTruth struct {
	Task   string            `json:"task"`
	Offset int64             `json:"offset"`
	States map[string][]byte `json:"states,omitempty"`
}

// kafkaTaskMeta is the metadata of a task's offset in the tasks group.
type kafkaTaskMeta struct {
	Owner      string  `json:"owner"`
	Generation int64   `json:"generation"`
	Chunks     []int64 `json:"chunks,omitempty"` // changelog offsets of the state's chunks, partition 0
}

const kafkaStateChunk = 512 << 10

// KeepsTasks implements pipeline.TaskStoreConfig.
func (c *KafkaConfig) KeepsTasks(g pipeline.Guarantee) bool { return g == pipeline.ExactlyOnce }

// kafkaTasks is the sink's task state.
type kafkaTasks struct {
	group     string // the tasks group
	changelog string
	fence     func() pipeline.Fence
	created   bool // the changelog exists (made when a state is first written)

	mu      sync.Mutex        // guards owner, members: ClaimTask runs on the source's goroutine
	owner   string            // set by the first claim
	members map[string]string // task → the member id that claimed it
}

// claimedBy returns the member id that claimed task.
func (t *kafkaTasks) claimedBy(task string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[task]
	return m, ok
}

func (s *KafkaSink) setUpTasks(b pipeline.Build) {
	s.tasks = &kafkaTasks{group: "weir-tasks." + s.slug, changelog: s.cfg.ChangelogTopic, fence: b.GroupFence}
	if s.tasks.changelog == "" {
		s.tasks.changelog = "weir-changelog." + s.slug
	}
}

// ensureChangelog creates the changelog topic (compacted, one partition)
// when it is missing.
func (s *KafkaSink) ensureChangelog(ctx context.Context) error {
	t := s.tasks.changelog
	if ok, _, err := s.lookupTopic(ctx, t); err == nil && ok {
		return nil
	}
	compact := "compact"
	resp, err := s.adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, t)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("kafka: create changelog topic %s: %w", t, err)
	}
	return nil
}

func parseTask(task string) (string, int32, error) {
	i := strings.LastIndexByte(task, '/')
	if i <= 0 {
		return "", 0, fmt.Errorf("task %q is not topic/partition", task)
	}
	p, err := strconv.ParseInt(task[i+1:], 10, 32)
	if err != nil || p < 0 {
		return "", 0, fmt.Errorf("task %q is not topic/partition", task)
	}
	return task[:i], int32(p), nil
}

// ClaimTask implements pipeline.TaskStore: it reads the task's truth. The
// fencing is the broker's, at commit.
func (s *KafkaSink) ClaimTask(ctx context.Context, task string, f pipeline.Fence, owner string) (pipeline.Claim, error) {
	if s.tasks == nil {
		return pipeline.Claim{}, errors.New("kafka: this sink does not keep tasks")
	}
	topic, part, err := parseTask(task)
	if err != nil {
		return pipeline.Claim{}, fmt.Errorf("kafka: %w", err)
	}
	s.tasks.mu.Lock()
	s.tasks.owner = owner
	if s.tasks.members == nil {
		s.tasks.members = map[string]string{}
	}
	s.tasks.members[task] = f.MemberID
	s.tasks.mu.Unlock()
	claim := pipeline.Claim{Generation: f.Generation, TaskState: pipeline.TaskState{Task: task, Offset: -1}}
	deadline := time.Now().Add(max(s.cfg.TransactionTimeout, 10*time.Second))
	for {
		resps, err := s.adm.FetchOffsets(kadm.RequireStable(ctx), s.tasks.group)
		if err == nil {
			err = resps.Error()
		}
		if errors.Is(err, kerr.UnstableOffsetCommit) && time.Now().Before(deadline) {
			if err := connect.SleepContext(ctx, 100*time.Millisecond); err != nil {
				return claim, err
			}
			continue
		}
		if errors.Is(err, kerr.GroupIDNotFound) {
			return claim, nil
		}
		if err != nil {
			return claim, fmt.Errorf("kafka: read task %s from group %s: %w", task, s.tasks.group, err)
		}
		o, ok := resps.Lookup(topic, part)
		if !ok || o.At < 0 {
			return claim, nil
		}
		var meta kafkaTaskMeta
		if err := json.Unmarshal([]byte(o.Metadata), &meta); err != nil {
			return claim, fmt.Errorf("kafka: task %s in group %s: metadata %q is not weir's (%w); was the group written by another program or version?", task, s.tasks.group, o.Metadata, err)
		}
		claim.Found, claim.Offset = true, o.At
		if len(meta.Chunks) > 0 {
			if claim.States, err = s.readState(ctx, task, meta.Chunks); err != nil {
				return claim, err
			}
		}
		return claim, nil
	}
}

// readState reads a task's state chunks from the changelog.
func (s *KafkaSink) readState(ctx context.Context, task string, chunks []int64) (map[string][]byte, error) {
	starts, err := s.adm.ListStartOffsets(ctx, s.tasks.changelog)
	if err == nil {
		err = starts.Error()
	}
	ends, eerr := s.adm.ListEndOffsets(ctx, s.tasks.changelog)
	if err == nil {
		err = eerr
	}
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: task %s: the changelog %s: %w", task, s.tasks.changelog, err)
	}
	start, _ := starts.Lookup(s.tasks.changelog, 0)
	end, _ := ends.Lookup(s.tasks.changelog, 0)
	for _, off := range chunks {
		if off < start.Offset || off >= end.Offset {
			return nil, fmt.Errorf("kafka: task %s: its state is at offset %d of %s, which holds offsets %d to %d: the changelog was truncated, deleted or re-created, and the task's state is lost (reset the group %s to start the task over)",
				task, off, s.tasks.changelog, start.Offset, end.Offset, s.tasks.group)
		}
	}
	cl, err := kgo.NewClient(append(s.base, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		s.tasks.changelog: {0: kgo.NewOffset().At(chunks[0])}}), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	want := map[int64]int{}
	for i, off := range chunks {
		want[off] = i
	}
	parts := make([][]byte, len(chunks))
	got := 0
	rctx, cancel := context.WithTimeout(ctx, max(s.cfg.TransactionTimeout, 30*time.Second))
	defer cancel()
	for got < len(chunks) {
		fs := cl.PollFetches(rctx)
		if err := rctx.Err(); err != nil {
			return nil, fmt.Errorf("kafka: task %s: read its state from %s: %d of %d chunks: %w", task, s.tasks.changelog, got, len(chunks), err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("kafka: task %s: read its state from %s: %w", task, s.tasks.changelog, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if i, ok := want[r.Offset]; ok && parts[i] == nil {
				parts[i] = r.Value
				got++
			}
		})
	}
	var whole []byte
	for _, p := range parts {
		whole = append(whole, p...)
	}
	var states map[string][]byte
	if err := json.Unmarshal(whole, &states); err != nil {
		return nil, fmt.Errorf("kafka: task %s: its state in %s is damaged or missing (a truncated or deleted changelog?): %w", task, s.tasks.changelog, err)
	}
	return states, nil
}

// PreCommitTasks implements pipeline.TaskStore.
func (s *KafkaSink) PreCommitTasks(ctx context.Context, checkpoint uint64, tasks []pipeline.TaskState) ([]byte, error) {
	if s.tasks == nil {
		return nil, errors.New("kafka: this sink does not keep tasks")
	}
	tok, err := s.seal(checkpoint)
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		tok.Tasks = append(tok.Tasks, kafkaTaskTruth{Task: t.Task, Offset: t.Offset, States: t.States})
	}
	if tok.MarkerTopic == "" && len(tok.Tasks) > 0 {
		// No records: the marker goes on a topic that exists, the input's.
		if tok.MarkerTopic, _, err = parseTask(tok.Tasks[0].Task); err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
	}
	return json.Marshal(tok)
}

// commitTaskTruths adds the token's task truths to the open transaction:
// state chunks to the changelog, offsets and metadata to the tasks group,
// and the offsets to the source's group under its membership now.
func (s *KafkaSink) commitTaskTruths(ctx context.Context, tok kafkaToken) error {
	f := s.tasks.fence()
	for wait := time.Now().Add(5 * time.Second); f.Generation < 0 && time.Now().Before(wait); f = s.tasks.fence() {
		// Between generations (joining): wait for the next one.
		if err := connect.SleepContext(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	if f.Group == "" || f.Generation < 0 {
		return fmt.Errorf("kafka: commit tasks: not a member of the source's group now: %w", pipeline.ErrFenced)
	}
	// Offsets commit under the membership of now, which must be the one
	// that claimed every task: a member that lost its session and joined
	// again may no longer own them.
	for _, t := range tok.Tasks {
		if m, ok := s.tasks.claimedBy(t.Task); !ok || m != f.MemberID {
			return fmt.Errorf("kafka: commit tasks: task %s was claimed by member %q, this process is member %q now: %w", t.Task, m, f.MemberID, pipeline.ErrFenced)
		}
	}
	s.tasks.mu.Lock()
	owner := s.tasks.owner
	s.tasks.mu.Unlock()
	offsets := map[string]map[int32]kmsg.TxnOffsetCommitRequestTopicPartition{}
	meta := map[string]map[int32]kmsg.TxnOffsetCommitRequestTopicPartition{}
	for _, t := range tok.Tasks {
		topic, part, err := parseTask(t.Task)
		if err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		m := kafkaTaskMeta{Owner: owner, Generation: f.Generation}
		if len(t.States) > 0 && !s.tasks.created {
			if err := s.ensureChangelog(ctx); err != nil {
				return err
			}
			s.tasks.created = true
		}
		if len(t.States) > 0 {
			b, err := json.Marshal(t.States)
			if err != nil {
				return err
			}
			for i := 0; len(b) > 0; i++ {
				n := min(len(b), kafkaStateChunk)
				r := &kgo.Record{Topic: s.tasks.changelog, Partition: 0, Key: fmt.Appendf(nil, "%s#%d", t.Task, i), Value: b[:n]}
				res := s.cl.ProduceSync(ctx, r)
				if err := res.FirstErr(); err != nil {
					return fmt.Errorf("kafka: task %s: produce state to %s: %w", t.Task, s.tasks.changelog, err)
				}
				m.Chunks = append(m.Chunks, res[0].Record.Offset)
				b = b[n:]
			}
		}
		mb, _ := json.Marshal(m)
		ms := string(mb)
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = part, t.Offset, -1
		add := func(into map[string]map[int32]kmsg.TxnOffsetCommitRequestTopicPartition, p kmsg.TxnOffsetCommitRequestTopicPartition) {
			if into[topic] == nil {
				into[topic] = map[int32]kmsg.TxnOffsetCommitRequestTopicPartition{}
			}
			into[topic][part] = p
		}
		add(offsets, rp)
		rp.Metadata = &ms
		add(meta, rp)
	}
	if tok.Count == 0 && !producedState(tok) {
		// Nothing was produced in this transaction through franz-go, which
		// then ends it without telling the broker (the offsets below are
		// added to it by hand): the transaction would stay open, its
		// offsets uncommitted, until the broker's timeout aborted it and
		// fenced this producer. One small record on the changelog makes it
		// a transaction franz-go ends; compaction keeps one per instance.
		if !s.tasks.created {
			if err := s.ensureChangelog(ctx); err != nil {
				return err
			}
			s.tasks.created = true
		}
		r := &kgo.Record{Topic: s.tasks.changelog, Partition: 0, Key: []byte("weir-commit#" + s.instance), Value: strconv.AppendUint(nil, tok.Checkpoint, 10)}
		if err := s.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return fmt.Errorf("kafka: produce the commit record to %s: %w", s.tasks.changelog, err)
		}
	}
	if err := s.txnOffsetCommit(ctx, s.tasks.group, pipeline.Fence{Generation: -1}, meta); err != nil {
		return fmt.Errorf("kafka: commit task truths to group %s: %w", s.tasks.group, err)
	}
	// A rebalance in progress is waited out, within the open transaction:
	// the member keeps its partitions until its revoke callback has run,
	// which needs this checkpoint, so the commit is retried with the
	// generation the rebalance gives it, as long as it is the same member.
	deadline := time.Now().Add(max(s.cfg.TransactionTimeout/2, 5*time.Second))
	for {
		err := s.txnOffsetCommit(ctx, f.Group, f, offsets)
		if err == nil {
			return nil
		}
		switch {
		case errors.Is(err, kerr.RebalanceInProgress) && time.Now().Before(deadline):
			if err := connect.SleepContext(ctx, 50*time.Millisecond); err != nil {
				return err
			}
			next := s.tasks.fence()
			for next.Generation < 0 && time.Now().Before(deadline) {
				if err := connect.SleepContext(ctx, 50*time.Millisecond); err != nil {
					return err
				}
				next = s.tasks.fence()
			}
			if next.MemberID != f.MemberID || next.Generation < 0 {
				return fmt.Errorf("kafka: commit task offsets to group %s: the membership changed during a rebalance (member %s, now %s): %w", f.Group, f.MemberID, next.MemberID, pipeline.ErrFenced)
			}
			f = next
			continue
		case errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.FencedInstanceID) ||
			errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.StaleMemberEpoch):
			err = fmt.Errorf("%w (%v)", pipeline.ErrFenced, err)
		}
		return fmt.Errorf("kafka: commit task offsets to group %s as member %s in generation %d: %w", f.Group, f.MemberID, f.Generation, err)
	}
}

// producedState reports whether committing tok's truths produces state
// chunks to the changelog.
func producedState(tok kafkaToken) bool {
	return slices.ContainsFunc(tok.Tasks, func(t kafkaTaskTruth) bool { return len(t.States) > 0 })
}

// txnOffsetCommit adds group to the open transaction and commits offsets
// to it under membership f (generation -1: a group without members).
func (s *KafkaSink) txnOffsetCommit(ctx context.Context, group string, f pipeline.Fence, offsets map[string]map[int32]kmsg.TxnOffsetCommitRequestTopicPartition) error {
	pid, epoch, err := s.cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("producer id: %w", err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = s.txnID, pid, epoch, group
	if err := kafkaRetryConcurrent(ctx, func() error {
		resp, err := add.RequestWith(ctx, s.cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.ErrorCode)
	}); err != nil {
		return fmt.Errorf("add offsets to transaction: %w", err)
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = s.txnID, group, pid, epoch
	req.Generation, req.MemberID = int32(f.Generation), f.MemberID
	if f.InstanceID != "" {
		req.InstanceID = &f.InstanceID
	}
	for topic, ps := range offsets {
		id, err := s.topicID(ctx, topic)
		if err != nil {
			return err
		}
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = topic, id
		for _, p := range ps {
			rt.Partitions = append(rt.Partitions, p)
		}
		req.Topics = append(req.Topics, rt)
	}
	return kafkaRetryConcurrent(ctx, func() error {
		resp, err := req.RequestWith(ctx, s.cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err)
				}
			}
		}
		return nil
	})
}
