package operators

import (
	"context"
	"strings"
	"testing"
)

func TestUnnest(t *testing.T) {
	in := []string{
		`{"id":1,"items":[{"sku":"a"},{"sku":"b"}],"n":0}`,
		`{"id":2,"items":[]}`,
		`{"id":3}`,
		`{"id":4,"items":["x"]}`,
		`{"id":5,"items":"not a list"}`,
	}
	cases := []struct {
		op, want, dead string
	}{
		{`unnest: items`, `{"id":1,"items":{"sku":"a"},"n":0}
{"id":1,"items":{"sku":"b"},"n":0}
{"id":4,"items":"x"}`, `unnest: unnest: field "items" is a string, not a list`},
		{`explode: {field: items, as: item, index: i}`, `{"id":1,"n":0,"item":{"sku":"a"},"i":0}
{"id":1,"n":0,"item":{"sku":"b"},"i":1}
{"id":4,"item":"x","i":0}`, `unnest: unnest: field "items" is a string, not a list`},
		{`unnest: {field: items, keep_empty: true}`, `{"id":1,"items":{"sku":"a"},"n":0}
{"id":1,"items":{"sku":"b"},"n":0}
{"id":2}
{"id":3}
{"id":4,"items":"x"}`, `unnest: unnest: field "items" is a string, not a list`},
	}
	for _, c := range cases {
		op := buildOp(t, c.op)
		b := jsonBatch(t, in...)
		if err := op.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if got := outLines(b); got != c.want {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", c.op, got, c.want)
		}
		if len(b.Dead) != 1 || b.Dead[0].Reason+": "+b.Dead[0].Error != c.dead || string(b.Dead[0].Record.Value) != in[4] {
			t.Errorf("%s: dead letters %+v; want the record with id 5: %s", c.op, b.Dead, c.dead)
		}
	}
}

// The copies of a record are independent: changing one changes no other.
func TestUnnestCopiesAreIndependent(t *testing.T) {
	op := buildOp(t, `unnest: items`)
	b := jsonBatch(t, `{"items":[1,2,3],"k":"v"}`)
	_ = op.Process(context.Background(), b)
	b.Records[0].Set("k", "changed")
	if got, want := outLines(b), `{"items":1,"k":"changed"}
{"items":2,"k":"v"}
{"items":3,"k":"v"}`; got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestUnnestConfigErrors(t *testing.T) {
	for _, c := range []struct{ op, want string }{
		{"      - unnest: {as: x}\n", "unnest: needs the list field"},
		{"      - unnest: {field: items, index: items}\n", `unnest: index: "items" is also the element's field`},
		{"      - unnest: {field: items, sort: true}\n", `unknown field "sort"`},
	} {
		_, err := loadOperator(t, c.op)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", strings.TrimSpace(c.op), err, c.want)
		}
	}
}
