package operators

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// lookupOp loads `- lookup: ...` (the YAML after "lookup:") and builds it.
func lookupOp(t testing.TB, opYAML string) pipeline.Operator {
	t.Helper()
	c, err := loadOperator(t, "      - lookup: "+opYAML+"\n")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	b, _ := testservices.Build(t, "p/operators[0]/lookup", 1024, pipeline.ExactlyOnce)
	op, err := c.NewOperator(b)
	if err != nil {
		t.Fatalf("new operator: %v", err)
	}
	t.Cleanup(func() { op.(interface{ Close(context.Context) error }).Close(context.Background()) })
	return op
}

// lookupRun processes lines in one batch and returns the records as JSON
// lines and the dead letters as "reason: error".
func lookupRun(t testing.TB, op pipeline.Operator, lines ...string) (out, dead []string) {
	t.Helper()
	b := jsonBatch(t, lines...)
	if err := op.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.Records {
		out = append(out, string(r.AppendJSON(nil)))
	}
	for _, d := range b.Dead {
		dead = append(dead, d.Reason+": "+d.Error)
	}
	return out, dead
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes content beside path and renames it over path, as a
// table should be updated.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const hostsCSV = "host,rack,dc,weight\nweb-1,r1,eu-west,10\nweb-2,r2,eu-west,2.5\ndb-1,r9,us-east,true\n42,r42,lab,0\n"

func TestLookupCSVTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts.csv")
	writeFile(t, path, hostsCSV)
	for _, tc := range []struct {
		name, op  string
		out, dead []string
	}{
		{"fields", `{table: {file: {path: ` + path + `, key: host}}, key: host, fields: {rack: rack, datacenter: dc}}`,
			[]string{`{"host":"web-1","n":1,"rack":"r1","datacenter":"eu-west"}`, `{"host":"nope","n":2}`, `{"n":3}`, `{"host":42,"n":4,"rack":"r42","datacenter":"lab"}`},
			nil},
		{"every column, typed", `{table: {file: {path: ` + path + `, key: host}}, key: host}`,
			[]string{`{"host":"web-1","n":1,"rack":"r1","dc":"eu-west","weight":10}`, `{"host":"nope","n":2}`, `{"n":3}`, `{"host":"42","n":4,"rack":"r42","dc":"lab","weight":0}`},
			nil},
		{"untyped", `{table: {file: {path: ` + path + `, key: host, infer_types: false}}, key: host, fields: {w: weight}}`,
			[]string{`{"host":"web-1","n":1,"w":"10"}`, `{"host":"nope","n":2}`, `{"n":3}`, `{"host":42,"n":4,"w":"0"}`},
			nil},
		{"drop", `{table: {file: {path: ` + path + `, key: host}}, key: host, fields: {rack: rack}, on_miss: drop}`,
			[]string{`{"host":"web-1","n":1,"rack":"r1"}`, `{"host":42,"n":4,"rack":"r42"}`},
			nil},
		{"dead_letter", `{table: {file: {path: ` + path + `, key: host}}, key: host, fields: {rack: rack}, on_miss: dead_letter}`,
			[]string{`{"host":"web-1","n":1,"rack":"r1"}`, `{"host":42,"n":4,"rack":"r42"}`},
			[]string{`lookup_miss: lookup: no row for key "nope"`, `lookup_miss: lookup: the key host is null`}},
		{"expression key", `{table: {file: {path: ` + path + `, key: host}}, key: 'host == nil ? "db-1" : host', fields: {rack: rack}, on_miss: drop}`,
			[]string{`{"host":"web-1","n":1,"rack":"r1"}`, `{"n":3,"rack":"r9"}`, `{"host":42,"n":4,"rack":"r42"}`},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := lookupOp(t, tc.op)
			out, dead := lookupRun(t, op, `{"host":"web-1","n":1}`, `{"host":"nope","n":2}`, `{"n":3}`, `{"host":42,"n":4}`)
			if strings.Join(out, "\n") != strings.Join(tc.out, "\n") || strings.Join(dead, "\n") != strings.Join(tc.dead, "\n") {
				t.Fatalf("got\n%s\ndead %q\nwant\n%s\ndead %q", strings.Join(out, "\n"), dead, strings.Join(tc.out, "\n"), tc.dead)
			}
		})
	}
}

func TestLookupJSONLinesTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customers.jsonl")
	writeFile(t, path, `{"id": 1, "name": "Ada", "tier": "gold", "tags": ["a"]}`+"\n\n"+`{"id": 2.0, "name": "Bob"}`+"\n"+`{"id": "x", "tier": null}`)
	op := lookupOp(t, `{table: {file: {path: `+path+`, key: id}}, key: customer, fields: {who: name, tier: tier, tags: tags}}`)
	out, dead := lookupRun(t, op, `{"customer":1}`, `{"customer":"2"}`, `{"customer":2.0}`, `{"customer":"x"}`, `{"customer":3}`)
	want := `{"customer":1,"who":"Ada","tier":"gold","tags":["a"]}
{"customer":"2","who":"Bob"}
{"customer":2.0,"who":"Bob"}
{"customer":"x","tier":null}
{"customer":3}`
	if got := strings.Join(out, "\n"); got != want || len(dead) != 0 {
		t.Fatalf("got\n%s\ndead %q\nwant\n%s", got, dead, want)
	}
}

