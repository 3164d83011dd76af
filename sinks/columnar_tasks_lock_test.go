package sinks_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/kafkatest"
)

// The processes of one scale-out pipeline share its parquet task
// directory (each with its own data_dir, as scale-out runs them), while a
// process of another pipeline that would write there is refused, naming
// the pipeline that holds it.
func TestParquetTaskDirectorySharedByItsPipelineOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds weir and runs three processes")
	}
	bin := buildWeir(t)
	c := kafkatest.NewFake(t)
	topic := c.Topic(t, 4)
	group := kafkatest.Name("lock")
	root, lake := t.TempDir(), t.TempDir()
	parquet := fmt.Sprintf("parquet: { path: %s, schema: { service: string, v: int64 } }", lake)
	write := func(name, yaml string) string {
		conf := filepath.Join(root, name+".yaml")
		if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return conf
	}
	task := func(i int) string {
		return write(fmt.Sprint("task-", i), fmt.Sprintf(`
data_dir: %s
pipelines:
  - name: tasks
    checkpoint_interval: 200ms
    sources:
      - kafka: { brokers: %s, topics: [%s], group: %s, partitioned_by: service }
    operators:
      - parse: { format: json }
    sinks:
      - %s
`, filepath.Join(root, fmt.Sprint(i), "data"), c.BrokerList(), topic, group, parquet))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var logs []*lockedBuffer
	for i := range 2 {
		cmd := exec.CommandContext(ctx, bin, "run", "-c", task(i), "--log-format", "text")
		log := new(lockedBuffer)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() { cmd.Process.Kill(); <-done }()
		// Each one gets past its output locks and runs.
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(string(log.bytes()), "msg=running"); {
			select {
			case err := <-done:
				t.Fatalf("task process %d exited (%v):\n%s", i, err, log.bytes())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("task process %d never ran:\n%s", i, log.bytes())
			}
			time.Sleep(20 * time.Millisecond)
		}
		logs = append(logs, log)
	}

	other := write("other", fmt.Sprintf(`
data_dir: %s
pipelines:
  - name: other
    sources:
      - generate: { count: 10 }
    sinks:
      - %s
`, filepath.Join(root, "other", "data"), parquet))
	out, err := exec.CommandContext(ctx, bin, "run", "-c", other, "--quiet").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("a process of another pipeline on the task directory: %v, want exit 1:\n%s", err, out)
	}
	for _, want := range []string{"which the processes of another scale-out pipeline share", `pipeline "tasks"`, "component tasks/sinks[0]/parquet"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	for i, log := range logs {
		if strings.Contains(string(log.bytes()), "level=ERROR") {
			t.Errorf("task process %d logged an error:\n%s", i, log.bytes())
		}
	}
}
