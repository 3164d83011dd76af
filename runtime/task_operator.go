package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// taskOperator runs one instance of a stateful operator per task (an input
// partition: Record.Split), as Kafka Streams runs one topology per task:
// a task's windows or dedupe keys, and its watermark, are its own. That is
// what lets a task's state move to another process on its own, and what
// makes a task's output the same whichever process runs it and whatever
// other tasks run beside it: its windows fire by its own records only.
//
// Records an instance emits carry its task as their Split, so stateful
// operators after it are per task too; split changes are always forwarded.
//
// Everything runs on the chain's goroutine except Late and
// SplitWatermarks, which the metrics read.
type taskOperator struct {
	id    string // component id, the key of its states in a TaskState
	newOp func() (pipeline.Operator, error)

	mu      sync.Mutex // guards tasks for Late and SplitWatermarks (the chain writes them under it)
	tasks   map[string]*taskInstance
	retired int64 // late count of dropped instances

	// restore holds truths claimed for tasks not yet announced in band:
	// the state to start the task's instance from (nil: start empty).
	restore *taskRestores
	// last is set on the last task operator of the chain: it forgets a
	// claim once it has taken its state.
	last bool
}

type taskInstance struct {
	op   pipeline.Operator
	snap pipeline.Snapshotter
	spl  pipeline.SplitHandler
	fin  pipeline.Finisher
	tick pipeline.Ticker
	late pipeline.LateCounter
	wms  pipeline.SplitWatermarker
}

// taskRestores passes claimed truths from the source's claim (a franz-go
// callback goroutine) to the chain, which applies them when the task is
// announced.
type taskRestores struct {
	mu     sync.Mutex
	claims map[string]map[string][]byte // task → operator id → state
}

func (r *taskRestores) put(task string, states map[string][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.claims == nil {
		r.claims = map[string]map[string][]byte{}
	}
	if states == nil {
		states = map[string][]byte{}
	}
	r.claims[task] = states
}

// take returns the claimed states of task, if a claim is pending, and
// forgets them once every operator has taken its own (last is set by the
// last task operator).
func (r *taskRestores) take(task, id string, last bool) (state []byte, claimed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	states, ok := r.claims[task]
	if !ok {
		return nil, false
	}
	if last {
		delete(r.claims, task)
	}
	return states[id], true
}

func (t *taskOperator) instance(task string) (*taskInstance, error) {
	if in := t.tasks[task]; in != nil {
		return in, nil
	}
	op, err := t.newOp()
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", task, err)
	}
	in := &taskInstance{op: op}
	in.snap, _ = op.(pipeline.Snapshotter)
	in.spl, _ = op.(pipeline.SplitHandler)
	in.fin, _ = op.(pipeline.Finisher)
	in.tick, _ = op.(pipeline.Ticker)
	in.late, _ = op.(pipeline.LateCounter)
	in.wms, _ = op.(pipeline.SplitWatermarker)
	t.mu.Lock()
	t.tasks[task] = in
	t.mu.Unlock()
	return in, nil
}

func (t *taskOperator) drop(task string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if in := t.tasks[task]; in != nil {
		if in.late != nil {
			t.retired += in.late.Late()
		}
		delete(t.tasks, task)
	}
}

// Late implements pipeline.LateCounter.
func (t *taskOperator) Late() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.retired
	for _, in := range t.tasks {
		if in.late != nil {
			n += in.late.Late()
		}
	}
	return n
}

// SplitWatermarks implements pipeline.SplitWatermarker: the union of the
// instances' per-split watermarks. An instance sees the records and split
// changes of its own task only, so no two report the same split. Safe for
// concurrent use.
func (t *taskOperator) SplitWatermarks() map[pipeline.SplitID]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[pipeline.SplitID]time.Time{}
	for _, in := range t.tasks {
		if in.wms != nil {
			maps.Copy(out, in.wms.SplitWatermarks())
		}
	}
	return out
}

// Process implements pipeline.Operator: the batch's records go to their
// tasks' instances, each task's in input order.
func (t *taskOperator) Process(ctx context.Context, b *pipeline.Batch) error {
	var order []string
	groups := map[string][]*pipeline.Record{}
	for _, r := range b.Records {
		task := pipeline.SplitTask(r.Split)
		if _, ok := groups[task]; !ok {
			order = append(order, task)
		}
		groups[task] = append(groups[task], r)
	}
	out := pipeline.Batch{Dead: b.Dead}
	for _, task := range order {
		in, err := t.instance(task)
		if err != nil {
			return err
		}
		sub := &pipeline.Batch{Records: groups[task]}
		if err := in.op.Process(ctx, sub); err != nil {
			return fmt.Errorf("task %s: %w", task, err)
		}
		t.emit(&out, task, sub)
	}
	clear(b.Records)
	b.Records, b.Dead = out.Records, out.Dead
	return nil
}

// emit moves an instance's output into out, tagging records with the task.
func (t *taskOperator) emit(out *pipeline.Batch, task string, sub *pipeline.Batch) {
	for _, r := range sub.Records {
		r.Split = task
	}
	out.Records = append(out.Records, sub.Records...)
	out.Dead = append(out.Dead, sub.Dead...)
}

