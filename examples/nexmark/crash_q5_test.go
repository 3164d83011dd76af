package nexmark

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/crashtest"
)

// TestCrashQ5ExactlyOnce runs q5.yaml under exactly_once as a child weir
// process, SIGKILLs it 20 times (WEIR_CRASH_KILLS overrides) at random
// moments, restarting it each time, and checks that the committed output
// is byte for byte what one uninterrupted run writes: the nexmark source
// replays from its checkpointed index and the three windows restore their
// state, so nothing is lost or counted twice.
func TestCrashQ5ExactlyOnce(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	kills := 20
	if s := os.Getenv("WEIR_CRASH_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("WEIR_CRASH_KILLS=%q", s)
		}
		kills = n
	}
	bin := crashtest.Build(t)
	cfg, err := filepath.Abs("q5.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := func(name string) []string {
		return []string{
			"EVENTS=4000000", "EVENT_RATE=5000", "SEED=7", "CHECKPOINT_INTERVAL=40ms",
			"OUT=" + filepath.Join(dir, name, "q5.jsonl"), "DATA=" + filepath.Join(dir, name, "data"),
		}
	}
	ref := exec.Command(bin, "run", "-c", cfg)
	ref.Env = append(os.Environ(), env("ref")...)
	if out, err := ref.CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}
	want, err := os.ReadFile(filepath.Join(dir, "ref", "q5.jsonl"))
	if err != nil || len(want) == 0 {
		t.Fatalf("uninterrupted run wrote nothing: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	h := &crashtest.Harness{Binary: bin, Args: []string{"run", "-c", cfg}, Env: env("killed"), Seed: 5, Log: t.Logf,
		MinDelay: 30 * time.Millisecond, MaxDelay: 300 * time.Millisecond}
	res, err := h.Run(ctx, kills)
	if err != nil {
		t.Fatal(err)
	}
	if res.Kills < kills {
		t.Fatalf("%d kills, want %d", res.Kills, kills)
	}
	got, err := os.ReadFile(filepath.Join(dir, "killed", "q5.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("after %d kills the output (%d bytes) differs from the uninterrupted run's (%d bytes)", res.Kills, len(got), len(want))
	}
	t.Logf("%d kills in %d runs, %v; %d bytes, identical", res.Kills, res.Runs, res.Elapsed, len(got))
}
