package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Savepoints: named checkpoints that a user keeps, across upgrades and
// configuration changes, and restores on purpose (Flink's savepoints).
// `weir savepoint` copies a stopped pipeline's newest checkpoint to
// <data_dir>/<pipeline>/savepoints/<name>/; `weir run --from-savepoint`
// makes that copy the pipeline's newest checkpoint again, with the next
// id, and the run recovers from it as from any checkpoint: sources seek
// to its positions, operators restore its state (a window maps it onto a
// compatible configuration: operators/window.go, Restore), and sinks
// re-commit its commits, which are idempotent.
//
// Restoring a savepoint older than the pipeline's newest checkpoint
// rewinds the input: what was read after the savepoint is read again, and
// a sink that committed it already (a file, Parquet) has it twice. A
// savepoint is for a pipeline stopped and restarted around an upgrade, as
// in Flink; it is not an undo.

// Savepoint describes one kept savepoint.
type Savepoint struct {
	Name       string
	Pipeline   string
	Checkpoint uint64    // the id of the checkpoint it copied
	Taken      time.Time // when that checkpoint was taken
	InputDone  bool      // the checkpoint was taken after every source ended
	Dir        string
}

var savepointName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// SavepointsDir is where a pipeline's savepoints are kept.
func SavepointsDir(cfg *pipeline.Config, name string) string {
	return filepath.Join(PipelineDir(cfg, name), "savepoints")
}

// TakeSavepoint keeps the newest checkpoint of a stopped pipeline under
// name. A pipeline whose partitions are tasks keeps state in its sink,
// which a savepoint does not reach: it is refused, as is a name in use.
func TakeSavepoint(cfg *pipeline.Config, spec *pipeline.Spec, name string) (*Savepoint, error) {
	if err := checkSavepointable(spec, name); err != nil {
		return nil, err
	}
	unlock, err := lockStopped(cfg, spec, "weir savepoint")
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := (&CheckpointStore{Dir: CheckpointDir(cfg, spec.Name)}).Latest()
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("runtime: %s: no checkpoint yet: run it first", spec.Name)
	}
	dir := filepath.Join(SavepointsDir(cfg, spec.Name), name)
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("runtime: %s: savepoint %q exists already (%s); choose another name", spec.Name, name, dir)
	}
	if _, err := (&CheckpointStore{Dir: dir, Keep: 1}).Save(c); err != nil {
		return nil, err
	}
	return &Savepoint{Name: name, Pipeline: spec.Name, Checkpoint: c.ID, Taken: c.Time, InputDone: c.InputDone, Dir: dir}, nil
}

// RestoreSavepoint makes the savepoint name the newest checkpoint of a
// stopped pipeline, so that its next run recovers from it. It returns the
// id the restored checkpoint now has.
func RestoreSavepoint(cfg *pipeline.Config, spec *pipeline.Spec, name string) (*Savepoint, uint64, error) {
	if err := checkSavepointable(spec, name); err != nil {
		return nil, 0, err
	}
	sp, c, err := loadSavepoint(cfg, spec, name)
	if err != nil {
		return nil, 0, err
	}
	unlock, err := lockStopped(cfg, spec, "weir run --from-savepoint")
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	store := &CheckpointStore{Dir: CheckpointDir(cfg, spec.Name)}
	ids, err := store.IDs()
	if err != nil {
		return nil, 0, err
	}
	c.ID = 1
	if len(ids) > 0 {
		c.ID = ids[len(ids)-1] + 1
	}
	// A savepoint of finished input restores as a point to go on from:
	// the sources are read on from its positions.
	c.InputDone = false
	if _, err := store.Save(c); err != nil {
		return nil, 0, err
	}
	return sp, c.ID, nil
}

// Savepoints lists a pipeline's savepoints, by name.
func Savepoints(cfg *pipeline.Config, spec *pipeline.Spec) ([]*Savepoint, error) {
	entries, err := os.ReadDir(SavepointsDir(cfg, spec.Name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runtime: %s: list savepoints: %w", spec.Name, err)
	}
	var out []*Savepoint
	for _, e := range entries {
		if !e.IsDir() || !savepointName.MatchString(e.Name()) {
			continue
		}
		sp, _, err := loadSavepoint(cfg, spec, e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b *Savepoint) int { return a.Taken.Compare(b.Taken) })
	return out, nil
}

func loadSavepoint(cfg *pipeline.Config, spec *pipeline.Spec, name string) (*Savepoint, *Checkpoint, error) {
	dir := filepath.Join(SavepointsDir(cfg, spec.Name), name)
	c, err := (&CheckpointStore{Dir: dir}).Latest()
	if err != nil {
		return nil, nil, err
	}
	if c == nil {
		have, _ := os.ReadDir(SavepointsDir(cfg, spec.Name))
		var names []string
		for _, e := range have {
			names = append(names, e.Name())
		}
		return nil, nil, fmt.Errorf("runtime: %s: no savepoint %q (have: %v)", spec.Name, name, names)
	}
	if c.Pipeline != spec.Name {
		return nil, nil, fmt.Errorf("runtime: savepoint %s was taken of pipeline %q, not %q", dir, c.Pipeline, spec.Name)
	}
	return &Savepoint{Name: name, Pipeline: spec.Name, Checkpoint: c.ID, Taken: c.Time, InputDone: c.InputDone, Dir: dir}, c, nil
}

func checkSavepointable(spec *pipeline.Spec, name string) error {
	if !savepointName.MatchString(name) {
		return fmt.Errorf("runtime: savepoint name %q: use letters, digits, '.', '_' and '-'", name)
	}
	if spec.TaskStoreIndex() >= 0 {
		return fmt.Errorf("runtime: %s: its partitions are tasks, whose state is kept in the sink's tasks table; a savepoint does not reach it", spec.Name)
	}
	return nil
}

// lockStopped locks a pipeline's data directory for a command that must
// not run beside it.
func lockStopped(cfg *pipeline.Config, spec *pipeline.Spec, command string) (func(), error) {
	dir := PipelineDir(cfg, spec.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("runtime: %s: %w", spec.Name, err)
	}
	unlock, err := lockDir(dir, processOwner(spec.Name, command, cfg.DataDir, cfg.File, ""))
	if err != nil {
		return nil, fmt.Errorf("runtime: %s: %w; stop it first (SIGTERM takes a final checkpoint)", spec.Name, err)
	}
	return unlock, nil
}