// TestLookupKeyDeadLetters: a key that cannot be computed goes to the
// dead-letter output with reason lookup_key, whatever on_miss says.
func TestLookupKeyDeadLetters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts.csv")
	writeFile(t, path, hostsCSV)
	op := lookupOp(t, `{table: {file: {path: `+path+`, key: host}}, key: 'host + 1', fields: {rack: rack}}`)
	out, dead := lookupRun(t, op, `{"host":41}`, `{"host":"web"}`)
	if len(out) != 1 || out[0] != `{"host":41,"rack":"r42"}` || len(dead) != 1 || !strings.HasPrefix(dead[0], "lookup_key: lookup: key: expression \"host + 1\"") {
		t.Fatalf("out %q dead %q", out, dead)
	}
	op = lookupOp(t, `{table: {file: {path: `+path+`, key: host}}, key: host, on_miss: drop}`)
	out, dead = lookupRun(t, op, `{"host":["web-1"]}`, `{"host":{"a":1}}`, `{"host":"web-2"}`)
	if len(out) != 1 || len(dead) != 2 || dead[0] != `lookup_key: lookup: key host: ["web-1"] is not a key (want a string, number, boolean or time)` {
		t.Fatalf("out %q dead %q", out, dead)
	}
}

func TestLookupConfigErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "hosts.csv")
	writeFile(t, good, hostsCSV)
	badCSV := filepath.Join(dir, "bad.csv")
	writeFile(t, badCSV, "host,rack\nweb-1,r1\nweb-2,r2,extra\n")
	badJSON := filepath.Join(dir, "bad.jsonl")
	writeFile(t, badJSON, "{\"id\":1}\n{\"id\":2,}\n")
	noKey := filepath.Join(dir, "nokey.jsonl")
	writeFile(t, noKey, "{\"id\":1}\n{\"name\":2}\n")
	// col is where sub starts in op, on line 5 after "      - lookup: ".
	col := func(op, sub string) string { return fmt.Sprintf("p.yaml:5:%d: ", 17+strings.Index(op, sub)) }
	type errCase struct{ op, want string }
	var cases []errCase
	add := func(op, sub, msg string) {
		w := msg
		if sub != "" {
			w = col(op, sub) + msg
		}
		cases = append(cases, errCase{op, w})
	}
	g := `{table: {file: {path: ` + good + `, key: host}}`
	add(g+`, key: host, on_miss: ignore}`, "ignore", `lookup: on_miss: "ignore" is not one of keep, drop, dead_letter`)
	add(`{key: host}`, "key", "lookup: needs `table:`, with file, postgres or redis")
	add(g+`}`, "table", "lookup: needs `key:`, an expression on the record such as customer_id")
	add(g+`, key: 'host +'}`, "+'", `lookup: key: expression "host +": unexpected token EOF`)
	add(g+`, key: host, colour: red}`, "colour", `lookup: unknown key "colour" (want table, key, fields, on_miss)`)
	add(g+`, key: host, fields: {}}`, "{}}", "lookup: fields: want at least one `name: column`")
	add(`{table: {sqlite: {path: x}}, key: host}`, "sqlite", `lookup: table: unknown kind "sqlite" (want file, postgres or redis)`)
	add(`{table: {file: {path: a.csv}, redis: {key: x}}, key: host}`, "file", `lookup: table: want exactly one of file, postgres, redis, got 2 keys`)
	add(`{table: {file: {path: `+good+`}}, key: host}`, "file", "lookup: table: file: needs `key:`, the column records are matched on")
	add(`{table: {file: {path: `+good+`, key: host, colour: 1}}, key: host}`, "colour", `lookup: table: file: unknown field "colour" (want path, format, key, delimiter, infer_types, poll_interval)`)
	add(`{table: {file: {path: `+good+`, key: host, poll_interval: 5}}, key: host}`, "5}", `lookup: table: file: `)
	add(`{table: {file: {path: x.txt, key: host}}, key: host}`, "file", `lookup: table: file: format: cannot tell from "x.txt": set format: csv or format: jsonl`)
	add(`{table: {redis: {key: "h:{{ host }}", type: list}}}`, "redis", `lookup: table: redis: type: "list" is not one of hash, string, json`)
	add(`{table: {redis: {key: "h:"}}}`, "table", "lookup: needs `key:`")
	add(`{table: {redis: {key: "h:{{ host }}", type: string}}, fields: {a: name}}`, "table", `lookup: fields: a: a redis string has the one column "value", not "name"`)
	add(`{table: {redis: {key: "h:{{ host }}", cache: {ttl: 0s}}}}`, "redis", `lookup: table: redis: cache: ttl: want a positive duration`)
	add(`{table: {postgres: {dsn: "postgres://x/y", key: id}}, key: id}`, "postgres", "lookup: table: postgres: needs `query:`")
	add(g+`, key: host, fields: {rack: shelf}}`, "", `lookup: fields: rack: table `+good+` has no column "shelf" (it has host, rack, dc, weight)`)
	add(`{table: {file: {path: `+badCSV+`, key: host}}, key: host}`, "", `lookup: table `+badCSV+`:3: wrong number of fields`)
	add(`{table: {file: {path: `+badJSON+`, key: id}}, key: id}`, "", `lookup: table `+badJSON+`:2: `)
	add(`{table: {file: {path: `+noKey+`, key: id}}, key: id}`, "", `lookup: table `+noKey+`:2: no "id" member (the key)`)
	add(`{table: {file: {path: `+good+`, key: name}}, key: id}`, "", `lookup: table `+good+`:1: no column "name" in the header (it has host, rack, dc, weight)`)
	add(`{table: {file: {path: `+filepath.Join(dir, "missing.csv")+`, key: id}}, key: id}`, "", `missing.csv: no such file or directory`)
	for _, tc := range cases {
		_, err := loadOperator(t, "      - lookup: "+tc.op+"\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.op, err, tc.want)
		}
	}
}

