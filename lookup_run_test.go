package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunLookupEveryGuarantee: `weir run` with a lookup against a CSV
// table gives the same enriched output and dead letters under every
// guarantee, and a rerun adds nothing.
func TestRunLookupEveryGuarantee(t *testing.T) {
	for _, g := range []string{"exactly_once", "at_least_once", "at_most_once"} {
		t.Run(g, func(t *testing.T) {
			dir, cfg := writeConfig(t, `data_dir: DIR/data
pipelines:
  - name: a
    guarantee: `+g+`
    sources: [{file: {paths: ["DIR/in.log"]}}]
    operators:
      - parse: {format: json}
      - lookup: {table: {file: {path: DIR/hosts.csv, key: host}}, key: host, fields: {rack: rack}, on_miss: dead_letter}
    sinks: [{file: {path: DIR/out.jsonl}}]
    dead_letter: {file: {path: DIR/dead.jsonl}}
`)
			var hosts, in bytes.Buffer
			hosts.WriteString("host,rack\n")
			for i := range 50 {
				fmt.Fprintf(&hosts, "h%d,r%d\n", i, i%7)
			}
			for i := range 500 {
				fmt.Fprintf(&in, "{\"n\":%d,\"host\":\"h%d\"}\n", i, i%60)
			}
			os.WriteFile(filepath.Join(dir, "hosts.csv"), hosts.Bytes(), 0o644)
			os.WriteFile(filepath.Join(dir, "in.log"), in.Bytes(), 0o644)
			for run := range 2 {
				if code, _, errOut := runCLI(t, "run", "-c", cfg, "--log-level", "warn"); code != 0 {
					t.Fatalf("run %d: exit %d: %s", run, code, errOut)
				}
				out, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if len(lines) != 420 || lines[0] != `{"n":0,"host":"h0","rack":"r0"}` || lines[419] != `{"n":499,"host":"h19","rack":"r5"}` {
					t.Fatalf("run %d: %d lines, first %s, last %s", run, len(lines), lines[0], lines[len(lines)-1])
				}
				dead, _ := os.ReadFile(filepath.Join(dir, "dead.jsonl"))
				if n := bytes.Count(dead, []byte(`"reason":"lookup_miss"`)); n != 80 || bytes.Count(dead, []byte("\n")) != 80 {
					t.Fatalf("run %d: %d lookup_miss dead letters, want 80", run, n)
				}
			}
		})
	}
}

// TestValidateLookupTableError: a table file that does not parse is
// refused by validate with the operator's position and the file's line.
func TestValidateLookupTableError(t *testing.T) {
	dir, cfg := writeConfig(t, `pipelines:
  - name: a
    sources: [{file: {paths: ["DIR/in.log"]}}]
    operators:
      - lookup: {table: {file: {path: DIR/hosts.jsonl, key: host}}, key: host}
    sinks: [{file: {path: DIR/out.jsonl}}]
`)
	os.WriteFile(filepath.Join(dir, "hosts.jsonl"), []byte("{\"host\":\"a\"}\n{\"host\":\"b\"\n"), 0o644)
	code, _, errOut := runCLI(t, "validate", "-c", cfg)
	want := "p.yaml:5:9: "
	if code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "hosts.jsonl:2: ") {
		t.Fatalf("exit %d: %s\nwant %s... hosts.jsonl:2:", code, errOut, want)
	}
}
