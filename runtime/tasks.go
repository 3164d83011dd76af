package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"

	"github.com/weirhq/weir/internal/durable"
	"github.com/weirhq/weir/internal/kafkaconn"
	"github.com/weirhq/weir/pipeline"
)

// tasks is a pipeline's task wiring (see pipeline.TaskState): on when the
// pipeline runs exactly_once with a sink that keeps task truths and a
// source whose splits are tasks.
type tasks struct {
	owner    string              // this process (data_dir), in claims
	index    int                 // the sink (in spec.Sinks) that keeps the truths
	store    pipeline.TaskStore  // that sink; set once sinks are built
	source   pipeline.TaskSource // the source whose splits are tasks
	restores taskRestores        // claimed states on their way to the task operators
	logger   *slog.Logger
}

// newTasks returns the pipeline's task wiring, or nil when no sink of it
// keeps tasks under its guarantee.
func newTasks(spec *pipeline.Spec, dir string, logger *slog.Logger) (*tasks, error) {
	if spec.Guarantee != pipeline.ExactlyOnce {
		return nil, nil
	}
	index := spec.TaskStoreIndex()
	if index < 0 {
		return nil, nil
	}
	owner, err := durable.ReadOrCreateID(filepath.Join(dir, "owner-id"), "weir-"+kafkaconn.Slug(spec.Name)+"-")
	if err != nil {
		return nil, fmt.Errorf("runtime: %s: task owner id: %w", spec.Name, err)
	}
	return &tasks{owner: owner, index: index, logger: logger}, nil
}

// hasSource finds the source whose splits are tasks.
func (t *tasks) hasSource(sources []*sourceStage) bool {
	for _, s := range sources {
		if ts, ok := s.src.(pipeline.TaskSource); ok {
			t.source = ts
			return true
		}
	}
	return false
}

// fence is the task source's membership now.
func (t *tasks) fence() pipeline.Fence { return t.source.GroupFence() }

// perTask reports whether op (configured as c) runs as one instance per
// task: it keeps keyed state per split, and its key is aligned with the
// partitioning every task source declares (partitioned_by). Without a
// declaration weir cannot know that all records of a key are in one
// partition, and splitting the state by partition would give partial
// results: the operator then keeps its state for the whole process, as
// outside scale-out, and `weir validate` warns that it does not move with
// partitions.
func (t *tasks) perTask(spec *pipeline.Spec, c *pipeline.Component, op pipeline.Operator) bool {
	_, snap := op.(pipeline.Snapshotter)
	_, spl := op.(pipeline.SplitHandler)
	k, keyed := c.Config.(pipeline.KeyedConfig)
	if !snap || !spl || !keyed {
		return false
	}
	keys := spec.PartitionKeys()
	return len(keys) > 0 && !slices.ContainsFunc(keys, func(key string) bool { return key == "" || !k.AlignedWith(key) })
}

// claim is pipeline.Build.ClaimTask: the store claims the task, and the
// state it holds goes to the task operators, which apply it when the
// source announces the task in band.
func (t *tasks) claim(ctx context.Context, task string, f pipeline.Fence) (pipeline.Claim, error) {
	if t.store == nil {
		return pipeline.Claim{}, errors.New("runtime: a task was claimed before the task store was built")
	}
	c, err := t.store.ClaimTask(ctx, task, f, t.owner)
	if err != nil {
		return c, err
	}
	t.restores.put(task, c.States)
	t.logger.Info("task claimed", "task", task, "generation", f.Generation, "found", c.Found, "offset", c.Offset)
	return c, nil
}

// TaskSummary is what a checkpoint says of one task: its offset, the
// claim its truth is committed under, and its state size per operator.
type TaskSummary struct {
	Task       string
	Offset     int64
	Generation int64
	Owner      string
	StateBytes map[string]int // operator id → bytes
}

// Tasks summarizes the tasks of a checkpoint: the truths its task-keeping
// sink's token carries, and each per-task operator's state sizes. Nil when
// the pipeline has no tasks.
func (c *Checkpoint) Tasks() []TaskSummary {
	byTask := map[string]*TaskSummary{}
	get := func(task string) *TaskSummary {
		ts := byTask[task]
		if ts == nil {
			ts = &TaskSummary{Task: task, Offset: -1, StateBytes: map[string]int{}}
			byTask[task] = ts
		}
		return ts
	}
	for _, s := range c.Sinks {
		var tok struct {
			Tasks []struct {
				Task       string `json:"task"`
				Offset     int64  `json:"offset"`
				Generation int64  `json:"generation"`
				Owner      string `json:"owner"`
			} `json:"tasks"`
		}
		if json.Unmarshal(s.State, &tok) != nil {
			continue
		}
		for _, t := range tok.Tasks {
			ts := get(t.Task)
			ts.Offset, ts.Generation, ts.Owner = t.Offset, t.Generation, t.Owner
		}
	}
	for _, o := range c.Operators {
		var st taskOperatorState
		if json.Unmarshal(o.State, &st) != nil {
			continue
		}
		for task, b := range st.Tasks {
			get(task).StateBytes[o.ID] = len(b)
		}
	}
	out := make([]TaskSummary, 0, len(byTask))
	for _, task := range slices.Sorted(maps.Keys(byTask)) {
		out = append(out, *byTask[task])
	}
	return out
}