// OnSplits implements pipeline.SplitHandler: an announced task gets its
// instance (from its claimed truth when one is pending), a removed one is
// dropped (its state is in the truth its last checkpoint committed, or,
// when the task was lost, must not be committed), and each instance sees
// the change of its own task.
func (t *taskOperator) OnSplits(ctx context.Context, source int, c pipeline.SplitChange, b *pipeline.Batch) (bool, error) {
	if c.Reset {
		for _, task := range t.sorted() {
			if !slices.Contains(c.Added, task) {
				t.drop(task)
			}
		}
	}
	for _, split := range c.Added {
		if task := pipeline.SplitTask(split); task != split {
			// A sub-split of a task (see pipeline.SplitChange): its instance's.
			if err := t.split(ctx, source, task, pipeline.SplitChange{Added: []string{split}}, b); err != nil {
				return true, err
			}
			continue
		}
		task := split
		if state, claimed := t.restore.take(task, t.id, t.last); claimed {
			t.drop(task)
			in, err := t.instance(task)
			if err != nil {
				return true, err
			}
			if state != nil && in.snap != nil {
				if err := in.snap.Restore(state); err != nil {
					return true, fmt.Errorf("task %s: restore the claimed state: %w", task, err)
				}
			}
		}
		if err := t.split(ctx, source, task, pipeline.SplitChange{Added: []string{task}}, b); err != nil {
			return true, err
		}
	}
	for _, split := range c.CaughtUp {
		if task := pipeline.SplitTask(split); t.tasks[task] != nil {
			if err := t.split(ctx, source, task, pipeline.SplitChange{CaughtUp: []string{split}}, b); err != nil {
				return true, err
			}
		}
	}
	for _, p := range c.Progress {
		if task := pipeline.SplitTask(p.Split); t.tasks[task] != nil {
			if err := t.split(ctx, source, task, pipeline.SplitChange{Progress: []pipeline.SplitProgress{p}}, b); err != nil {
				return true, err
			}
		}
	}
	for _, split := range c.Removed {
		if task := pipeline.SplitTask(split); task != split {
			if t.tasks[task] != nil {
				if err := t.split(ctx, source, task, pipeline.SplitChange{Removed: []string{split}}, b); err != nil {
					return true, err
				}
			}
			continue
		}
		t.drop(split)
	}
	return true, nil
}

func (t *taskOperator) split(ctx context.Context, source int, task string, c pipeline.SplitChange, b *pipeline.Batch) error {
	in, err := t.instance(task)
	if err != nil || in.spl == nil {
		return err
	}
	sub := &pipeline.Batch{}
	if _, err := in.spl.OnSplits(ctx, source, c, sub); err != nil {
		return fmt.Errorf("task %s: %w", task, err)
	}
	t.emit(b, task, sub)
	return nil
}

func (t *taskOperator) sorted() []string { return slices.Sorted(maps.Keys(t.tasks)) }

// Tick implements pipeline.Ticker.
func (t *taskOperator) Tick(ctx context.Context, now time.Time, b *pipeline.Batch) error {
	for _, task := range t.sorted() {
		in := t.tasks[task]
		if in.tick == nil {
			continue
		}
		sub := &pipeline.Batch{}
		if err := in.tick.Tick(ctx, now, sub); err != nil {
			return fmt.Errorf("task %s: %w", task, err)
		}
		t.emit(b, task, sub)
	}
	return nil
}

// Finish implements pipeline.Finisher.
func (t *taskOperator) Finish(ctx context.Context, b *pipeline.Batch) error {
	for _, task := range t.sorted() {
		in := t.tasks[task]
		if in.fin == nil {
			continue
		}
		sub := &pipeline.Batch{}
		if err := in.fin.Finish(ctx, sub); err != nil {
			return fmt.Errorf("task %s: %w", task, err)
		}
		t.emit(b, task, sub)
	}
	return nil
}

// SnapshotTasks returns each task's state.
func (t *taskOperator) SnapshotTasks() (map[string][]byte, error) {
	out := make(map[string][]byte, len(t.tasks))
	for task, in := range t.tasks {
		if in.snap == nil {
			continue
		}
		st, err := in.snap.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("task %s: %w", task, err)
		}
		out[task] = st
	}
	return out, nil
}

// taskOperatorState is the local checkpoint's form: every task's state.
type taskOperatorState struct {
	Tasks map[string][]byte `json:"tasks"`
}

// Snapshot implements pipeline.Snapshotter for the local checkpoint.
func (t *taskOperator) Snapshot() ([]byte, error) {
	st, err := t.SnapshotTasks()
	if err != nil {
		return nil, err
	}
	return encodeTaskStates(st)
}

// encodeTaskStates is the local checkpoint's form of SnapshotTasks.
func encodeTaskStates(st map[string][]byte) ([]byte, error) {
	return json.Marshal(taskOperatorState{Tasks: st})
}

// Restore implements pipeline.Snapshotter.
func (t *taskOperator) Restore(state []byte) error {
	var st taskOperatorState
	if err := json.Unmarshal(state, &st); err != nil {
		return fmt.Errorf("per-task state: %w (written by a pipeline without tasks? remove the checkpoint to start over)", err)
	}
	for _, task := range slices.Sorted(maps.Keys(st.Tasks)) {
		in, err := t.instance(task)
		if err != nil {
			return err
		}
		if in.snap != nil {
			if err := in.snap.Restore(st.Tasks[task]); err != nil {
				return fmt.Errorf("task %s: %w", task, err)
			}
		}
	}
	return nil
}
