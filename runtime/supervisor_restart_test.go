package runtime_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/runtime"
)

// isolationConfig: "broken" writes to PostgreSQL on a port where nothing
// listens, so it fails at start; "healthy" is endless and needs nothing.
func isolationConfig(dir string) string {
	return fmt.Sprintf(`
data_dir: %[1]s/data
pipelines:
  - name: broken
    checkpoint_interval: 20ms
    restart: {max_retries: 2, backoff: 300ms}
    sources:
      - count: {n: 100, positioned: true}
    sinks:
      - postgres: {dsn: "postgres://weir@127.0.0.1:1/test", table: t, connect_timeout: 100ms}
  - name: healthy
    checkpoint_interval: 20ms
    sources:
      - count: {n: 100000000, positioned: true}
    sinks:
      - file: { path: %[1]s/healthy.jsonl }
`, dir)
}

// A failing pipeline is retried from its last checkpoint with backoff,
// reported in /readyz while it waits, and stops for good when its restart
// policy gives up; the healthy pipeline keeps running and checkpointing
// all along, and Run ends, with the broken pipeline's error, only once
// every pipeline has stopped.
func TestFailingPipelineDoesNotStopTheOthers(t *testing.T) {
	dir := t.TempDir()
	sup, err := runtime.NewSupervisor(revision(t, registry(), isolationConfig(dir)), nil, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- sup.Run(context.Background(), stop) }()

	admin := &runtime.Admin{Status: sup.Status}
	waitFor(t, "broken waiting to retry", func() bool { return status(sup, "broken").State == runtime.RunRetrying })
	ready := admin.Ready()
	var problem string
	for _, p := range ready.Pipelines {
		if p.Name == "broken" {
			problem = p.Problem
		}
	}
	if ready.Ready || !strings.Contains(problem, "failed 1 time(s) in a row; starting again from its last checkpoint in") || !strings.Contains(problem, "127.0.0.1:1") {
		t.Fatalf("readyz while retrying: ready=%v, broken: %q", ready.Ready, problem)
	}
	waitFor(t, "broken failed for good", func() bool { return status(sup, "broken").State == runtime.RunFailed })
	if s := status(sup, "broken"); s.Failures != 3 || s.Err == nil {
		t.Fatalf("broken: %d failures (want 1 + 2 retries), err %v", s.Failures, s.Err)
	}
	h := status(sup, "healthy")
	if h.State != runtime.RunRunning {
		t.Fatalf("healthy is %s after broken failed", h.State)
	}
	n := h.Stats.Checkpoints.Load()
	waitFor(t, "healthy checkpointing on", func() bool { return status(sup, "healthy").Stats.Checkpoints.Load() > n+2 })
	select {
	case err := <-done:
		t.Fatalf("Run returned while healthy runs: %v", err)
	default:
	}

	close(stop)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Fatalf("Run: %v; want broken's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pipelines did not stop")
	}
	if s := status(sup, "healthy"); s.State != runtime.RunFinished || s.Err != nil {
		t.Fatalf("healthy ended %s, %v; want finished gracefully", s.State, s.Err)
	}
	if len(readLines(t, dir+"/healthy.jsonl")) == 0 {
		t.Fatal("healthy committed nothing")
	}
}

// With FailFast the first failure stops every pipeline, gracefully.
func TestFailFastStopsEveryPipeline(t *testing.T) {
	dir := t.TempDir()
	sup, err := runtime.NewSupervisor(revision(t, registry(), isolationConfig(dir)), nil, runtime.Options{FailFast: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sup.Run(context.Background(), make(chan struct{})) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Fatalf("Run: %v; want broken's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the failure did not stop the pipelines")
	}
	if s := status(sup, "broken"); s.State != runtime.RunFailed || s.Failures != 0 {
		t.Fatalf("broken: %s after %d retries; want failed, not retried", s.State, s.Failures)
	}
	if s := status(sup, "healthy"); s.State != runtime.RunFinished {
		t.Fatalf("healthy: %s; want stopped gracefully", s.State)
	}
}
