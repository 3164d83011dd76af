package operators

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

// buildOp loads a one-operator pipeline from YAML and builds the operator,
// as the runtime does.
func buildOp(t testing.TB, opYAML string) pipeline.Operator {
	t.Helper()
	reg := pipeline.Default.Clone()
	reg.Register(pipeline.Entry{Kind: pipeline.KindSource, Name: "nosource", NewConfig: func() any { return &noSource{} }})
	reg.Register(pipeline.Entry{Kind: pipeline.KindSink, Name: "nosink", ExactlyOnce: true, NewConfig: func() any { return &noSink{} }})
	yaml := "pipelines:\n  - name: t\n    sources: [{nosource: {}}]\n    sinks: [{nosink: {}}]\n    operators:\n      - " + opYAML + "\n"
	cfg, err := reg.Load("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Pipelines[0].Operators[0]
	op, err := c.Config.(pipeline.OperatorConfig).NewOperator(pipeline.Build{Component: "t/" + c.ID})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

type noSource struct{}

func (noSource) NewSource(pipeline.Build) (pipeline.Source, error) { return nil, nil }

type noSink struct{}

func (noSink) NewSink(pipeline.Build) (pipeline.Sink, error) { return nil, nil }

func jsonBatch(t testing.TB, lines ...string) *pipeline.Batch {
	t.Helper()
	b := &pipeline.Batch{}
	for _, l := range lines {
		r := &pipeline.Record{Value: []byte(l)}
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		b.Records = append(b.Records, r)
	}
	return b
}

func outLines(b *pipeline.Batch) string {
	var s []string
	for _, r := range b.Records {
		s = append(s, string(r.AppendJSON(nil)))
	}
	return strings.Join(s, "\n")
}

func TestFilter(t *testing.T) {
	op := buildOp(t, `filter: 'level == "error" && status >= 500'`)
	b := jsonBatch(t,
		`{"level":"error","status":503}`,
		`{"level":"info","status":500}`,
		`{"level":"error"}`,              // missing status: null >= 500 is an error → dead letter
		`{"level":"error","status":"x"}`, // wrong type → dead letter
		`{"level":"error","status":500}`,
	)
	if err := op.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got, want := outLines(b), "{\"level\":\"error\",\"status\":503}\n{\"level\":\"error\",\"status\":500}"; got != want {
		t.Fatalf("kept:\n%s\nwant:\n%s", got, want)
	}
	if len(b.Dead) != 2 {
		t.Fatalf("dead letters: %+v", b.Dead)
	}
	for _, d := range b.Dead {
		if d.Reason != "filter" || d.Component != "t/operators[0]/filter" || d.Error == "" {
			t.Errorf("dead letter = %+v", d)
		}
	}
}

func TestFilterMissingFieldIsNotAnError(t *testing.T) {
	op := buildOp(t, `filter: 'user?.admin == true'`)
	b := jsonBatch(t, `{"user":{"admin":true}}`, `{"x":1}`, `{"user":null}`)
	_ = op.Process(context.Background(), b)
	if len(b.Records) != 1 || len(b.Dead) != 0 {
		t.Fatalf("kept %d, dead %d", len(b.Records), len(b.Dead))
	}
}

func TestMapSeesTheInputRecordAndKeepsOrder(t *testing.T) {
	op := buildOp(t, `map: { a: 'b + 1', b: 'a * 10', c: '"new"', gone: 'nil', d: ~ }`)
	b := jsonBatch(t, `{"a":1,"b":2,"gone":"x","d":4,"e":5}`)
	if err := op.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	// Both expressions read the record as it came in (a=1, b=2).
	if got, want := outLines(b), `{"a":3,"b":10,"e":5,"c":"new"}`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestMapBadRecordGoesToDeadLetter(t *testing.T) {
	op := buildOp(t, `map: { n: 'x + 1' }`)
	b := jsonBatch(t, `{"x":"str"}`, `{"x":1}`)
	_ = op.Process(context.Background(), b)
	if outLines(b) != `{"x":1,"n":2}` || len(b.Dead) != 1 || b.Dead[0].Reason != "map" {
		t.Fatalf("out %s dead %+v", outLines(b), b.Dead)
	}
}

func TestDropAndKeepFields(t *testing.T) {
	drop := buildOp(t, `drop_fields: [b, nope]`)
	keep := buildOp(t, `keep_fields: [c, a]`)
	b := jsonBatch(t, `{"a":1,"b":2,"c":3}`)
	_ = drop.Process(context.Background(), b)
	if got := outLines(b); got != `{"a":1,"c":3}` {
		t.Fatalf("drop: %s", got)
	}
	b = jsonBatch(t, `{"a":1,"b":2,"c":3}`)
	_ = keep.Process(context.Background(), b)
	if got := outLines(b); got != `{"a":1,"c":3}` {
		t.Fatalf("keep: %s", got)
	}
}

func TestTransformConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`filter: 'level ==='`, "t.yaml:6:"},
		{`map: {}`, "map: needs at least one"},
		{`map: [a, b]`, "expected a mapping"},
		{`drop_fields: []`, "needs a list of field names"},
	} {
		reg := pipeline.Default.Clone()
		reg.Register(pipeline.Entry{Kind: pipeline.KindSource, Name: "nosource", NewConfig: func() any { return &noSource{} }})
		reg.Register(pipeline.Entry{Kind: pipeline.KindSink, Name: "nosink", ExactlyOnce: true, NewConfig: func() any { return &noSink{} }})
		_, err := reg.Load("t.yaml", []byte("pipelines:\n  - name: t\n    sources: [{nosource: {}}]\n    sinks: [{nosink: {}}]\n    operators:\n      - "+tc.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// benchLines is a batch of P1-shaped records, 10% errors.
func benchBatch(b *testing.B) []string {
	var lines []string
	for i := range 1024 {
		level := "info"
		if i%10 == 0 {
			level = "error"
		}
		lines = append(lines, fmt.Sprintf(`{"ts":"2026-01-01T00:00:00.000Z","level":"%s","service":"api-gateway","msg":"payment authorization declined by provider","latency_ms":12.64,"status":%d}`, level, 200+i%400))
	}
	return lines
}

func BenchmarkFilter(b *testing.B) {
	op := buildOp(b, `filter: 'level == "error"'`)
	lines := benchBatch(b)
	for b.Loop() {
		b.StopTimer()
		batch := jsonBatch(b, lines...)
		b.StartTimer()
		_ = op.Process(context.Background(), batch)
	}
	b.ReportMetric(float64(b.N*1024)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkMap(b *testing.B) {
	op := buildOp(b, `map: { alert: 'status >= 500', pipeline: '"bench"' }`)
	lines := benchBatch(b)
	for b.Loop() {
		b.StopTimer()
		batch := jsonBatch(b, lines...)
		b.StartTimer()
		_ = op.Process(context.Background(), batch)
	}
	b.ReportMetric(float64(b.N*1024)/b.Elapsed().Seconds(), "records/s")
}
