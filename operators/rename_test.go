package operators

import (
	"context"
	"strings"
	"testing"
)

func TestRenameKeepsPlaceAndValue(t *testing.T) {
	op := buildOp(t, `rename: {msg: message, '$["log.level"]': level, a: b, b: c, nope: x}`)
	b := jsonBatch(t,
		`{"log.level":"error","msg":"boom","a":1,"n":{"x":[1,2]}}`,
		`{"b":"old b","message":"replaced","msg":"m"}`,
	)
	if err := op.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	// a -> b, then b -> c: a ends as c; a field already named new is replaced.
	want := `{"level":"error","message":"boom","c":1,"n":{"x":[1,2]}}` + "\n" + `{"c":"old b","message":"m"}`
	if got := outLines(b); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRenameConfigErrors(t *testing.T) {
	for _, c := range []struct{ op, want string }{
		{"      - rename: {}\n", "rename: needs at least one"},
		{"      - rename: {a: b, a: c}\n", `mapping key "a" already defined`},
		{"      - rename: {a: '$[\"x\"] + 1'}\n", `p.yaml:5:21: rename: "a": want a field name`},
		{"      - rename: [a, b]\n", "p.yaml:5:17: rename: expected a mapping"},
	} {
		_, err := loadOperator(t, c.op)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", strings.TrimSpace(c.op), err, c.want)
		}
	}
}
