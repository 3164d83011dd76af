package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/crashtest"
	"github.com/weirhq/weir/internal/killpoint"
)

// TestCrashHTTPSinkToHTTPServer runs two weir processes: a sender
// (generate → http sink, exactly_once) and a receiver (http_server →
// file, exactly_once). The sender is killed in the middle of its commits
// — after the first batch of an epoch was accepted, before the rest
// (killpoint http.commit.partial) — and by SIGKILL from outside at random
// moments, and restarted each time: its recovery sends the interrupted
// epoch again, with the same Idempotency-Keys, and the receiver drops
// what it already has. The receiver's output holds every generated
// record exactly once.
func TestCrashHTTPSinkToHTTPServer(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	bin := crashtest.Build(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	out := filepath.Join(dir, "received.jsonl")
	recvConf, sendConf := filepath.Join(dir, "recv.yaml"), filepath.Join(dir, "send.yaml")
	os.WriteFile(recvConf, fmt.Appendf(nil, `data_dir: %s/recv
pipelines:
  - name: recv
    checkpoint_interval: 50ms
    sources:
      - http_server: { address: "%s", path: /in, format: json }
    sinks:
      - file: { path: %s }
`, dir, addr, out), 0o644)
	const count = 6000
	os.WriteFile(sendConf, fmt.Appendf(nil, `data_dir: %s/send
pipelines:
  - name: send
    checkpoint_interval: 100ms
    sources:
      - generate: { rate: 6000, count: %d, seed: 3 }
    sinks:
      - http: { url: "http://%s/in", format: json, gzip: true, batch_size: 40, max_in_flight: 2,
                min_retry_delay: 20ms, max_retry_delay: 200ms }
`, dir, count, addr), 0o644)

	var recvLog bytes.Buffer
	recv := exec.Command(bin, "run", "-c", recvConf, "--quiet")
	recv.Stderr = &recvLog
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	recvDone := make(chan error, 1)
	go func() { recvDone <- recv.Wait() }()
	t.Cleanup(func() { recv.Process.Kill() })

	// The sender: random SIGKILLs from the harness, and its own at the
	// killpoint; a run that died at the killpoint is started again, as a
	// killed one is.
	selfKills, kills := 0, 0
	for runs := 0; ; runs++ {
		if runs > 200 {
			t.Fatalf("sender not done after %d runs", runs)
		}
		var log bytes.Buffer
		h := &crashtest.Harness{Binary: bin, Args: []string{"run", "-c", sendConf, "--quiet"}, Dir: dir, Seed: uint64(runs),
			Env: []string{killpoint.Env + "=" + killpoint.HTTPCommitPartial + "=0.4"}, MinDelay: 100 * time.Millisecond, MaxDelay: 600 * time.Millisecond,
			Log: func(format string, args ...any) { fmt.Fprintf(&log, format, args...) }}
		external := 0
		if kills < crashKills(t)/2 {
			external = 1
		}
		res, err := h.Run(t.Context(), external)
		kills += res.Kills
		if err == nil {
			break
		}
		if !strings.Contains(log.String(), "killpoint "+killpoint.HTTPCommitPartial) {
			t.Fatalf("sender run failed: %v\n%s", err, log.String())
		}
		selfKills++
	}
	t.Logf("sender: %d runs of the harness, %d kills", selfKills+1, kills)
	if selfKills == 0 {
		t.Fatalf("the sender never died in the middle of a commit (killpoint %s); the test proves little", killpoint.HTTPCommitPartial)
	}
	recv.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-recvDone:
		if err != nil {
			t.Fatalf("receiver: %v\n%s", err, recvLog.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("receiver did not stop within 30s of SIGTERM")
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	for _, l := range lines {
		var m struct{ TS string }
		if err := json.Unmarshal([]byte(l), &m); err != nil || m.TS == "" {
			t.Fatalf("received line %q: %v", l, err)
		}
		seen[m.TS]++
	}
	if len(lines) != count || len(seen) != count {
		t.Errorf("receiver wrote %d lines, %d distinct records, want %d of each (sender killed %d times from outside, %d mid-commit)",
			len(lines), len(seen), count, kills, selfKills)
	}
	t.Logf("sender killed %d times from outside and %d times in the middle of a commit: %d records received exactly once", kills, selfKills, count)
}
