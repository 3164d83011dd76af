package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A changed window size is refused with the difference in the
// configuration's units and the remedy; `weir state reset` drops the
// window's state, and the next run goes on from the committed positions:
// the records read before are not read again, the new ones are windowed
// at the new size, each exactly once.
func TestStateResetAfterAWindowChange(t *testing.T) {
	dir, cfg := writeConfig(t, `data_dir: DIR/data
pipelines:
  - name: a
    sources: [{file: {paths: ["DIR/in.log"]}}]
    operators:
      - parse: {format: json}
      - window: {tumbling: 10s, event_time: ts, group_by: [svc], aggregate: {n: count()}}
    sinks: [{file: {path: DIR/out.jsonl}}]
`)
	appendRecords := func(from, to int) {
		f, err := os.OpenFile(filepath.Join(dir, "in.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			fmt.Fprintf(f, "{\"svc\":\"s%d\",\"ts\":%q}\n", i%2, time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339))
		}
		f.Close()
	}
	output := func() (lines []map[string]any) {
		data, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			lines = append(lines, m)
		}
		return lines
	}
	appendRecords(0, 30)
	if code, _, errOut := runCLI(t, "run", "-c", cfg, "--quiet", "--log-level", "error"); code != 0 {
		t.Fatalf("first run: %d %s", code, errOut)
	}
	if n := len(output()); n != 6 {
		t.Fatalf("first run: %d windows, want 3 per service", n)
	}
	text, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(text), "tumbling: 10s", "tumbling: 20s", 1)), 0o644)
	appendRecords(30, 60)

	code, _, errOut := runCLI(t, "run", "-c", cfg, "--quiet", "--log-level", "error")
	for _, want := range []string{
		"a/operators[1]/window: restore state: window: restore: the state was written by a different window configuration: it was tumbling 10s, 1 group_by field(s), it is now tumbling 20s, 1 group_by field(s)",
		"`weir state reset --pipeline a --operator operators[1]/window` drops this state",
	} {
		if code != exitFail || !strings.Contains(errOut, want) {
			t.Fatalf("changed window: exit %d, want 1 and %q in:\n%s", code, want, errOut)
		}
	}
	if strings.Count(errOut, "restore state") != 2 { // the log line and the exit message: tried once, not retried
		t.Fatalf("a refused restore was retried:\n%s", errOut)
	}

	code, out, errOut := runCLI(t, "state", "reset", "-c", cfg, "--pipeline", "a", "--operator", "operators[9]/window")
	if code != exitFail || !strings.Contains(errOut, `holds no operator "operators[9]/window" (operators with state: operators[1]/window)`) {
		t.Fatalf("reset of an unknown operator: %d %s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "state", "reset", "-c", cfg, "--pipeline", "a", "--operator", "operators[1]/window")
	if code != 0 || !strings.Contains(out, "pipeline a: checkpoint ") || !strings.Contains(out, ": dropped the state of operators[1]/window (") {
		t.Fatalf("state reset: %d %s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "run", "-c", cfg, "--quiet", "--log-level", "error"); code != 0 {
		t.Fatalf("run after the reset: %d %s", code, errOut)
	}
	lines := output()
	if len(lines) != 6+4 {
		t.Fatalf("%d windows after the reset, want the 6 before and 2 of 20 s per service:\n%v", len(lines), lines)
	}
	total := 0
	for _, w := range lines[6:] {
		start, _ := time.Parse(time.RFC3339, w["window_start"].(string))
		end, _ := time.Parse(time.RFC3339, w["window_end"].(string))
		if end.Sub(start) != 20*time.Second {
			t.Fatalf("window %v after the reset is not 20 s", w)
		}
		total += int(w["n"].(float64))
	}
	if total != 30 {
		t.Fatalf("the new windows count %d records, want the 30 new ones once each", total)
	}
	if code, out, _ := runCLI(t, "state", "reset", "-c", cfg, "--pipeline", "nope"); code == 0 {
		t.Fatalf("reset of an unknown pipeline: %s", out)
	}
}
