package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// weir checkpoints shows operator state as a size, never as base64, and
// --json the checkpoint as stored.
func TestCheckpointsShowsStateSizes(t *testing.T) {
	dir, cfg := writeConfig(t, `data_dir: DIR/data
pipelines:
  - name: w
    sources: [{file: {paths: ["DIR/in.log"]}}]
    operators:
      - parse: {format: json}
      - window: {tumbling: 1m, event_time: ts, group_by: [svc], aggregate: {n: count()}}
    sinks: [{file: {path: DIR/out.jsonl}}]
`)
	var in strings.Builder
	for i := range 30 {
		fmt.Fprintf(&in, "{\"svc\":\"s%d\",\"ts\":\"2026-01-01T00:00:%02dZ\"}\n", i%3, i)
	}
	os.WriteFile(filepath.Join(dir, "in.log"), []byte(in.String()), 0o644)
	if code, _, errOut := runCLI(t, "run", "-c", cfg, "--log-level", "warn", "--quiet"); code != 0 {
		t.Fatalf("run: %d %s", code, errOut)
	}
	code, out, _ := runCLI(t, "checkpoints", "-c", cfg)
	if code != 0 || !regexp.MustCompile(`\n  operators +state\n    operators\[1\]/window +\d+ B\n`).MatchString(out) || strings.Contains(out, "base64") {
		t.Fatalf("checkpoints: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "checkpoints", "-c", cfg, "--json")
	if code != 0 || !strings.Contains(out, `"id": "operators[1]/window"`) || !strings.Contains(out, `"base64":`) {
		t.Fatalf("checkpoints --json: %d\n%s", code, out)
	}
}