// TestLookupFileReload: a changed file is swapped in whole; one that does
// not parse, or is gone, keeps the last good table and is logged.
func TestLookupFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts.csv")
	writeFile(t, path, "host,rack\nweb-1,r1\n")
	c, err := loadOperator(t, "      - lookup: {table: {file: {path: "+path+", key: host, poll_interval: 20ms}}, key: host, fields: {rack: rack}}\n")
	if err != nil {
		t.Fatal(err)
	}
	b, logs := testservices.Build(t, "p/operators[0]/lookup", 1024, pipeline.AtLeastOnce)
	op, err := c.NewOperator(b)
	if err != nil {
		t.Fatal(err)
	}
	defer op.(*lookup).Close(context.Background())
	racks := func() string {
		out, _ := lookupRun(t, op, `{"host":"web-1"}`, `{"host":"web-2"}`)
		return strings.Join(out, " ")
	}
	if got := racks(); got != `{"host":"web-1","rack":"r1"} {"host":"web-2"}` {
		t.Fatalf("first table: %s", got)
	}
	replaceFile(t, path, "host,rack\nweb-1,r10\nweb-2,r20\n")
	testservices.Eventually(t, 5*time.Second, "the new table is used", func() bool {
		return racks() == `{"host":"web-1","rack":"r10"} {"host":"web-2","rack":"r20"}`
	})
	// A version that does not parse: the last good table stays.
	replaceFile(t, path, "host,rack\nweb-1,r100\n\"web-2,r200\n")
	testservices.Eventually(t, 5*time.Second, "the failed reload is logged", func() bool {
		return strings.Contains(logs.String(), "reloading the table failed; keeping the last good one")
	})
	if !strings.Contains(logs.String(), path+":3:") {
		t.Fatalf("the log does not name the path and line: %s", logs.String())
	}
	for range 5 {
		if got := racks(); got != `{"host":"web-1","rack":"r10"} {"host":"web-2","rack":"r20"}` {
			t.Fatalf("after a bad reload: %s", got)
		}
		time.Sleep(30 * time.Millisecond)
	}
	// Gone: still the last good table. Back: swapped in.
	os.Remove(path)
	time.Sleep(100 * time.Millisecond)
	if got := racks(); got != `{"host":"web-1","rack":"r10"} {"host":"web-2","rack":"r20"}` {
		t.Fatalf("with the file gone: %s", got)
	}
	replaceFile(t, path, "host,rack\nweb-2,r3\n")
	testservices.Eventually(t, 5*time.Second, "the table after the file came back", func() bool {
		return racks() == `{"host":"web-1"} {"host":"web-2","rack":"r3"}`
	})
}

// TestLookupFileReloadIsAtomic: while the table is replaced over and over,
// every batch sees one version of it whole: the two columns of every row
// always come from the same version.
func TestLookupFileReloadIsAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.csv")
	version := func(v int) string {
		var s strings.Builder
		s.WriteString("k,a,b\n")
		for i := range 200 {
			fmt.Fprintf(&s, "%d,%d,%d\n", i, v, v)
		}
		return s.String()
	}
	writeFile(t, path, version(0))
	op := lookupOp(t, `{table: {file: {path: `+path+`, key: k, poll_interval: 5ms}}, key: k}`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := 1; v <= 40; v++ {
			replaceFile(t, path, version(v))
			time.Sleep(7 * time.Millisecond)
		}
	}()
	lines := make([]string, 200)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"k":%d}`, i)
	}
	seen := map[int64]bool{}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		b := jsonBatch(t, lines...)
		if err := op.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		v := b.Records[0].Get("a")
		for _, r := range b.Records {
			if r.Get("a") != v || r.Get("b") != v {
				t.Fatalf("one batch saw two versions: %v and %v/%v", v, r.Get("a"), r.Get("b"))
			}
		}
		seen[v.(int64)] = true
	}
	if len(seen) < 3 {
		t.Fatalf("only versions %v seen: the table was not reloaded", seen)
	}
}
