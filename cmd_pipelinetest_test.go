package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The example's tests pass.
func TestPipelineTestExamplePasses(t *testing.T) {
	code, out, errOut := runCLI(t, "test", "-c", "examples/pipeline-tests/pipeline.yaml")
	if code != 0 || !strings.Contains(out, "4 passed, 0 failed") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

// A failing test exits 1 with a diff naming the test and its position.
func TestPipelineTestFailureExitsOneWithDiff(t *testing.T) {
	data, err := os.ReadFile("examples/pipeline-tests/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "service: API, status: 503, alert: true}", "service: API, status: 503, alert: false}", 1)
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "test", "-c", path, "--pipeline", "app-errors")
	if code != exitFail {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"FAIL app-errors: server errors are kept and flagged, the rest dropped (pipeline, " + path + ":28:",
		`  - {"alert":false,"level":"error","service":"API","status":503,"ts":"2026-01-01T00:00:00Z"}`,
		`  + {"alert":true,"level":"error","service":"API","status":503,"ts":"2026-01-01T00:00:00Z"}`,
		"2 passed, 1 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "1 of 3 pipeline tests failed") {
		t.Errorf("stderr = %q", errOut)
	}
}

func TestPipelineTestWithoutTests(t *testing.T) {
	_, cfg := writeConfig(t, "pipelines:\n  - name: a\n    sources: [{file: {paths: [x.log]}}]\n    sinks: [{file: {path: DIR/o}}]\n")
	code, out, _ := runCLI(t, "test", "-c", cfg)
	if code != 0 || !strings.Contains(out, "no tests") {
		t.Fatalf("exit %d: %s", code, out)
	}
}
