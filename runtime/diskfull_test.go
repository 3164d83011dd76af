package runtime_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirhq/weir/runtime"
)

// mountSmallFS mounts a tmpfs of the given size at dir, or skips when this
// machine does not allow it (not root, no mount permission).
func mountSmallFS(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disk-full test needs root to mount a small tmpfs")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
}

func remount(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
}

// A full disk stops the pipeline with a plain error and keeps the last
// good checkpoint; once space is back, a restart finishes the work with
// every record exactly once. Both the sink's disk (staging, output) and the
// ingest WAL's disk fill up.
func TestDiskFullStopsAndResumes(t *testing.T) {
	for _, positioned := range []bool{true, false} {
		t.Run(fmt.Sprintf("positioned=%v", positioned), func(t *testing.T) {
			dir := t.TempDir()
			fs := filepath.Join(dir, "small")
			if err := os.Mkdir(fs, 0o755); err != nil {
				t.Fatal(err)
			}
			mountSmallFS(t, fs, "300k")
			const n = 60000 // about 1 MB of output, 3.5 MB of WAL
			cfg := load(t, config(fs, fmt.Sprintf("{n: %d, positioned: %v}", n, positioned), "exactly_once"))
			err := runOnce(t, cfg)
			if err == nil || !strings.Contains(err.Error(), "no space left on device") {
				t.Fatalf("run on a full disk: got %v, want a 'no space left on device' error", err)
			}
			// What is committed is a clean prefix of the output.
			if data, rerr := os.ReadFile(filepath.Join(fs, "out.jsonl")); rerr == nil && len(data) > 0 {
				got := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
				for k, l := range got {
					if want := fmt.Sprintf(`{"i":%d,"even":true}`, 2*k); l != want {
						t.Fatalf("committed line %d = %q, want %q", k, l, want)
					}
				}
			}
			store := &runtime.CheckpointStore{Dir: runtime.CheckpointDir(cfg, "t")}
			if _, err := store.Latest(); err != nil {
				t.Fatalf("last checkpoint unreadable after the disk filled: %v", err)
			}
			remount(t, fs, "64m")
			if err := runOnce(t, cfg); err != nil {
				t.Fatalf("run after space came back: %v", err)
			}
			wantEvens(t, readLines(t, filepath.Join(fs, "out.jsonl")), n)
		})
	}
}
