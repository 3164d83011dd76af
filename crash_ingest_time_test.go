package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/crashtest"
)

// ingestTimeConfig windows stdin by ingestion time (no event_time): each
// record's event time is the wall-clock time weir read it. No checkpoint
// is taken before the kill, so the restarted process gets every record
// from the ingest WAL.
const ingestTimeConfig = `data_dir: DIR/data
pipelines:
  - name: ingest
    checkpoint_interval: 1h
    sources:
      - stdin: {}
    operators:
      - parse: { format: json }
      - window:
          tumbling: 1s
          aggregate: { n: count() }
    sinks:
      - file: { path: DIR/out/windows.jsonl }
`

// A record replayed from the ingest WAL after a SIGKILL keeps the
// ingestion time it was read at: windows by ingestion time come out as
// the original run would have made them (one window, of the second the
// lines were read in, with every record), not in the second of the
// restart.
func TestCrashIngestionTimeReplaysIdentically(t *testing.T) {
	bin := crashtest.Build(t)
	dir, cfg := writeConfig(t, ingestTimeConfig)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, bin, "run", "-c", cfg, "--quiet")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	// Write the lines early in a second, so that they are all read in it.
	for time.Now().Nanosecond() > 300e6 {
		time.Sleep(10 * time.Millisecond)
	}
	const n = 200
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, `{"i":%d}`+"\n", i)
	}
	sent := time.Now()
	if _, err := stdin.Write([]byte(lines.String())); err != nil {
		t.Fatal(err)
	}
	// Wait until the ingest WAL holds every line (its segments are at least
	// as large as the lines), then kill.
	walDir := filepath.Join(dir, "data/ingest/sources-0-stdin/wal")
	for deadline := time.Now().Add(20 * time.Second); walBytes(walDir) < int64(lines.Len()); {
		if time.Now().After(deadline) {
			t.Fatalf("the ingest WAL never held the %d lines; log:\n%s", n, log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	readSecond := sent.Truncate(time.Second)
	if time.Since(readSecond) > 900*time.Millisecond {
		t.Skipf("the lines took %v to reach the WAL: they may span two seconds; nothing to compare", time.Since(sent))
	}
	if _, err := os.Stat(filepath.Join(dir, "out/windows.jsonl")); err == nil {
		t.Fatal("the killed run committed windows: the restart would not replay them")
	}

	// Restart two seconds later, with nothing more on stdin: the records
	// come from the WAL alone.
	time.Sleep(time.Until(readSecond.Add(2 * time.Second)))
	restart := exec.CommandContext(ctx, bin, "run", "-c", cfg, "--quiet")
	restart.Stdin = strings.NewReader("")
	if out, err := restart.CombinedOutput(); err != nil {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(dir, "out/windows.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var w struct {
			Start string `json:"window_start"`
			N     int    `json:"n"`
		}
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			t.Fatalf("window %s: %v", sc.Text(), err)
		}
		got = append(got, fmt.Sprintf("%s n=%d", w.Start, w.N))
	}
	want := fmt.Sprintf("%s n=%d", readSecond.UTC().Format("2006-01-02T15:04:05.000Z07:00"), n)
	if len(got) != 1 || got[0] != want {
		t.Fatalf("windows after the replay: %v; want the one of the run that read them: [%s]", got, want)
	}
}

// walBytes is the size of the segments in a WAL directory.
func walBytes(dir string) int64 {
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	var n int64
	for _, s := range segs {
		if fi, err := os.Stat(s); err == nil {
			n += fi.Size()
		}
	}
	return n
}
