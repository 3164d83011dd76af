package pipeline

import (
	"strings"
	"testing"
)

// loadErr loads yaml with the test registry and returns the error text.
func loadErr(t *testing.T, yaml string) string {
	t.Helper()
	_, err := testRegistry().Load("p.yaml", []byte(yaml))
	if err == nil {
		t.Fatalf("loaded without error:\n%s", yaml)
	}
	return err.Error()
}

// An unknown function in an expression is refused by the loader (so by
// `weir validate`), at the function's own line and column, quoted or not.
func TestLoadRefusesUnknownFunction(t *testing.T) {
	for _, c := range []struct{ filter, want string }{
		{`'lenn(msg) > 3'`, `p.yaml:4:18: expression "lenn(msg) > 3": unknown function lenn (did you mean len?)`},
		{`lenn(msg) > 3`, `p.yaml:4:17: expression "lenn(msg) > 3": unknown function lenn (did you mean len?)`},
		{`"size > 1 && lenn(msg) > 3"`, `p.yaml:4:30: expression "size > 1 && lenn(msg) > 3": unknown function lenn`},
	} {
		msg := loadErr(t, "pipelines:\n  - name: a\n    operators:\n      - filter: "+c.filter+"\n    sources: [{src: {paths: [x]}}]\n    sinks: [{commit: {path: o}}]\n")
		if !strings.Contains(msg, c.want) {
			t.Errorf("filter: %s\ngot  %s\nwant %s", c.filter, msg, c.want)
		}
	}
}

// A ternary in a flow mapping gets the warning an unquoted one in block
// style gets, and is read as the expression.
func TestLoadWarnsFlowTernary(t *testing.T) {
	cfg, err := testRegistry().Load("p.yaml", []byte("pipelines:\n  - name: a\n    sources: [{src: {paths: [x]}}]\n    sinks: [{commit: {path: 'o/{{ a ? \"x\" : \"y\" }}'}}]\n    tests: [{m: {sev: a ? \"x\" : \"y\", b: c}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range cfg.Warnings {
		got = append(got, w.Error())
	}
	want := `p.yaml:5:23: an expression containing ": " must be quoted in YAML; read as 'a ? "x" : "y"'`
	if len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Fatalf("warnings %q; want one starting %q", got, want)
	}
}

// An expression that starts with a quoted string is refused with the
// whole expression quoted, in flow and block style.
func TestLoadQuotedStringExpression(t *testing.T) {
	for _, c := range []struct{ op, want string }{
		{`filter: {u: "http://x" + path, v: 1}`, `p.yaml:4:21: an expression that starts with a quoted string must be quoted as a whole in YAML (the value ends at the closing quote, and what follows is not YAML): write u: '"http://x" + path'`},
		{"filter:\n          user-agent: \"curl/\" + version # why", `p.yaml:5:23: an expression that starts with a quoted string must be quoted as a whole in YAML (the value ends at the closing quote, and what follows is not YAML): write user-agent: '"curl/" + version'`},
		{`filter: 'a' == b`, `write filter: '''a'' == b'`},
	} {
		msg := loadErr(t, "pipelines:\n  - name: a\n    operators:\n      - "+c.op+"\n    sources: [{src: {paths: [x]}}]\n    sinks: [{commit: {path: o}}]\n")
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s\ngot  %s\nwant %s", c.op, msg, c.want)
		}
	}
}
