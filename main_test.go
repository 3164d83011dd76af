package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirhq/weir/wal"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func writeConfig(t *testing.T, text string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "DIR", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "weir ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errOut := runCLI(t, "frobnicate"); code != exitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "validate", "--nope"); code != exitUsage || !strings.Contains(errOut, "flag provided but not defined") {
		t.Fatalf("bad flag: %d %q", code, errOut)
	}
}

func TestValidateListsEveryErrorWithPositions(t *testing.T) {
	_, cfg := writeConfig(t, `pipelines:
  - name: ok
    sources: [{file: {paths: [x.log]}}]
    sinks: [{file: {path: DIR/o.jsonl}}]
  - name: bad
    sources: [{file: {paths: [x.log], folow: true}}]
    operators:
      - filter: 'level =='
    sinks: [{stdout: {}}]
`)
	code, _, errOut := runCLI(t, "validate", "-c", cfg)
	if code != exitFail {
		t.Fatalf("exit %d, want %d", code, exitFail)
	}
	for _, want := range []string{
		"3 error(s)",
		cfg + `:6:`, `unknown field "folow"`,
		cfg + `:8:`, `expression "level =="`,
		cfg + `:9:14: pipeline "bad": sink "stdout" cannot commit idempotently`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut)
		}
	}
}

