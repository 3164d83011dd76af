package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The example really runs: our operator is found by name in the YAML and
// every e-mail address in the listed fields is replaced.
func TestCustomOperatorPipeline(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	t.Setenv("DATA_DIR", filepath.Join(dir, "data"))
	t.Setenv("INPUT", "tickets.log")
	t.Setenv("OUTPUT", out)
	if err := run([]string{"-c", "pipeline.yaml"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":1,"reporter":"<redacted>","msg":"cannot log in, please reply to <redacted>"}
{"id":2,"reporter":"<redacted>","msg":"invoice total is wrong"}
{"id":3,"reporter":"system","msg":"forwarded from <redacted>: refund request"}
`
	if string(data) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", data, want)
	}
}

// A config error in the custom operator's options is reported with its
// position, like any built-in's.
func TestCustomOperatorConfigError(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(cfg, []byte("pipelines:\n  - name: x\n    sources: [{stdin: {}}]\n    operators:\n      - redact_emails: {}\n    sinks: [{file: {path: o}}]\n"), 0o644)
	err := run([]string{"-c", cfg})
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:5:9: redact_emails: list the fields") {
		t.Fatalf("got %v", err)
	}
}
