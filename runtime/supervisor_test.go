package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// reloadConfig has two endless pipelines: "a" tags its records with
// version, "b" never changes.
func reloadConfig(dir, version, extra string) string {
	return fmt.Sprintf(`
data_dir: %[1]s/data
pipelines:
  - name: a
    checkpoint_interval: 20ms
    batch_size: 64
    sources:
      - count: {n: 100000000, positioned: true}
    operators:
      - jsonparse: {}
      - filter: 'i %% 2 == 0'
      - map: { v: '%[2]s' }%[3]s
    sinks:
      - file: { path: %[1]s/a.jsonl }
  # b: unchanged across reloads
  - name: b
    checkpoint_interval: 20ms
    sources:
      - count: {n: 100000000, positioned: true}
    sinks:
      - file: { path: %[1]s/b.jsonl }
`, dir, version, extra)
}

func revision(t *testing.T, reg *pipeline.Registry, yaml string) *runtime.Revision {
	t.Helper()
	rev, err := runtime.NewRevision(reg, "test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func status(sup *runtime.Supervisor, name string) runtime.PipelineStatus {
	for _, s := range sup.Status() {
		if s.Name == name {
			return s
		}
	}
	return runtime.PipelineStatus{}
}

// A reload restarts the changed pipeline from a final checkpoint: its
// output has every record exactly once, the old configuration's records
// before the new one's; the unchanged pipeline keeps its run.
func TestReloadRestartsChangedPipelineWithoutLossOrDuplicate(t *testing.T) {
	dir := t.TempDir()
	reg := registry()
	sup, err := runtime.NewSupervisor(revision(t, reg, reloadConfig(dir, "1", "")), nil, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- sup.Run(context.Background(), stop) }()
	waitFor(t, "a checkpoint of a", func() bool {
		s := status(sup, "a")
		return s.Stats != nil && s.Stats.Checkpoints.Load() > 2
	})
	bStats := status(sup, "b").Stats

	// Comments and layout do not count as a change of b.
	res, err := sup.Reload(context.Background(), revision(t, reg, strings.Replace(reloadConfig(dir, "2", ""), "# b: unchanged", "# b: still unchanged", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.Restarted, res.Unchanged) != "[a] [b]" {
		t.Fatalf("reload: %v", res)
	}
	waitFor(t, "a restarted", func() bool {
		s := status(sup, "a")
		return s.Restarts == 1 && s.State == runtime.RunRunning && s.Stats.Checkpoints.Load() > 2
	})
	if got := status(sup, "b").Stats; got != bStats {
		t.Fatal("the unchanged pipeline was restarted")
	}
	close(stop)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pipelines did not stop")
	}

	lines := readLines(t, dir+"/a.jsonl")
	switched := -1
	for k, l := range lines {
		var rec struct{ I, V int }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line %d: %v: %s", k, err, l)
		}
		if rec.I != 2*k {
			t.Fatalf("line %d has i=%d, want %d: a record was lost or doubled across the reload", k, rec.I, 2*k)
		}
		if rec.V == 2 && switched < 0 {
			switched = k
		}
		if (switched >= 0) != (rec.V == 2) {
			t.Fatalf("line %d: v=%d after the new configuration took over at line %d", k, rec.V, switched)
		}
	}
	if switched <= 0 || switched == len(lines) {
		t.Fatalf("new configuration took over at line %d of %d: want both versions in the output", switched, len(lines))
	}
	store := &runtime.CheckpointStore{Dir: runtime.CheckpointDir(revision(t, reg, reloadConfig(dir, "2", "")).Config, "a")}
	c, err := store.Latest()
	if err != nil {
		t.Fatal(err)
	}
	var next int
	if err := json.Unmarshal(c.Sources[0].State, &next); err != nil {
		t.Fatal(err)
	}
	if want := (next + 1) / 2; len(lines) != want {
		t.Fatalf("%d lines committed, want %d (final checkpoint at record %d)", len(lines), want, next)
	}
}

// failBuild is an operator whose construction fails, standing in for a
// valid-looking edit that cannot start (a sink path that cannot be opened).
type failBuild struct{}

func (failBuild) NewOperator(pipeline.Build) (pipeline.Operator, error) {
	return nil, errors.New("cannot start")
}

// A reloaded pipeline that fails before running goes back to its previous
// configuration; a change of data_dir is refused; nothing stops.
func TestReloadFallsBackAndRefusesDataDirChange(t *testing.T) {
	dir := t.TempDir()
	reg := registry()
	reg.Register(pipeline.Entry{Kind: pipeline.KindOperator, Name: "failbuild", NewConfig: func() any { return &failBuild{} }})
	sup, err := runtime.NewSupervisor(revision(t, reg, reloadConfig(dir, "1", "")), nil, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- sup.Run(context.Background(), stop) }()
	defer func() {
		close(stop)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "a running", func() bool { return status(sup, "a").State == runtime.RunRunning })

	moved := strings.Replace(reloadConfig(dir, "1", ""), "/data\n", "/elsewhere\n", 1)
	if _, err := sup.Reload(context.Background(), revision(t, reg, moved)); err == nil || !strings.Contains(err.Error(), "data_dir") {
		t.Fatalf("reload with another data_dir: %v, want a data_dir error", err)
	}

	if _, err := sup.Reload(context.Background(), revision(t, reg, reloadConfig(dir, "1", "\n      - failbuild: {}"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a back on its previous configuration", func() bool {
		s := status(sup, "a")
		return s.State == runtime.RunRunning && s.Stats != nil && s.Stats.Checkpoints.Load() > 1 && s.Restarts == 0
	})
	if s := status(sup, "b"); s.State != runtime.RunRunning {
		t.Fatalf("b is %s", s.State)
	}
}

// Removing a pipeline stops it gracefully; adding one starts it.
func TestReloadAddsAndRemovesPipelines(t *testing.T) {
	dir := t.TempDir()
	reg := registry()
	full := reloadConfig(dir, "1", "")
	onlyA := full[:strings.Index(full, "  # b:")]
	sup, err := runtime.NewSupervisor(revision(t, reg, onlyA), nil, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- sup.Run(context.Background(), stop) }()
	res, err := sup.Reload(context.Background(), revision(t, reg, full))
	if err != nil || fmt.Sprint(res.Started) != "[b]" {
		t.Fatalf("add b: %v %v", res, err)
	}
	waitFor(t, "b running", func() bool { return status(sup, "b").State == runtime.RunRunning })
	res, err = sup.Reload(context.Background(), revision(t, reg, onlyA))
	if err != nil || fmt.Sprint(res.Stopped) != "[b]" {
		t.Fatalf("remove b: %v %v", res, err)
	}
	waitFor(t, "b gone", func() bool { return status(sup, "b").Name == "" })
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	store := &runtime.CheckpointStore{Dir: dir + "/data/b/checkpoints"}
	if c, err := store.Latest(); err != nil || c == nil {
		t.Fatalf("b stopped without a final checkpoint: %v", err)
	}
}
