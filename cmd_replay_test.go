package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/crashtest"
	"github.com/weirhq/weir/runtime"
)

// replaySetup writes n records to dir/in.log, every second one with its
// number as a string, which `bytes * 2` cannot multiply; runs the
// pipeline, which dead-letters those (reason map) and writes the others;
// then fixes the expression, as a user would before a replay.
func replaySetup(t *testing.T, dir string, n int) (cfg string) {
	t.Helper()
	var in strings.Builder
	for i := range n {
		if i%2 == 0 {
			fmt.Fprintf(&in, "{\"n\":%d,\"bytes\":\"%d\"}\n", i, i)
		} else {
			fmt.Fprintf(&in, "{\"n\":%d,\"bytes\":%d}\n", i, i)
		}
	}
	in.WriteString("not json\n") // a dead letter of another reason, never replayed
	os.WriteFile(filepath.Join(dir, "in.log"), []byte(in.String()), 0o644)
	cfg = filepath.Join(dir, "p.yaml")
	text := fmt.Sprintf(`data_dir: %[1]s/data
pipelines:
  - name: a
    checkpoint_interval: 50ms
    batch_size: 256
    sources: [{file: {paths: ["%[1]s/in.log"]}}]
    operators:
      - parse: {format: json}
      - map: {kb: 'bytes * 2'}
    sinks: [{file: {path: "%[1]s/out.jsonl"}}]
    dead_letter: {file: {path: "%[1]s/dead.jsonl"}}
`, dir)
	os.WriteFile(cfg, []byte(text), 0o644)
	if code, _, errOut := runCLI(t, "run", "-c", cfg, "--quiet", "--log-level", "error"); code != 0 {
		t.Fatalf("run: %d %s", code, errOut)
	}
	os.WriteFile(cfg, []byte(strings.Replace(text, "'bytes * 2'", "'to_number(bytes) * 2'", 1)), 0o644)
	return cfg
}

// outputIDs counts each record of dir/out.jsonl by n, checking kb.
func outputIDs(t *testing.T, dir string) map[int]int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "out.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	count := map[int]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec struct{ N, KB int }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		if rec.KB != 2*rec.N {
			t.Fatalf("record %d has kb %d", rec.N, rec.KB)
		}
		count[rec.N]++
	}
	return count
}

// Dead letters replayed once their cause is fixed land in the committed
// output once: selected by reason, whatever the kills of the replaying
// process (SIGKILL, restarted until it ends), and a second replay adds
// nothing. The replay's own state is its own; the pipeline's is untouched.
func TestReplayDeadLettersExactlyOnceAfterKills(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	const n = 40000
	bin := crashtest.Build(t)

	// An uninterrupted replay, for its duration.
	ref := t.TempDir()
	refCfg := replaySetup(t, ref, n)
	args := func(dir, cfg string) []string {
		return []string{"replay-dead-letters", filepath.Join(dir, "dead.jsonl"), "--pipeline", "a", "-c", cfg, "--reason", "map"}
	}
	began := time.Now()
	if res, err := (&crashtest.Harness{Binary: bin, Args: args(ref, refCfg)}).Run(context.Background(), 0); err != nil {
		t.Fatalf("reference replay: %v (%d runs)", err, res.Runs)
	}
	took := time.Since(began)
	if got := outputIDs(t, ref); len(got) != n {
		t.Fatalf("reference replay: %d records, want %d", len(got), n)
	}

	dir := t.TempDir()
	cfg := replaySetup(t, dir, n)
	if got := outputIDs(t, dir); len(got) != n/2 {
		t.Fatalf("before the replay: %d records, want the %d good ones", len(got), n/2)
	}
	h := &crashtest.Harness{Binary: bin, Args: args(dir, cfg), Seed: 7, MinDelay: 10 * time.Millisecond,
		MaxDelay: max(20*time.Millisecond, took*8/10), Log: t.Logf}
	res, err := h.Run(context.Background(), crashKills(t))
	if err != nil {
		t.Fatalf("%v after %d kills", err, res.Kills)
	}
	count := outputIDs(t, dir)
	for i := range n {
		if count[i] != 1 {
			t.Fatalf("record %d is in the output %d times after %d kills of the replay", i, count[i], res.Kills)
		}
	}
	if len(count) != n {
		t.Fatalf("%d distinct records, want %d", len(count), n)
	}
	// Run again once done: nothing more.
	code, _, errOut := runCLI(t, args(dir, cfg)...)
	if code != 0 || !strings.Contains(errOut, "replayed 0 dead letter(s)") {
		t.Fatalf("second replay: %d %s", code, errOut)
	}
	if got := outputIDs(t, dir); len(got) != n || len(outputLines(t, dir)) != n {
		t.Fatalf("a second replay changed the output")
	}
	t.Logf("replay of %d dead letters: %d kills in %d runs (uninterrupted %v)", n/2, res.Kills, res.Runs, took)
}

func outputLines(t *testing.T, dir string) []string {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// A replay is refused while its pipeline runs, and needs --pipeline.
func TestReplayDeadLettersUsage(t *testing.T) {
	dir := t.TempDir()
	cfg := replaySetup(t, dir, 10)
	if code, _, errOut := runCLI(t, "replay-dead-letters", filepath.Join(dir, "dead.jsonl"), "-c", cfg); code != exitUsage || !strings.Contains(errOut, "--pipeline is required") {
		t.Fatalf("without --pipeline: %d %s", code, errOut)
	}
	unlock, err := lockForTest(cfg)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "replay-dead-letters", filepath.Join(dir, "dead.jsonl"), "-c", cfg, "--pipeline", "a")
	unlock()
	if code != exitFail || !strings.Contains(errOut, "is in use by another weir process") {
		t.Fatalf("beside a running pipeline: %d %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "replay-dead-letters", filepath.Join(dir, "dead.jsonl"), "-c", cfg, "--pipeline", "a", "--reason", "map")
	if code != 0 || !strings.Contains(errOut, "replayed 5 dead letter(s)") || len(outputIDs(t, dir)) != 10 {
		t.Fatalf("replay: %d %s", code, errOut)
	}
}

// lockForTest holds pipeline a's lock, as a running weir does.
func lockForTest(cfg string) (func(), error) {
	c, err := load(cfg)
	if err != nil {
		return nil, err
	}
	return runtime.LockPipeline(c, "a")
}
