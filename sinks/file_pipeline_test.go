package sinks_test

import (
	"bufio"
	"context"
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
