package operators

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Helpers shared by the parse tests. Their names start with "parseTest" so
// they cannot clash with other operators' tests in this package.

// parseTestRegistry returns Default plus a do-nothing source and sink, so
// a whole pipeline YAML loads without the sources and sinks packages. It
// is made on first use: package variables are set before init functions
// register the operators.
var parseTestRegistry = sync.OnceValue(func() *pipeline.Registry {
	r := pipeline.Default.Clone()
	r.Register(pipeline.Entry{Kind: pipeline.KindSource, Name: "parse_test_source", NewConfig: func() any { return &parseTestSourceConfig{} }})
	r.Register(pipeline.Entry{Kind: pipeline.KindSink, Name: "parse_test_sink", ExactlyOnce: true, NewConfig: func() any { return &parseTestSinkConfig{} }})
	return r
})

type parseTestSourceConfig struct{}

func (*parseTestSourceConfig) NewSource(pipeline.Build) (pipeline.Source, error) {
	return nil, fmt.Errorf("test source")
}

type parseTestSinkConfig struct{}

func (*parseTestSinkConfig) NewSink(pipeline.Build) (pipeline.Sink, error) {
	return nil, fmt.Errorf("test sink")
}

// parseTestYAML wraps operator YAML (one list item, indented by 6) in a
// pipeline. The item starts on line 5.
func parseTestYAML(op string) string {
	return "pipelines:\n" +
		"  - name: t\n" +
		"    sources: [{parse_test_source: {}}]\n" +
		"    operators:\n" +
		"      " + op + "\n" +
		"    sinks: [{parse_test_sink: {}}]\n"
}

// parseTestNow is the clock of test operators.
var parseTestNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// parseTestOp loads `op` (one operator, e.g. `- parse: {format: json}`)
// and builds it.
func parseTestOp(t testing.TB, op string) pipeline.Operator {
	t.Helper()
	cfg, err := parseTestRegistry().Load("p.yaml", []byte(parseTestYAML(op)))
	if err != nil {
		t.Fatalf("load %s: %v", op, err)
	}
	c := cfg.Pipelines[0].Operators[0]
	o, err := c.Config.(pipeline.OperatorConfig).NewOperator(pipeline.Build{
		Pipeline: "t", Component: "t/" + c.ID, Now: func() time.Time { return parseTestNow },
	})
	if err != nil {
		t.Fatalf("build %s: %v", op, err)
	}
	return o
}

// parseTestRecord is a raw record as a source makes it.
func parseTestRecord(value string) *pipeline.Record {
	return &pipeline.Record{Value: []byte(value), Origin: pipeline.Origin{Name: "in.log", Offset: 7, Line: 2}}
}

// parseTestRun runs one record through o; it returns the record when it
// stayed in the batch, or the dead letter when it was rejected, and fails
// on anything else.
func parseTestRun(t *testing.T, o pipeline.Operator, r *pipeline.Record) (*pipeline.Record, *pipeline.DeadLetter) {
	t.Helper()
	b := &pipeline.Batch{Records: []*pipeline.Record{r}}
	if err := o.Process(context.Background(), b); err != nil {
		t.Fatalf("Process: %v", err)
	}
	switch {
	case len(b.Records) == 1 && len(b.Dead) == 0:
		if b.Records[0] != r {
			t.Fatalf("Process replaced the record")
		}
		return r, nil
	case len(b.Records) == 0 && len(b.Dead) == 1:
		return nil, &b.Dead[0]
	}
	t.Fatalf("Process: %d records and %d dead letters from one record", len(b.Records), len(b.Dead))
	return nil, nil
}

// parseTestKV is one expected field.
type parseTestKV struct {
	name string
	val  any
}

// parseTestFields lists a record's fields in order, decoding them.
func parseTestFields(r *pipeline.Record) []parseTestKV {
	fs := r.Fields()
	out := make([]parseTestKV, fs.Len())
	for i := range out {
		out[i] = parseTestKV{fs.Name(i), fs.Value(i)}
	}
	return out
}

// parseTestCheck asserts that the record has exactly want, in order, with
// values of the same types.
func parseTestCheck(t *testing.T, r *pipeline.Record, want []parseTestKV) {
	t.Helper()
	got := parseTestFields(r)
	if len(got) != len(want) {
		t.Fatalf("got %d fields %v, want %d %v", len(got), parseTestFormat(got), len(want), parseTestFormat(want))
	}
	for i := range want {
		if got[i].name != want[i].name {
			t.Errorf("field %d: got name %q, want %q (got %v)", i, got[i].name, want[i].name, parseTestFormat(got))
			continue
		}
		if !parseTestEqual(got[i].val, want[i].val) {
			t.Errorf("field %q: got %#v (%T), want %#v (%T)", want[i].name, got[i].val, got[i].val, want[i].val, want[i].val)
		}
	}
}

func parseTestEqual(a, b any) bool {
	if ta, ok := a.(time.Time); ok {
		tb, ok := b.(time.Time)
		if !ok || !ta.Equal(tb) {
			return false
		}
		_, oa := ta.Zone()
		_, ob := tb.Zone()
		return oa == ob
	}
	return reflect.DeepEqual(a, b)
}

func parseTestFormat(kvs []parseTestKV) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, f := range kvs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%#v", f.name, f.val)
	}
	b.WriteByte(']')
	return b.String()
}

// parseTestDead asserts a dead letter's reason, component and error.
func parseTestDead(t *testing.T, d *pipeline.DeadLetter, wantErr string) {
	t.Helper()
	if d.Reason != "parse" {
		t.Errorf("reason %q, want parse", d.Reason)
	}
	if d.Component != "t/operators[0]/parse" {
		t.Errorf("component %q, want t/operators[0]/parse", d.Component)
	}
	if d.Error != wantErr {
		t.Errorf("error:\n got %q\nwant %q", d.Error, wantErr)
	}
}

// parseTestCase is one line through one operator: either the fields it
// gives or the dead-letter error it gets.
type parseTestCase struct {
	name    string
	line    string
	want    []parseTestKV // nil with err set: dead letter
	wantErr string
}

func parseTestTable(t *testing.T, op string, cases []parseTestCase) {
	t.Helper()
	o := parseTestOp(t, op)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Helper()
			r, d := parseTestRun(t, o, parseTestRecord(tc.line))
			if tc.wantErr != "" {
				if d == nil {
					t.Fatalf("parsed %q into %v, want dead letter %q", tc.line, parseTestFormat(parseTestFields(r)), tc.wantErr)
				}
				parseTestDead(t, d, tc.wantErr)
				if string(d.Record.Value) != tc.line {
					t.Errorf("dead letter value %q, want %q", d.Record.Value, tc.line)
				}
				return
			}
			if d != nil {
				t.Fatalf("dead letter %q for %q", d.Error, tc.line)
			}
			parseTestCheck(t, r, tc.want)
		})
	}
}

// parseTestValidTypes fails unless every value is one of the documented
// field value types, recursively.
func parseTestValidTypes(t testing.TB, v any) {
	t.Helper()
	switch x := v.(type) {
	case nil, bool, int64, string, time.Time:
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			t.Fatalf("non-finite float %v", x)
		}
	case []any:
		for _, e := range x {
			parseTestValidTypes(t, e)
		}
	case map[string]any:
		for _, e := range x {
			parseTestValidTypes(t, e)
		}
	default:
		t.Fatalf("value %#v has type %T, not a field value type", v, v)
	}
}

// parseTestTime parses an RFC 3339 time or panics.
func parseTestTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}
