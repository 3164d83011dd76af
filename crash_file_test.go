package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
)

// crashInputIDs is the i of every well-formed line writeCrashInput writes
// (n lines), filtered by keep.
func crashInputIDs(n int, keep func(i int) bool) []int {
	var ids []int
	for i := range n {
		if i%997 != 0 && keep(i) {
			ids = append(ids, i)
		}
	}
	return ids
}

// lineID returns the i field of a JSON output line.
func lineID(t *testing.T, file, line string) int {
	t.Helper()
	var v struct{ I *int }
	if err := json.Unmarshal([]byte(line), &v); err != nil || v.I == nil {
		t.Fatalf("%s: line does not parse (%v): %.200q", file, err, line)
	}
	return *v.I
}

const crashManyFilesConfig = `data_dir: %[1]s/data
pipelines:
  - name: crash-keys
    checkpoint_interval: 100ms
    sources:
      - file: { paths: ["%[2]s/*.log"] }
    operators:
      - parse: { format: json }
      - map: { k: 'i %% 100' }
    sinks:
      - file: { path: '%[1]s/out/k{{ k }}.jsonl', max_open_files: 4, max_bytes: 60000 }
    dead_letter:
      file: { path: "%[1]s/out/dead.jsonl" }
`

// TestCrashManyFilesFewOpenExactlyOnce: 100 output files through 4 open
// ones, each rolling into parts, so files are closed and reopened all the
// time, around every checkpoint and commit, while weir is killed. Every
// record is in its key's parts exactly once, in order.
func TestCrashManyFilesFewOpenExactlyOnce(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	runCrash(t, "many files", crashManyFilesConfig, func(t *testing.T, out map[string]string) {
		parts := map[int][]string{}
		for f := range out {
			var k, seq int
			if _, err := fmt.Sscanf(f, "k%d-%d.jsonl", &k, &seq); err == nil {
				parts[k] = append(parts[k], f)
			}
		}
		if len(parts) != 100 {
			t.Fatalf("%d keys have output files, want 100", len(parts))
		}
		for k := range 100 {
			sort.Strings(parts[k])
			if len(parts[k]) < 2 {
				t.Fatalf("key %d: want several rolled parts, got %v", k, parts[k])
			}
			var seen []int
			for _, p := range parts[k] {
				for _, line := range strings.Split(strings.TrimSuffix(out[p], "\n"), "\n") {
					seen = append(seen, lineID(t, p, line))
				}
			}
			if want := crashInputIDs(120000, func(i int) bool { return i%100 == k }); !slices.Equal(seen, want) {
				t.Fatalf("key %d: %d records in %d parts, want %d, in order, each once", k, len(seen), len(parts[k]), len(want))
			}
		}
		if dead, want := strings.Count(out["dead.jsonl"], "\n"), (120000+996)/997; dead != want {
			t.Fatalf("dead letters: %d, want %d", dead, want)
		}
	})
}
