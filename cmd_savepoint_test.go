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

// A savepoint round trip around a configuration change: the stopped
// pipeline's checkpoint is kept by name, the window gains an aggregate and
// a longer allowed lateness, and `weir run --from-savepoint` goes on from
// the savepoint's positions with the new configuration: the records read
// before are not read again, and the new ones are windowed with the added
// aggregate, each exactly once.
func TestSavepointRoundTripWithAWindowChange(t *testing.T) {
	dir, cfg := writeConfig(t, `data_dir: DIR/data
pipelines:
  - name: a
    sources: [{file: {paths: ["DIR/in.log"]}}]
    operators:
      - parse: {format: json}
      - window: {tumbling: 10s, event_time: ts, group_by: [svc], aggregate: {n: count(), mn: min(i)}}
    sinks: [{file: {path: DIR/out.jsonl}}]
`)
	appendRecords := func(from, to int) {
		f, err := os.OpenFile(filepath.Join(dir, "in.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			fmt.Fprintf(f, "{\"svc\":\"s%d\",\"i\":%d,\"ts\":%q}\n", i%2, i, time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339))
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
	code, out, errOut := runCLI(t, "savepoint", "-c", cfg, "--pipeline", "a", "--name", "before-upgrade")
	if code != 0 || !strings.Contains(out, `pipeline a: savepoint "before-upgrade" keeps checkpoint `) {
		t.Fatalf("savepoint: %d %s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "savepoint", "-c", cfg, "--pipeline", "a", "--name", "before-upgrade"); code != exitFail || !strings.Contains(errOut, "exists already") {
		t.Fatalf("a second savepoint of the same name: %d %s", code, errOut)
	}
	if code, out, _ := runCLI(t, "savepoint", "-c", cfg, "--list"); code != 0 || !strings.HasPrefix(out, "a\tbefore-upgrade\tcheckpoint ") {
		t.Fatalf("savepoint --list: %d %q", code, out)
	}
	if code, _, errOut := runCLI(t, "run", "-c", cfg, "--quiet", "--from-savepoint", "nope"); code != exitFail || !strings.Contains(errOut, `no savepoint "nope" (have: [before-upgrade])`) {
		t.Fatalf("an unknown savepoint: %d %s", code, errOut)
	}

	text, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(text), "aggregate: {n: count(), mn: min(i)}",
		"allowed_lateness: 5s, aggregate: {n: count(), mn: min(i), s: sum(i)}", 1)), 0o644)
	appendRecords(30, 60)
	code, _, errOut = runCLI(t, "run", "-c", cfg, "--quiet", "--log-level", "error", "--from-savepoint", "before-upgrade")
	if code != 0 || !strings.Contains(errOut, `pipeline a: restored savepoint "before-upgrade"`) {
		t.Fatalf("run from the savepoint: %d %s", code, errOut)
	}
	lines := output()
	if len(lines) != 6+6 {
		t.Fatalf("%d windows, want the 6 before and 6 new ones:\n%v", len(lines), lines)
	}
	n, sum := 0, 0
	for _, w := range lines[6:] {
		if w["s"] == nil {
			t.Fatalf("window %v after the upgrade has no s", w)
		}
		n += int(w["n"].(float64))
		sum += int(w["s"].(float64))
	}
	if want := (30 + 59) * 30 / 2; n != 30 || sum != want {
		t.Fatalf("the new windows count %d records summing to %d, want the 30 new ones once each (%d)", n, sum, want)
	}
}
