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
