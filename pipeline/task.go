package pipeline

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// Tasks: the partition is the unit of ownership (DESIGN.md, "Scale-out").
//
// When a pipeline reads a Kafka consumer group and has a sink that can keep
// tasks (TaskStore: PostgreSQL), each input partition is a task: its next
// offset and the keyed state of every stateful operator for it are the
// task's truth, and they commit in the sink's transaction together with the
// output they produced, guarded by the group generation that claimed the
// task. A process that is given a partition claims the task (which fences
// the previous owner's commits) and restores its state before its first
// record; the local data_dir is only a cache.

// TaskState is one task's truth as of a checkpoint.
type TaskState struct {
	// Task is the task's name: the split of its records ("topic/partition").
	Task string `json:"task"`
	// Offset is where the task resumes: the next input offset.
	Offset int64 `json:"offset"`
	// States holds each stateful operator's state for the task, by the
	// operator's component id.
	States map[string][]byte `json:"states,omitempty"`
}

// Fence is the consumer-group membership a claim or a commit is made
// under: a Kafka sink commits the tasks' offsets to the group with it, and
// the broker refuses them once the member or its generation is stale.
type Fence struct {
	Group      string
	MemberID   string
	InstanceID string // static membership; empty without
	Generation int64
}

// Claim is a task's truth as a claim found it, and the generation the claim
// holds.
type Claim struct {
	TaskState
	// Found is false when no process ever committed the task.
	Found bool
	// Generation is the group generation the claim was made in; commits
	// for the task are refused once a later generation claimed it.
	Generation int64
}

// ErrFenced is returned (wrapped) when a commit or a claim is refused
// because a later group generation owns the task: this process is a zombie
// for it. Nothing of the refused commit is visible.
var ErrFenced = errors.New("task is owned by a later group generation")

// TaskStore is implemented by sinks that keep task truths in the same
// transaction as their output.
type TaskStore interface {
	// ClaimTask takes the task for generation gen on behalf of owner (a
	// stable process id) and returns its truth. It fails with ErrFenced
	// when a later generation holds it. Safe to call from any goroutine.
	ClaimTask(ctx context.Context, task string, f Fence, owner string) (Claim, error)
	// PreCommitTasks is Committer.PreCommit with the checkpoint's task
	// truths: the token's Commit makes the output and the truths visible
	// together, or, when any task was claimed by a later generation since,
	// nothing (ErrFenced).
	PreCommitTasks(ctx context.Context, checkpoint uint64, tasks []TaskState) (token []byte, err error)
}

// TaskSource is implemented by sources whose splits are tasks (a Kafka
// consumer group). TaskOffsets is called after each Read, with Position:
// the next offset of every task the source owns now. GroupFence is the
// source's membership now, from any goroutine.
type TaskSource interface {
	TaskOffsets() map[string]int64
	GroupFence() Fence
}

// TaskClaimer is what the runtime gives a TaskSource in Build.ClaimTask:
// claim a task that the group just assigned, under membership f, before
// reading it. The claim's Offset is where to start when Found.
type TaskClaimer func(ctx context.Context, task string, f Fence) (Claim, error)

// TaskStoreConfig is implemented by sink configurations whose sinks keep
// task truths (TaskStore) under the given guarantee, so that the runtime
// knows before it builds the sources whether their splits are tasks.
type TaskStoreConfig interface {
	KeepsTasks(g Guarantee) bool
}

// TaskSourceConfig is implemented by source configurations whose splits
// become tasks when a sink keeps tasks (a Kafka consumer group).
// PartitionedBy is the expression the producer keys the partitions by,
// as the configuration declares it; empty when unknown.
type TaskSourceConfig interface {
	SplitsAreTasks() bool
	PartitionedBy() string
}

// KeyedConfig is implemented by configurations of operators that keep
// state by key (windows, dedupe): KeyedBy describes the key for messages
// ("group_by [service]"), empty when the state is not keyed; AlignedWith
// reports whether records with the same value of expression key (a
// source's PartitionedBy) always have the same state key.
type KeyedConfig interface {
	KeyedBy() string
	AlignedWith(key string) bool
}

// TaskStoreIndex returns the index in s.Sinks of the sink that keeps the
// pipeline's task truths (the first whose configuration keeps tasks under
// s's guarantee), or -1 when none does.
func (s *Spec) TaskStoreIndex() int {
	return slices.IndexFunc(s.Sinks, func(c *Component) bool {
		tc, ok := c.Config.(TaskStoreConfig)
		return ok && tc.KeepsTasks(s.Guarantee)
	})
}

// PartitionKeys returns the declared partitioned_by of every source of s
// whose splits are tasks, "" for one that declares none; nil when no
// source's splits are tasks.
func (s *Spec) PartitionKeys() []string {
	var keys []string
	for _, c := range s.Sources {
		if tc, ok := c.Config.(TaskSourceConfig); ok && tc.SplitsAreTasks() {
			keys = append(keys, strings.TrimSpace(tc.PartitionedBy()))
		}
	}
	return keys
}
