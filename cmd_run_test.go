package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitForText(t *testing.T, what string, buf interface{ String() string }, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(buf.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; output:\n%s", what, buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// generated is a finite pipeline paced to last about count/rate seconds.
const generated = `data_dir: DIR/data
http: HTTP
pipelines:
  - name: gen
    checkpoint_interval: 100ms
    sources:
      - generate: { rate: RATE, count: COUNT }
    operators:
      - map: { tag: '"TAG"' }
    sinks:
      - file: { path: DIR/out.jsonl }
`

func genConfig(t *testing.T, rate, count, tag, http string) (dir, path string) {
	r := strings.NewReplacer("RATE", rate, "COUNT", count, "TAG", tag, "HTTP", http)
	return writeConfig(t, r.Replace(generated))
}

// On a terminal, `weir run` draws a live status line per pipeline, logs in
// text above it, and prints the summary at the end.
func TestRunShowsProgressOnTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	screen := &syncBuffer{}
	go io.Copy(screen, ptmx)
	_, cfg := genConfig(t, "1500", "1500", "a", "")
	code := run([]string{"run", "-c", cfg}, io.Discard, tty)
	tty.Close()
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, screen.String())
	}
	waitForText(t, "the status line", screen, regexp.MustCompile(`gen  running\s+in [1-9][0-9.]*k?/s  out [0-9.]+k?/s  checkpoint [0-9.]+m?s ago  dead 0`))
	waitForText(t, "the summary", screen, regexp.MustCompile(`weir: gen: 1500 records in, 1500 out, 0 dead-lettered`))
	if !strings.Contains(screen.String(), "level=INFO msg=running") {
		t.Errorf("no text log on the terminal:\n%s", screen.String())
	}
}

// Not on a terminal: JSON logs, no status line; --quiet drops the summary.
func TestRunLogsJSONWhenNotATerminal(t *testing.T) {
	_, cfg := genConfig(t, "0", "500", "a", "")
	code, _, errOut := runCLI(t, "run", "-c", cfg)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	if strings.Contains(errOut, "\x1b[") {
		t.Errorf("terminal escapes in a non-terminal output:\n%q", errOut)
	}
	var logs int
	for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if strings.HasPrefix(l, "weir: gen: 500 records in") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("not a JSON log line: %q", l)
		}
		logs++
	}
	if logs == 0 {
		t.Error("no log lines")
	}
	code, _, errOut = runCLI(t, "run", "-c", cfg, "--quiet", "--log-format", "text", "--log-level", "warn")
	if code != 0 || errOut != "" {
		t.Fatalf("--quiet: exit %d, output %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "run", "-c", cfg, "--log-format", "xml"); code != exitUsage || !strings.Contains(errOut, "--log-format") {
		t.Fatalf("bad --log-format: %d %q", code, errOut)
	}
}

// The admin endpoints are served on the configured address while the
// pipelines run.
func TestRunServesAdminEndpoints(t *testing.T) {
	_, cfg := genConfig(t, "1000", "2000", "a", "127.0.0.1:0")
	errOut := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", "-c", cfg}, io.Discard, errOut) }()
	m := waitForText(t, "the admin address", errOut, regexp.MustCompile(`"addr":"(http://127\.0\.0\.1:[0-9]+)"`))
	get := func(path string) (int, string) {
		resp, err := http.Get(m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, `"status": "ok"`) {
		t.Errorf("/healthz: %d %s", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get("/metrics")
		if code == 200 && regexp.MustCompile(`weir_records_in_total\{[^}]*weir_component="sources\[0\]/generate"[^}]*\} [1-9]`).MatchString(body) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never counted the source's records:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"ready": true`) {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if code := <-done; code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut.String())
	}
}

// --watch: an invalid edit is reported and changes nothing; a valid one
// restarts the pipeline from a final checkpoint, and the output holds every
// record exactly once.
func TestRunWatchReloads(t *testing.T) {
	dir, cfg := genConfig(t, "1000", "2500", "before", "")
	errOut := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"run", "-c", cfg, "--watch", "--watch-interval", "20ms"}, io.Discard, errOut)
	}()
	waitForText(t, "a checkpoint", errOut, regexp.MustCompile(`"msg":"running"`))
	time.Sleep(300 * time.Millisecond)
	text, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(text), "map:", "mapp:", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitForText(t, "the invalid edit reported", errOut, regexp.MustCompile(`configuration not reloaded.*unknown operator`))
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(text), "before", "after", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitForText(t, "the reload", errOut, regexp.MustCompile(`configuration reloaded.*restarting gen`))
	if code := <-done; code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(readFile(t, dir+"/out.jsonl")), "\n")
	if len(lines) != 2500 {
		t.Fatalf("%d records out, want 2500", len(lines))
	}
	seen := map[string]bool{}
	tags := map[string]int{}
	for _, l := range lines {
		var r struct{ TS, Tag string }
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if seen[r.TS] {
			t.Fatalf("record %s twice", r.TS)
		}
		seen[r.TS] = true
		tags[r.Tag]++
	}
	if tags["before"] == 0 || tags["after"] == 0 {
		t.Fatalf("tags %v: want records from both configurations", tags)
	}
	if !regexp.MustCompile(`weir: gen: 2500 records in, 2500 out`).MatchString(errOut.String()) {
		t.Errorf("summary does not add up the runs:\n%s", errOut.String())
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
