package sinks_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkaconn"
	"github.com/weirhq/weir/internal/kafkatest"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/sinks"
)

// A Kafka sink that keeps tasks: a claim reads the truth the last commit
// left (state in several changelog chunks included), a commit under a
// stale membership is refused and its output never becomes visible, and a
// truth whose state is no longer in the changelog is refused with the
// reason.
func TestKafkaSinkTasks(t *testing.T) {
	ctx := context.Background()
	c := kafkatest.New(t)
	in, out := c.Topic(t, 2), c.Topic(t, 1)
	group := kafkatest.Name("g")
	fence := joinGroup(t, c, group, in)
	current := fence
	cfg := sinks.NewKafkaConfig()
	cfg.Brokers = c.Brokers
	cfg.Topic, _ = pipeline.CompileTemplate(out, pipeline.Pos{})
	cfg.ChangelogTopic = kafkatest.Name("changelog")
	const component = "t/sinks[0]/kafka"
	sk, err := cfg.NewSink(pipeline.Build{Pipeline: "t", Component: component, Guarantee: pipeline.ExactlyOnce,
		Dir: t.TempDir(), KeepTasks: true, GroupFence: func() pipeline.Fence { return current }})
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close(ctx)
	s := sk.(*sinks.KafkaSink)
	if err := s.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	task := in + "/0"
	claim, err := s.ClaimTask(ctx, task, fence, "a")
	if err != nil || claim.Found {
		t.Fatalf("first claim: %+v, %v", claim, err)
	}
	write := func(from, n int) {
		t.Helper()
		b := batchOf(t, from, n)
		for _, r := range b.Records {
			r.Split = task
		}
		if err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("window state "), 100_000) // 1.3 MB: three chunks
	write(0, 10)
	tok, err := s.PreCommitTasks(ctx, 1, []pipeline.TaskState{{Task: task, Offset: 10, States: map[string][]byte{"w": big}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, tok); err != nil {
		t.Fatalf("commit: %v", err)
	}
	claim, err = s.ClaimTask(ctx, task, fence, "a")
	if err != nil || !claim.Found || claim.Offset != 10 || !bytes.Equal(claim.States["w"], big) {
		t.Fatalf("claim after the commit: found %v offset %d state %d bytes, %v", claim.Found, claim.Offset, len(claim.States["w"]), err)
	}

	// A stale membership (a zombie): the commit is refused, the output
	// stays invisible.
	current = pipeline.Fence{Group: group, MemberID: fence.MemberID, Generation: fence.Generation - 1}
	write(10, 5)
	tok, err = s.PreCommitTasks(ctx, 2, []pipeline.TaskState{{Task: task, Offset: 15}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, tok); !errors.Is(err, pipeline.ErrFenced) {
		t.Fatalf("zombie commit: %v, want ErrFenced", err)
	}
	got := c.ReadCommitted(t, out, 10)
	exactlyOnce(t, got, 10)
	if claim, err := s.ClaimTask(ctx, task, fence, "a"); err != nil || claim.Offset != 10 {
		t.Fatalf("the truth after the refused commit: offset %d, %v; want 10", claim.Offset, err)
	}

	// A truth whose state chunk is gone from the changelog.
	adm := kadm.NewClient(c.Client(t))
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: in, Partition: 1, At: 7, Metadata: `{"owner":"x","generation":1,"chunks":[9999]}`})
	if _, err := adm.CommitOffsets(ctx, "weir-tasks."+kafkaconn.Slug(component), offs); err != nil {
		t.Fatal(err)
	}
	_, err = s.ClaimTask(ctx, in+"/1", fence, "a")
	if err == nil || !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), cfg.ChangelogTopic) {
		t.Fatalf("claim with a lost state: %v; want a refusal naming the changelog", err)
	}
}

// Checkpoints that produce nothing (an idle input, or records all filtered
// out) still commit their task offsets, and a sink idle for longer than its
// transaction timeout is not fenced: franz-go ends only transactions it
// produced in, so a commit of offsets alone used to stay open until the
// broker aborted it and fenced the producer (PRODUCER_FENCED after
// transaction_timeout of idleness).
func TestKafkaSinkTasksIdleCommits(t *testing.T) {
	ctx := context.Background()
	c := kafkatest.New(t)
	in, out := c.Topic(t, 1), c.Topic(t, 1)
	group := kafkatest.Name("g")
	fence := joinGroup(t, c, group, in)
	cfg := sinks.NewKafkaConfig()
	cfg.Brokers = c.Brokers
	cfg.Topic, _ = pipeline.CompileTemplate(out, pipeline.Pos{})
	cfg.ChangelogTopic = kafkatest.Name("changelog")
	cfg.TransactionTimeout = 2 * time.Second
	sk, err := cfg.NewSink(pipeline.Build{Pipeline: "t", Component: "t/sinks[0]/kafka", Guarantee: pipeline.ExactlyOnce,
		Dir: t.TempDir(), KeepTasks: true, GroupFence: func() pipeline.Fence { return fence }})
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close(ctx)
	s := sk.(*sinks.KafkaSink)
	if err := s.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	task := in + "/0"
	if _, err := s.ClaimTask(ctx, task, fence, "a"); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(c.Client(t))
	for cp := uint64(1); cp <= 6; cp++ {
		tok, err := s.PreCommitTasks(ctx, cp, []pipeline.TaskState{{Task: task, Offset: int64(cp) * 10}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, tok); err != nil {
			t.Fatalf("commit of checkpoint %d, with no records: %v", cp, err)
		}
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := offs.Lookup(in, 0); !ok || o.At != int64(cp)*10 {
			t.Fatalf("after checkpoint %d the group's offset is %+v, want %d", cp, o, cp*10)
		}
		time.Sleep(time.Second) // six idle checkpoints: three transaction timeouts
	}
	b := batchOf(t, 0, 5)
	for _, r := range b.Records {
		r.Split = task
	}
	if err := s.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	tok, err := s.PreCommitTasks(ctx, 7, []pipeline.TaskState{{Task: task, Offset: 75}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, tok); err != nil {
		t.Fatalf("commit after the idle time: %v", err)
	}
	exactlyOnce(t, c.ReadCommitted(t, out, 5), 5)
}

// joinGroup makes a member of group on topic and returns its membership.
func joinGroup(t *testing.T, c *kafkatest.Cluster, group, topic string) pipeline.Fence {
	t.Helper()
	member := c.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic))
	fence := pipeline.Fence{Group: group, Generation: -1}
	for deadline := time.Now().Add(20 * time.Second); fence.Generation < 0 && time.Now().Before(deadline); {
		pctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		member.PollFetches(pctx)
		cancel()
		id, gen := member.GroupMetadata()
		fence.MemberID, fence.Generation = id, int64(gen)
	}
	if fence.Generation < 0 {
		t.Fatal("the group member did not join")
	}
	return fence
}
