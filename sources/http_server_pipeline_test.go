package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpPipelineConfig(t *testing.T, dir, addr, guarantee, interval string) *pipeline.Config {
	t.Helper()
	cfg, err := pipeline.Default.Load("http.yaml", fmt.Appendf(nil, `
data_dir: %s
pipelines:
  - name: ingest
    guarantee: %s
    checkpoint_interval: %s
    sources:
      - http_server: { address: "%s", path: /in }
    sinks:
      - file: { path: %s }
`, filepath.Join(dir, "data"), guarantee, interval, addr, filepath.Join(dir, "out.log")))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitListening polls until addr accepts connections.
func waitListening(t *testing.T, addr string, done <-chan error) { waitListeningTB(t, addr, done) }

func waitListeningTB(t testing.TB, addr string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-done:
			t.Fatalf("pipeline ended before listening: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("nothing listens on %s after 20s", addr)
}

func outLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// A 204 under exactly_once means the records are in the ingest WAL: with
// a checkpoint interval too long for any checkpoint to commit, a hard
// stop after the answers leaves the output empty, and the next run
// replays every answered record from the WAL, once; retries with the
// same Idempotency-Key add nothing.
func TestHTTPServerPipelineExactlyOnceDurableInWAL(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	out := filepath.Join(dir, "out.log")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runtime.Run(ctx, httpPipelineConfig(t, dir, addr, "exactly_once", "1h"), nil, nil, runtime.Options{})
	}()
	waitListening(t, addr, done)
	url := "http://" + addr + "/in"
	body := func(r int) string {
		var b strings.Builder
		for i := range 10 {
			fmt.Fprintf(&b, "req%02d-line%d\n", r, i)
		}
		return b.String()
	}
	for r := range 20 {
		if code, msg := httpTestPost(t, http.DefaultClient, url, body(r), "Idempotency-Key", fmt.Sprintf("key-%d", r)); code != 204 {
			t.Fatalf("request %d: status %d %s", r, code, msg)
		}
	}
	cancel() // a hard stop: no final checkpoint
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if n := len(outLines(t, out)); n != 0 {
		t.Fatalf("%d lines committed before any checkpoint; the test needs none", n)
	}

	stop := make(chan struct{})
	done = make(chan error, 1)
	go func() {
		done <- runtime.Run(context.Background(), httpPipelineConfig(t, dir, addr, "exactly_once", "100ms"), nil, stop, runtime.Options{})
	}()
	waitListening(t, addr, done)
	// Clients that never saw their answer retry: dropped as duplicates.
	for _, r := range []int{3, 19} {
		if code, msg := httpTestPost(t, http.DefaultClient, url, body(r), "Idempotency-Key", fmt.Sprintf("key-%d", r)); code != 204 {
			t.Fatalf("retry %d: status %d %s", r, code, msg)
		}
	}
	if code, _ := httpTestPost(t, http.DefaultClient, url, body(20), "Idempotency-Key", "key-20"); code != 204 {
		t.Fatalf("new request: status %d", code)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(outLines(t, out)) < 210 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	lines := outLines(t, out)
	seen := map[string]int{}
	for _, l := range lines {
		seen[l]++
	}
	for r := range 21 {
		for i := range 10 {
			l := fmt.Sprintf("req%02d-line%d", r, i)
			if seen[l] != 1 {
				t.Errorf("%s written %d times, want once", l, seen[l])
			}
		}
	}
	if len(lines) != 210 {
		t.Errorf("%d lines written, want 210", len(lines))
	}
}

// Under at_least_once a 204 means committed by the sinks: the records are
// in the output file when the answer arrives.
func TestHTTPServerPipelineAtLeastOnceAnswersAfterCommit(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	out := filepath.Join(dir, "out.log")
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- runtime.Run(context.Background(), httpPipelineConfig(t, dir, addr, "at_least_once", "200ms"), nil, stop, runtime.Options{})
	}()
	waitListening(t, addr, done)
	for r := range 3 {
		line := fmt.Sprintf("committed-%d", r)
		if code, msg := httpTestPost(t, http.DefaultClient, "http://"+addr+"/in", line); code != 204 {
			t.Fatalf("status %d %s", code, msg)
		}
		b, _ := os.ReadFile(out)
		if !bytes.Contains(b, []byte(line+"\n")) {
			t.Fatalf("answered 204 but %q is not in the committed output %q", line, b)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
