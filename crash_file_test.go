package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/weirhq/weir/internal/crashtest"
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

const crashAtLeastOnceConfig = `data_dir: %[1]s/data
pipelines:
  - name: crash-alo
    guarantee: at_least_once
    checkpoint_interval: 40ms
    sources:
      - file: { paths: ["%[2]s/*.log"] }
    operators:
      - parse: { format: json }
      - filter: 'status != 250'
      - map: { alert: 'status >= 500', twice: 'i * 2' }
    sinks:
      - file: { path: "%[1]s/out/all.jsonl" }
      - file: { path: '%[1]s/out/by-service/{{ service }}.jsonl', max_open_files: 2 }
`

// TestCrashFileAtLeastOnceNeverTorn kills weir at least 10 times while it
// writes JSON lines under at_least_once, to one file and to files spread by
// service through 2 open ones. at_least_once allows duplicates, not
// garbage: every line of every output parses, and every input record that
// passes the filter is there at least once.
func TestCrashFileAtLeastOnceNeverTorn(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	bin := crashtest.Build(t)
	root := t.TempDir()
	in := filepath.Join(root, "in")
	writeCrashInput(t, in, 3, 40000)
	const name = "at_least_once file sinks"
	ref := crashRun(t, name, bin, filepath.Join(root, "reference"), in, crashAtLeastOnceConfig, 0, 0)
	killed, res, maxDelay := crashRunKilled(t, name, bin, root, in, crashAtLeastOnceConfig, max(crashKills(t), 10), ref.Elapsed)
	want := crashInputIDs(120000, func(i int) bool { return 200+(i%7)*50 != 250 })
	out := readTree(t, filepath.Join(killed, "out"))
	check := func(what string, files []string) {
		t.Helper()
		count := map[int]int{}
		lines := 0
		for _, f := range files {
			for _, line := range strings.Split(strings.TrimSuffix(out[f], "\n"), "\n") {
				count[lineID(t, f, line)]++
				lines++
			}
		}
		for _, i := range want {
			if count[i] == 0 {
				t.Fatalf("%s: record %d is missing after %d kills", what, i, res.Kills)
			}
		}
		if len(count) != len(want) {
			t.Fatalf("%s: %d distinct records, want %d", what, len(count), len(want))
		}
		t.Logf("%s: %d lines, every one parses; all %d records there, plus %d duplicate lines", what, lines, len(want), lines-len(want))
	}
	check("all.jsonl", []string{"all.jsonl"})
	var byService []string
	for f := range out {
		if strings.HasPrefix(f, "by-service"+string(filepath.Separator)) {
			byService = append(byService, f)
		}
	}
	if len(byService) != 4 {
		t.Fatalf("by-service files: %v, want 4", byService)
	}
	check("by-service/*.jsonl", byService)
	t.Logf("%s: %d kills in %d runs (kill delays up to %v; uninterrupted run %v)", name, res.Kills, res.Runs, maxDelay, ref.Elapsed)
}
