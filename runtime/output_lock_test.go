package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Sinks of one process share their output locks, whichever pipeline takes
// its locks first: a templated path that owns a directory runs beside a
// file and a dead-letter file in that directory, in one pipeline or two
// (two writers of one file are validate's to refuse).
func TestOutputLocksAreSharedWithinAProcess(t *testing.T) {
	for run := range 5 { // the two pipelines start concurrently: vary who locks first
		dir := t.TempDir()
		out := filepath.Join(dir, "out")
		cfg := load(t, fmt.Sprintf(`
data_dir: %[1]s/data
pipelines:
  - name: literal
    sources: [ { count: { n: 300, positioned: true } } ]
    operators: [ { jsonparse: {} } ]
    sinks: [ { file: { path: %[2]s/all.jsonl } } ]
    dead_letter: { file: { path: %[2]s/dead.jsonl } }
  - name: templated
    sources: [ { count: { n: 300, positioned: true } } ]
    operators: [ { jsonparse: {} }, { map: { k: 'i %% 3' } } ]
    sinks: [ { file: { path: '%[2]s/k{{ k }}.jsonl' } } ]
    dead_letter: { file: { path: %[2]s/dead-templated.jsonl } }
`, dir, out))
		if err := runOnce(t, cfg); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		total := 0
		for _, f := range []string{"all.jsonl", "k0.jsonl", "k1.jsonl", "k2.jsonl"} {
			total += len(readLines(t, filepath.Join(out, f)))
		}
		if total != 600 {
			t.Fatalf("run %d: %d lines written, want 600", run, total)
		}
		locks, _ := filepath.Glob(filepath.Join(out, ".*weir-lock"))
		if len(locks) != 4 { // .weir-lock, .all.jsonl.weir-lock, .dead.jsonl.weir-lock, .dead-templated.jsonl.weir-lock
			t.Fatalf("run %d: lock files %v, want the directory's and one per file", run, locks)
		}
		for _, l := range locks {
			if b, _ := os.ReadFile(l); !strings.Contains(string(b), fmt.Sprintf(`"pid":%d,`, os.Getpid())) {
				t.Errorf("run %d: %s names another owner: %s", run, l, b)
			}
		}
	}
}
