package sources

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/crashtest"
)

// TestHTTPServerKill: HTTP clients post to a child weir (http_server →
// file, exactly_once) that is SIGKILLed again and again while they post.
// A client retries every request not answered 204 with the same
// Idempotency-Key, as the source's documentation asks. Once every request
// was answered 204, the committed output holds each of their records
// exactly once: an answered record survived the kill (it was fsynced in
// the WAL before the answer), and a record stored but not answered before
// a kill is dropped when its retry comes.
func TestHTTPServerKill(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	kills := 8
	if n, err := fmt.Sscan(os.Getenv("WEIR_CRASH_KILLS"), &kills); n == 0 || err != nil {
		kills = 8
	}
	bin := crashtest.Build(t)
	dir, addr := t.TempDir(), freeAddr(t)
	conf := filepath.Join(dir, "weir.yaml")
	out := filepath.Join(dir, "out.log")
	os.WriteFile(conf, fmt.Appendf(nil, `
data_dir: %s
pipelines:
  - name: ingest
    checkpoint_interval: 50ms
    sources:
      - http_server: { address: "%s", path: /in, max_pending: 64 }
    sinks:
      - file: { path: %s }
`, filepath.Join(dir, "data"), addr, out), 0o644)

	var logs bytes.Buffer
	var logMu sync.Mutex
	var cmd *exec.Cmd
	var exited chan struct{}
	start := func() {
		cmd = exec.Command(bin, "run", "-c", conf, "--quiet", "--log-level", "warn")
		w := lockedWriter{&logMu, &logs}
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			t.Fatalf("start weir: %v", err)
		}
		exited = make(chan struct{})
		go func(c *exec.Cmd, e chan struct{}) { c.Wait(); close(e) }(cmd, exited)
	}
	start()

	const clients, requests, perRequest = 4, 150, 25
	var answered, retries atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range requests {
				var body strings.Builder
				for i := range perRequest {
					fmt.Fprintf(&body, "c%d-r%03d-%02d\n", c, r, i)
				}
				key := fmt.Sprintf("c%d-r%03d", c, r)
				for attempt := 0; ; attempt++ {
					if attempt > 2000 {
						t.Errorf("request %s never answered 204", key)
						return
					}
					req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/in", strings.NewReader(body.String()))
					req.Header.Set("Idempotency-Key", key)
					resp, err := client.Do(req)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusNoContent {
							answered.Add(1)
							time.Sleep(15 * time.Millisecond) // spread the requests over the kills
							break
						}
					}
					retries.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()

	rng := rand.New(rand.NewPCG(1, 2))
	killed := 0
kill:
	for killed < kills {
		select {
		case <-allDone:
			break kill
		case <-exited:
			logMu.Lock()
			t.Fatalf("weir exited on its own: %s", logs.String())
		case <-time.After(time.Duration(50+rng.IntN(250)) * time.Millisecond):
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		killed++
		start()
	}
	select {
	case <-allDone:
	case <-time.After(2 * time.Minute):
		t.Fatal("clients not done 2 minutes after the last kill")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("weir did not stop within 30s of SIGTERM")
	}
	if !cmd.ProcessState.Success() {
		logMu.Lock()
		t.Fatalf("weir's last run: %v\n%s", cmd.ProcessState, logs.String())
	}
	if killed < 3 {
		t.Fatalf("only %d kills happened before the clients were done; the test proves little", killed)
	}

	seen := map[string]int{}
	for _, l := range outLines(t, out) {
		seen[l]++
	}
	bad := 0
	for c := range clients {
		for r := range requests {
			for i := range perRequest {
				l := fmt.Sprintf("c%d-r%03d-%02d", c, r, i)
				if seen[l] != 1 && bad < 10 {
					t.Errorf("%s written %d times, want exactly once", l, seen[l])
					bad++
				}
				delete(seen, l)
			}
		}
	}
	if len(seen) > 0 {
		t.Errorf("%d lines in the output that no client sent", len(seen))
	}
	t.Logf("%d kills, %d requests answered 204, %d retries", killed, answered.Load(), retries.Load())
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
