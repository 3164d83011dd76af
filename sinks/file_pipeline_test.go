package sinks_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/weirhq/weir/operators"
	_ "github.com/weirhq/weir/sources"

	"github.com/weirhq/weir/runtime"
)

// runFilePipeline loads text (DIR replaced by dir) and runs it to the end
// of its finite input.
func runFilePipeline(t *testing.T, dir, text string) {
	t.Helper()
	cfg := loadYAML(t, strings.ReplaceAll(text, "DIR", dir))
	if err := runtime.Run(context.Background(), cfg, nil, nil, runtime.Options{Logger: testLogger(t)}); err != nil {
		t.Fatalf("run: %v", err)
	}
}

func writeLines(t *testing.T, path string, n int, line func(i int) string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range n {
		w.WriteString(line(i) + "\n")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func fileText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The repro of a file sink that lost records under exactly_once: 20 output
// files through 4 open ones, with checkpoints (and so commits) landing
// while files are closed and reopened. Every record is committed once, in
// order, and a rerun adds nothing.
func TestFilePipelineManyFilesFewOpenExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	const n, keys = 20000, 20
	writeLines(t, filepath.Join(dir, "in.jsonl"), n, func(i int) string { return fmt.Sprintf(`{"i":%d,"k":%d}`, i, i%keys) })
	const text = `
data_dir: DIR/data
pipelines:
  - name: keys
    checkpoint_interval: 2ms
    batch_size: 256
    sources:
      - file: { paths: ["DIR/in.jsonl"] }
    operators:
      - parse: { format: json }
    sinks:
      - file: { path: 'DIR/out/k{{ k }}.jsonl', max_open_files: 4 }
`
	check := func(run string) {
		t.Helper()
		for k := range keys {
			var want strings.Builder
			for i := k; i < n; i += keys {
				fmt.Fprintf(&want, "{\"i\":%d,\"k\":%d}\n", i, k)
			}
			if got := fileText(t, filepath.Join(dir, fmt.Sprintf("out/k%d.jsonl", k))); got != want.String() {
				t.Fatalf("%s: k%d.jsonl holds %d lines, want %d, each once and in order", run, k, strings.Count(got, "\n"), n/keys)
			}
		}
	}
	runFilePipeline(t, dir, text)
	check("first run")
	store := &runtime.CheckpointStore{Dir: filepath.Join(dir, "data/keys/checkpoints")}
	last, err := store.Latest()
	if err != nil || last == nil {
		t.Fatalf("no checkpoint: %v", err)
	}
	if last.ID < 3 {
		t.Fatalf("the run took %d checkpoint(s): too few for commits to land while files were reopened", last.ID)
	}
	t.Logf("%d records to %d files through 4 open ones in %d checkpoints", n, keys, last.ID)
	runFilePipeline(t, dir, text)
	check("rerun")
}

// A record whose path template cannot be rendered (date(ts) of a record
// without ts) goes to the dead-letter output with the reason and the
// sink's id; the others are written, the run ends well, and a rerun adds
// nothing.
func TestFilePipelineDeadLettersARecordWhosePathCannotBeRendered(t *testing.T) {
	for _, guarantee := range []string{"exactly_once", "at_least_once"} {
		t.Run(guarantee, func(t *testing.T) {
			dir := t.TempDir()
			writeLines(t, filepath.Join(dir, "in.jsonl"), 6, func(i int) string {
				switch i {
				case 2:
					return `{"i":2}`
				case 4:
					return `{"i":4,"ts":"soon"}`
				}
				return fmt.Sprintf(`{"i":%d,"ts":"2026-01-0%dT10:00:00Z"}`, i, 1+i%2)
			})
			text := `
data_dir: DIR/data
pipelines:
  - name: poison
    guarantee: ` + guarantee + `
    sources:
      - file: { paths: ["DIR/in.jsonl"] }
    operators:
      - parse: { format: json }
    sinks:
      - file: { path: 'DIR/out/{{ date(ts) }}.jsonl' }
    dead_letter:
      file: { path: DIR/dead.jsonl }
`
			for _, run := range []string{"first run", "rerun"} {
				runFilePipeline(t, dir, text)
				if got, want := fileText(t, filepath.Join(dir, "out/2026-01-01.jsonl")), `{"i":0,"ts":"2026-01-01T10:00:00Z"}`+"\n"; got != want {
					t.Errorf("%s: 2026-01-01.jsonl = %q, want %q", run, got, want)
				}
				if got, want := fileText(t, filepath.Join(dir, "out/2026-01-02.jsonl")),
					`{"i":1,"ts":"2026-01-02T10:00:00Z"}`+"\n"+`{"i":3,"ts":"2026-01-02T10:00:00Z"}`+"\n"+`{"i":5,"ts":"2026-01-02T10:00:00Z"}`+"\n"; got != want {
					t.Errorf("%s: 2026-01-02.jsonl = %q, want %q", run, got, want)
				}
				dead := strings.Split(strings.TrimSuffix(fileText(t, filepath.Join(dir, "dead.jsonl")), "\n"), "\n")
				if len(dead) != 2 {
					t.Fatalf("%s: %d dead letters, want 2:\n%s", run, len(dead), strings.Join(dead, "\n"))
				}
				for j, want := range []string{`{"i":2}`, `{"i":4,"ts":"soon"}`} {
					var d struct{ Reason, Error, Component, Value string }
					if err := json.Unmarshal([]byte(dead[j]), &d); err != nil {
						t.Fatalf("dead letter %q: %v", dead[j], err)
					}
					if d.Value != want || d.Component != "poison/sinks[0]/file" || d.Reason == "" || !strings.Contains(d.Error, "file: path") {
						t.Errorf("%s: dead letter %d = %+v, want value %s, component poison/sinks[0]/file, a reason and a file: path error", run, j, d, want)
					}
				}
			}
		})
	}
}
