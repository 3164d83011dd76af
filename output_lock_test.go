package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/crashtest"
)

// lockConfig is a pipeline named NAME with its own data_dir under DIR that
// writes SINK and dead-letters to DEAD; COUNT 0 runs until killed.
const lockConfig = `data_dir: DIR/data
pipelines:
  - name: NAME
    checkpoint_interval: 100ms
    sources:
      - generate: { rate: 200, count: COUNT }
    sinks:
      - SINK
    dead_letter:
      file: { path: DEAD }
`

func writeLockConfig(t *testing.T, name, sink, dead, count string) (dir, path string) {
	t.Helper()
	r := strings.NewReplacer("NAME", name, "SINK", sink, "DEAD", dead, "COUNT", count)
	return writeConfig(t, r.Replace(lockConfig))
}

// A second weir process, with another data_dir and another configuration
// file, that would write an output a running one writes (the same file,
// the same dead-letter file, a templated path or a parquet directory over
// it) is refused at start, naming the owner: pid, host, pipeline,
// component, data_dir. Once the owner is SIGKILLed its locks are gone and
// the second process runs.
func TestSecondProcessOnAnOutputIsRefused(t *testing.T) {
	bin := crashtest.Build(t)
	shared := t.TempDir()
	out := filepath.Join(shared, "out.jsonl")
	dead := filepath.Join(shared, "dead.jsonl")
	ownerDir, ownerCfg := writeLockConfig(t, "owner", "file: { path: "+out+" }", dead, "0")

	owner := exec.Command(bin, "run", "-c", ownerCfg, "--quiet")
	var ownerErr syncBuffer
	owner.Stderr = &ownerErr
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			owner.Process.Kill()
			owner.Wait()
		}
	}()
	pid := strconv.Itoa(owner.Process.Pid)
	lockFile := filepath.Join(shared, ".out.jsonl.weir-lock")
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(lockFile)
		if strings.Contains(string(b), `"pid":`+pid+",") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner never locked %s; its log:\n%s", out, ownerErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	host, _ := os.Hostname()

	second := func(sink, deadPath, count string) (int, string) {
		t.Helper()
		_, cfg := writeLockConfig(t, "second", sink, deadPath, count)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "run", "-c", cfg, "--quiet", "--log-format", "text")
		b, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(b)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(b)
	}
	mine := func(name string) string { return filepath.Join(t.TempDir(), name) }
	cases := []struct {
		name, sink, dead, component string
	}{
		{"same file", "file: { path: " + out + " }", mine("d.jsonl"), "owner/sinks[0]/file"},
		{"same dead-letter file", "file: { path: " + mine("o.jsonl") + " }", dead, "owner/dead_letter"},
		{"templated path over the file", "file: { path: '" + shared + "/{{ service }}.jsonl' }", mine("d.jsonl"), "owner/"},
		{"parquet directory over the file", "parquet: { path: " + shared + " }", mine("d.jsonl"), "owner/"},
	}
	for _, c := range cases {
		code, log := second(c.sink, c.dead, "100")
		t.Logf("%s: %s", c.name, log)
		if code != 1 {
			t.Fatalf("%s: second process exited %d, want 1 (refused); log:\n%s", c.name, code, log)
		}
		for _, want := range []string{
			"another weir process", "pid " + pid + " on " + host, `pipeline "owner"`,
			"component " + c.component, "data_dir " + filepath.Join(ownerDir, "data"), "config " + ownerCfg,
		} {
			if !strings.Contains(log, want) {
				t.Errorf("%s: the refusal does not say %q:\n%s", c.name, want, log)
			}
		}
	}
	// The owner's own configuration again (same data_dir): refused by the
	// data directory's lock, which names the owner too.
	sameCmd := exec.Command(bin, "run", "-c", ownerCfg, "--quiet")
	b, err := sameCmd.CombinedOutput()
	if code := sameCmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(b), "is in use by another weir process (pid "+pid+" on "+host+`, pipeline "owner"`) {
		t.Errorf("the owner's configuration run twice: exit %d (%v), want 1 naming the owner:\n%s", code, err, b)
	}

	// The owner ran on, unharmed: its output grows.
	for deadline := time.Now().Add(20 * time.Second); ; {
		if b, _ := os.ReadFile(out); len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner wrote nothing to %s; its log:\n%s", out, ownerErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// SIGKILL: the kernel drops the locks with the process.
	if err := owner.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	owner.Wait()
	killed = true
	if code, log := second("file: { path: "+out+" }", dead, "100"); code != 0 {
		t.Fatalf("after the owner's SIGKILL, the second process exited %d, want 0; log:\n%s", code, log)
	}
}