func TestValidateWarnsOfUnquotedTernary(t *testing.T) {
	_, cfg := writeConfig(t, "pipelines:\n  - name: a\n    sources: [{file: {paths: [x.log]}}]\n    operators:\n      - filter: status >= 500 ? true : false\n    sinks: [{file: {path: DIR/o}}]\n")
	code, out, errOut := runCLI(t, "validate", "-c", cfg)
	if code != 0 || !strings.Contains(out, cfg+":5:17: warning: an expression containing \": \" must be quoted in YAML; read as 'status >= 500 ? true : false'") ||
		!strings.Contains(out, `pipeline "a" ok`) {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

// TestValidateWarnsOfMQTTWithoutIDProperty: without id_property a
// redelivered MQTT message cannot be recognised under exactly_once.
func TestValidateWarnsOfMQTTWithoutIDProperty(t *testing.T) {
	for _, c := range []struct {
		source, guarantee string
		warn              bool
	}{
		{"{url: 'tcp://127.0.0.1:1883', topics: [a/b]}", "exactly_once", true},
		{"{url: 'tcp://127.0.0.1:1883', topics: [a/b], id_property: msg-id}", "exactly_once", false},
		{"{url: 'tcp://127.0.0.1:1883', topics: [a/b], qos: 0}", "exactly_once", false},
		{"{url: 'tcp://127.0.0.1:1883', topics: [a/b]}", "at_least_once", false},
	} {
		_, cfg := writeConfig(t, "pipelines:\n  - name: m\n    guarantee: "+c.guarantee+"\n    sources:\n      - mqtt: "+c.source+"\n    sinks: [{file: {path: DIR/o}}]\n")
		code, out, errOut := runCLI(t, "validate", "-c", cfg)
		if code != 0 || !strings.Contains(out, `pipeline "m" ok`) {
			t.Fatalf("%s under %s: exit %d\n%s%s", c.source, c.guarantee, code, out, errOut)
		}
		want := cfg + `:5:9: warning: pipeline "m": mqtt source without ` + "`id_property`"
		if got := strings.Contains(out, want) && strings.Contains(out, "processed twice") && strings.Contains(out, "set `id_property`"); got != c.warn {
			t.Errorf("%s under %s: warning %v, want %v:\n%s", c.source, c.guarantee, got, c.warn, out)
		}
	}
}

// TestValidateWarnsOfAMQPUnderExactlyOnce: only messages with a
// message-id are recognised when redelivered.
func TestValidateWarnsOfAMQPUnderExactlyOnce(t *testing.T) {
	for _, c := range []struct {
		guarantee string
		warn      bool
	}{{"exactly_once", true}, {"at_least_once", false}} {
		_, cfg := writeConfig(t, "pipelines:\n  - name: q\n    guarantee: "+c.guarantee+"\n    sources:\n      - amqp: {url: 'amqp://guest:guest@127.0.0.1:5672/', queue: tasks}\n    sinks: [{file: {path: DIR/o}}]\n")
		code, out, errOut := runCLI(t, "validate", "-c", cfg)
		if code != 0 || !strings.Contains(out, `pipeline "q" ok`) {
			t.Fatalf("%s: exit %d\n%s%s", c.guarantee, code, out, errOut)
		}
		want := cfg + `:5:9: warning: pipeline "q": amqp source: `
		if got := strings.Contains(out, want) && strings.Contains(out, "only if it carries a message-id") && strings.Contains(out, "set the message_id property"); got != c.warn {
			t.Errorf("%s: warning %v, want %v:\n%s", c.guarantee, got, c.warn, out)
		}
	}
}

func TestValidateOK(t *testing.T) {
	_, cfg := writeConfig(t, "pipelines:\n  - name: a\n    sources: [{file: {paths: [x.log]}}]\n    sinks: [{file: {path: DIR/o}}]\n")
	code, out, errOut := runCLI(t, "validate", "-c", cfg)
	if code != 0 || !strings.Contains(out, `pipeline "a" ok (exactly_once; 1 sources, 0 operators, 1 sinks)`) {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

func TestRunFiniteThenRerunAddsNothing(t *testing.T) {
	dir, cfg := writeConfig(t, `data_dir: DIR/data
pipelines:
  - name: a
    sources: [{file: {paths: ["DIR/in.log"]}}]
    operators:
      - parse: {format: json}
      - filter: 'n % 3 == 0'
    sinks: [{file: {path: DIR/out.jsonl}}]
    dead_letter: {file: {path: DIR/dead.jsonl}}
`)
	var in bytes.Buffer
	for i := range 300 {
		fmt.Fprintf(&in, "{\"n\":%d}\n", i)
	}
	in.WriteString("not json\n")
	os.WriteFile(filepath.Join(dir, "in.log"), in.Bytes(), 0o644)
	for run := range 2 {
		code, _, errOut := runCLI(t, "run", "-c", cfg, "--log-level", "warn")
		if code != 0 {
			t.Fatalf("run %d: exit %d: %s", run, code, errOut)
		}
		out, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
		if n := bytes.Count(out, []byte("\n")); n != 100 {
			t.Fatalf("run %d: %d output lines, want 100", run, n)
		}
		dead, _ := os.ReadFile(filepath.Join(dir, "dead.jsonl"))
		if !bytes.Contains(dead, []byte(`"reason":"parse"`)) || !bytes.Contains(dead, []byte(`"value":"not json"`)) ||
			!bytes.Contains(dead, []byte(`"line":301`)) || bytes.Count(dead, []byte("\n")) != 1 {
			t.Fatalf("run %d: dead letters: %s", run, dead)
		}
		if run == 0 && !strings.Contains(errOut, "301 records in, 100 out, 1 dead-lettered") {
			t.Fatalf("summary: %s", errOut)
		}
	}
	code, out, _ := runCLI(t, "checkpoints", "-c", cfg, "--json")
	if code != 0 || !strings.Contains(out, `"pipeline": "a"`) || !strings.Contains(out, `"input_done": true`) {
		t.Fatalf("checkpoints --json: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "checkpoints", "-c", cfg)
	for _, want := range []string{"pipeline a: checkpoint ", "; input done: a rerun has nothing left to read", "kept: 1, 2",
		"sources[0]/file   {\"v\":1,\"files\":[{\"path\":", "sinks[0]/file     {\"parts\":"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("checkpoints: %d, no %q in\n%s", code, want, out)
		}
	}
	if strings.Contains(out, "base64") {
		t.Fatalf("checkpoints shows base64:\n%s", out)
	}
}

func TestWALCommands(t *testing.T) {
	dir := t.TempDir()
	l, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), []byte("hello"), []byte("world")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	code, out, errOut := runCLI(t, "wal", "stat", dir)
	if code != 0 || !strings.Contains(out, ": 1 segment, 2 records, ") {
		t.Fatalf("wal stat: %d %s %s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "wal", "dump", dir, "--from", "1")
	if code != 0 || strings.Contains(out, "hello") || !strings.Contains(out, "world") {
		t.Fatalf("wal dump --from 1: %d %s", code, out)
	}
	if code, _, _ := runCLI(t, "wal", "explode", dir); code != exitUsage {
		t.Fatalf("wal explode: exit %d", code)
	}
}

// TestValidateWarnsOfPerPartitionKeys: when partitions are tasks and the
// source does not say how its topic is keyed, keyed state stays with the
// process, and validate says so.
func TestValidateWarnsOfPerPartitionKeys(t *testing.T) {
	for _, c := range []struct {
		sink, guarantee string
		warn            bool
	}{
		{"{postgres: {dsn: 'postgres://127.0.0.1:5432/test', table: t, upsert_on: [window_start, service]}}", "exactly_once", true},
		{"{postgres: {dsn: 'postgres://127.0.0.1:5432/test', table: t}}", "at_least_once", false},
		{"{file: {path: DIR/o}}", "exactly_once", false},
	} {
		_, cfg := writeConfig(t, "pipelines:\n  - name: a\n    guarantee: "+c.guarantee+"\n"+
			"    sources: [{kafka: {brokers: ['127.0.0.1:9092'], topics: [logs], group: g}}]\n"+
			"    operators:\n      - window: {tumbling: 1m, group_by: [service], aggregate: {n: count()}}\n"+
			"    sinks: ["+c.sink+"]\n")
		code, out, errOut := runCLI(t, "validate", "-c", cfg)
		warned := strings.Contains(out, cfg+":6:9: warning: pipeline \"a\": operators[0]/window keeps its state in this process, not per Kafka partition") &&
			strings.Contains(out, "every record with the same group_by [service] is in one partition")
		if code != 0 || warned != c.warn {
			t.Errorf("%s under %s: exit %d, warned %v, want %v\n%s%s", c.sink, c.guarantee, code, warned, c.warn, out, errOut)
		}
	}
}

// TestValidateRefusesUnalignedKeys: a kafka source that declares how its
// partitions are keyed (partitioned_by) has keyed operators of a
// scale-out pipeline checked against it.
func TestValidateRefusesUnalignedKeys(t *testing.T) {
	for _, c := range []struct {
		partitioned, groupBy string
		refused              bool
	}{
		{"service", "[service]", false},
		{"service", "[service, host]", false},
		{"host", "[service]", true},
	} {
		_, cfg := writeConfig(t, "pipelines:\n  - name: a\n"+
			"    sources: [{kafka: {brokers: ['127.0.0.1:9092'], topics: [logs], group: g, partitioned_by: "+c.partitioned+"}}]\n"+
			"    operators:\n      - window: {tumbling: 1m, group_by: "+c.groupBy+", aggregate: {n: count()}}\n"+
			"    sinks: [{postgres: {dsn: 'postgres://127.0.0.1:5432/test', table: t}}]\n")
		code, out, errOut := runCLI(t, "validate", "-c", cfg)
		refused := code == 1 && strings.Contains(errOut, cfg+":5:9: pipeline \"a\": operators[0]/window keeps its state per Kafka partition, but its group_by "+c.groupBy+" is not aligned with the partitions (partitioned_by: "+c.partitioned+")")
		if refused != c.refused || (!c.refused && (code != 0 || strings.Contains(out, "warning"))) {
			t.Errorf("partitioned_by %s, group_by %s: exit %d, refused %v, want %v\n%s%s", c.partitioned, c.groupBy, code, refused, c.refused, out, errOut)
		}
	}
}

// TestValidateRefusesTemplatesInColumnarPath (issue 18, item 7): a parquet
// or arrow path with a {{ }} template made a directory literally named
// "{{ date(window_start) }}". validate refuses it at the value, with the
// partition_by that does what was meant.
func TestValidateRefusesTemplatesInColumnarPath(t *testing.T) {
	_, cfg := writeConfig(t, `pipelines:
  - name: lake
    sources: [{file: {paths: [x.log]}}]
    operators:
      - window: {tumbling: 1m, event_time: ts, aggregate: {n: count()}}
    sinks:
      - parquet: {path: 'DIR/out/s/{{ date(window_start) }}/p.parquet'}
      - arrow:
          path: DIR/out/a/{{ date(window_start) }}
`)
	code, out, errOut := runCLI(t, "validate", "-c", cfg)
	if code != exitFail {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitFail, out, errOut)
	}
	dir := filepath.Dir(cfg)
	for _, want := range []string{
		"2 error(s)",
		cfg + `:7:25: parquet: path "` + dir + `/out/s/{{ date(window_start) }}/p.parquet" holds a {{ }} template, but path is the output directory`,
		`go in partition_by: path: ` + dir + `/out/s/p.parquet, partition_by: "{{ date(window_start) }}"`,
		cfg + `:9:17: arrow: path "` + dir + `/out/a/{{ date(window_start) }}" holds a {{ }} template`,
		`go in partition_by: path: ` + dir + `/out/a, partition_by: "{{ date(window_start) }}"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut)
		}
	}
}

// TestValidateRefusesSharedOutputs (issue 18, item 2): two pipelines with
// one dead-letter file, or two sinks with one path, lost one writer's
// records while validate said OK.
func TestValidateRefusesSharedOutputs(t *testing.T) {
	_, cfg := writeConfig(t, `pipelines:
  - name: a
    sources: [{file: {paths: [a.log]}}]
    sinks: [{file: {path: out/a.jsonl}}]
    dead_letter: {file: {path: out/dead.jsonl}}
  - name: b
    sources: [{file: {paths: [b.log]}}]
    sinks: [{file: {path: ./out/a.jsonl}}, {parquet: {path: out/lake}}, {arrow: {path: out/lake}}]
    dead_letter: {file: {path: out/dead.jsonl}}
`)
	code, _, errOut := runCLI(t, "validate", "-c", cfg)
	for _, want := range []string{
		cfg + `:8:14: pipeline "b": sinks[0]/file writes to out/a.jsonl, as does sinks[0]/file of pipeline "a" (` + cfg + `:4:14)`,
		cfg + `:8:74: pipeline "b": sinks[2]/arrow writes to out/lake, as does sinks[1]/parquet of pipeline "b"`,
		cfg + `:9:19: pipeline "b": dead_letter/file writes to out/dead.jsonl, as does dead_letter/file of pipeline "a"`,
	} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("exit %d; validate output lacks %q:\n%s", code, want, errOut)
		}
	}
}
