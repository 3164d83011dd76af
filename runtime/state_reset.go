package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weirhq/weir/internal/durable"
	"github.com/weirhq/weir/pipeline"
)

// StateReset is what ResetState did.
type StateReset struct {
	Checkpoint uint64
	Dropped    map[string]int // operator id: bytes of state dropped
	Backup     string         // the checkpoint as it was
}

// ResetState drops operator state from a pipeline's newest checkpoint,
// for a stateful operator whose configuration changed in a way its state
// cannot follow (a window of another size): the operator named (all of
// them when operator is empty) starts empty at the next run, from the
// source positions and sink commits of that checkpoint, which are kept.
// What the dropped state held (open windows, remembered keys) is lost.
// The checkpoint is rewritten in place; the file as it was is kept next
// to it, with the suffix ".before-reset". The pipeline must not be
// running (its data directory is locked), and a pipeline whose partitions
// are tasks keeps operator state in its sink too, so it is refused.
func ResetState(cfg *pipeline.Config, spec *pipeline.Spec, operator string) (*StateReset, error) {
	if spec.TaskStoreIndex() >= 0 {
		return nil, fmt.Errorf("runtime: %s: its partitions are tasks, whose operator state is kept in the sink's tasks table too; state reset does not reach it", spec.Name)
	}
	dir := PipelineDir(cfg, spec.Name)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("runtime: %s: no state to reset: %w", spec.Name, err)
	}
	unlock, err := lockDir(dir, processOwner(spec.Name, "weir state reset", cfg.DataDir, cfg.File, ""))
	if err != nil {
		return nil, fmt.Errorf("runtime: %s: %w; stop it first", spec.Name, err)
	}
	defer unlock()
	store := &CheckpointStore{Dir: CheckpointDir(cfg, spec.Name)}
	c, err := store.Latest()
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("runtime: %s: no checkpoint yet: nothing to reset", spec.Name)
	}
	res := &StateReset{Checkpoint: c.ID, Dropped: map[string]int{}}
	var known []string
	for i, st := range c.Operators {
		if len(st.State) > 0 {
			known = append(known, st.ID)
		}
		if operator == "" || st.ID == operator {
			if len(st.State) > 0 {
				res.Dropped[st.ID] = len(st.State)
			}
			c.Operators[i].State = nil
		}
	}
	if operator != "" && !slices.ContainsFunc(c.Operators, func(s ComponentState) bool { return s.ID == operator }) {
		return nil, fmt.Errorf("runtime: %s: checkpoint %d holds no operator %q (operators with state: %s)", spec.Name, c.ID, operator, strings.Join(known, ", "))
	}
	if len(res.Dropped) == 0 {
		return res, nil
	}
	name := filepath.Join(store.Dir, checkpointName(c.ID))
	old, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	res.Backup = name + ".before-reset"
	if err := durable.WriteFile(res.Backup, old); err != nil {
		return nil, fmt.Errorf("runtime: keep the checkpoint before reset: %w", err)
	}
	if _, err := store.Save(c); err != nil {
		return nil, err
	}
	return res, nil
}

// permanentError marks a failure that starting the pipeline again cannot
// mend (state that does not fit the configuration): the supervisor does
// not retry it.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// LockPipeline takes the lock a running pipeline holds on its data
// directory, so that a command that writes what the pipeline writes (a
// dead-letter replay) never runs beside it. It fails while the pipeline
// runs; call the returned function to release the lock.
func LockPipeline(cfg *pipeline.Config, name string) (func(), error) {
	dir := PipelineDir(cfg, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("runtime: %s: %w", name, err)
	}
	unlock, err := lockDir(dir, processOwner(name, "weir replay-dead-letters", cfg.DataDir, cfg.File, ""))
	if err != nil {
		return nil, fmt.Errorf("runtime: %s: %w; stop it first", name, err)
	}
	return unlock, nil
}
