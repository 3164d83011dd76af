package operators

import (
	"context"
	"strings"
	"testing"
)

const nestedLine = `{"@timestamp":"t","http":{"response":{"status_code":503,"body":{"bytes":10}},"request":{"method":"GET"}},"tags":[{"a":1}],"empty":{},"n":1}`

func TestFlatten(t *testing.T) {
	cases := []struct{ op, in, want string }{
		{`flatten: {}`, nestedLine,
			`{"@timestamp":"t","http.request.method":"GET","http.response.body.bytes":10,"http.response.status_code":503,"tags":[{"a":1}],"empty":{},"n":1}`},
		{`flatten:`, `{"a":{"b":1}}`, `{"a.b":1}`},
		{`flatten: {depth: 1}`, nestedLine,
			`{"@timestamp":"t","http.request":{"method":"GET"},"http.response":{"body":{"bytes":10},"status_code":503},"tags":[{"a":1}],"empty":{},"n":1}`},
		{`flatten: {depth: 2, separator: _}`, nestedLine,
			`{"@timestamp":"t","http_request_method":"GET","http_response_body":{"bytes":10},"http_response_status_code":503,"tags":[{"a":1}],"empty":{},"n":1}`},
		{`flatten: {fields: [b]}`, `{"a":{"x":1},"b":{"y":{"z":2}}}`, `{"a":{"x":1},"b.y.z":2}`},
		// A literal dotted key and a flattened one of the same name: the later wins.
		{`flatten: {}`, `{"a":{"b":1},"a.b":2}`, `{"a.b":2}`},
		{`flatten: {}`, `{"plain":"record","n":2}`, `{"plain":"record","n":2}`},
	}
	for _, c := range cases {
		op := buildOp(t, c.op)
		b := jsonBatch(t, c.in)
		if err := op.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if got := outLines(b); got != c.want {
			t.Errorf("%s on %s:\ngot  %s\nwant %s", c.op, c.in, got, c.want)
		}
	}
}

func TestFlattenConfigErrors(t *testing.T) {
	for _, c := range []struct{ op, want string }{
		{"      - flatten: {separator: ''}\n", "flatten: separator: want at least one character"},
		{"      - flatten: {depth: -1}\n", "flatten: depth: want 0 (all levels) or more"},
		{"      - flatten: {deep: 1}\n", `unknown field "deep"`},
	} {
		_, err := loadOperator(t, c.op)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", strings.TrimSpace(c.op), err, c.want)
		}
	}
}
