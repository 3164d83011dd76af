package operators

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Test kit for the window and dedupe operators: a registry with stub
// source and sink, YAML loading, record builders and a runner that feeds
// records in batches of a given size.

type stubSourceConfig struct{}

func (stubSourceConfig) NewSource(pipeline.Build) (pipeline.Source, error) { return nil, nil }

type stubSinkConfig struct{}

func (stubSinkConfig) NewSink(pipeline.Build) (pipeline.Sink, error) { return nil, nil }

func testRegistry() *pipeline.Registry {
	reg := pipeline.Default.Clone()
	if _, ok := reg.Lookup(pipeline.KindSource, "wtest"); !ok {
		reg.Register(pipeline.Entry{Kind: pipeline.KindSource, Name: "wtest", NewConfig: func() any { return &stubSourceConfig{} }})
		reg.Register(pipeline.Entry{Kind: pipeline.KindSink, Name: "wtest", ExactlyOnce: true, NewConfig: func() any { return &stubSinkConfig{} }})
	}
	return reg
}

// pipelineYAML wraps one operator's YAML (indented by 6 spaces, starting
// with "- name:") in a pipeline. The operator starts on line 5.
func pipelineYAML(op string) string {
	return "pipelines:\n  - name: p\n    sources: [{wtest: {}}]\n    operators:\n" + op + "    sinks: [{wtest: {}}]\n"
}

func loadOperator(t testing.TB, op string) (pipeline.OperatorConfig, error) {
	t.Helper()
	cfg, err := testRegistry().Load("p.yaml", []byte(pipelineYAML(op)))
	if err != nil {
		return nil, err
	}
	return cfg.Pipelines[0].Operators[0].Config.(pipeline.OperatorConfig), nil
}

// fakeClock is a settable wall clock for Build.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func newOperator(t testing.TB, op string, clock *fakeClock) pipeline.Operator {
	t.Helper()
	c, err := loadOperator(t, op)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	b := pipeline.Build{Pipeline: "p", Component: "p/operators[0]/" + strings.Fields(op)[1][:len(strings.Fields(op)[1])-1]}
	if clock != nil {
		b.Now = clock.Now
	}
	o, err := c.NewOperator(b)
	if err != nil {
		t.Fatalf("new operator: %v", err)
	}
	return o
}

// windowYAML builds a window operator from option lines (each indented as
// a window option).
func windowYAML(lines ...string) string {
	var b strings.Builder
	b.WriteString("      - window:\n")
	for _, l := range lines {
		b.WriteString("          " + l + "\n")
	}
	return b.String()
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at formats t0 + d as the ts field.
func at(d time.Duration) string { return t0.Add(d).Format(pipeline.TimeLayout) }

// ev is a test record: event time t0+d in field ts, plus extra JSON fields
// (`"k":"a","v":1`).
type ev struct {
	d      time.Duration
	fields string
	source int
	split  string // Record.Split
	raw    string // when set, the whole JSON line
}

func (e ev) record() *pipeline.Record {
	if e.raw != "" {
		r := &pipeline.Record{Value: []byte(e.raw), Source: e.source}
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			panic(err)
		}
		return r
	}
	line := fmt.Sprintf(`{"ts":%q`, at(e.d))
	if e.fields != "" {
		line += "," + e.fields
	}
	line += "}"
	r := &pipeline.Record{Value: []byte(line), Source: e.source, Split: e.split}
	if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
		panic(err)
	}
	return r
}

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// step is one thing fed to an operator: records (split in batches), a Tick
// at a wall-clock time, or a clock change.
type step struct {
	events []ev
	tick   *time.Time
	clock  *time.Time
}

// runResult is what an operator produced: output records as JSON lines
// and dead letters as "reason: value".
type runResult struct {
	out  []string
	dead []string
}

func (r runResult) String() string {
	return "out:\n  " + strings.Join(r.out, "\n  ") + "\ndead:\n  " + strings.Join(r.dead, "\n  ")
}

func (r *runResult) take(b *pipeline.Batch) {
	for _, rec := range b.Records {
		r.out = append(r.out, string(rec.AppendJSON(nil)))
	}
	for _, d := range b.Dead {
		v := ""
		if d.Record != nil {
			v = string(d.Record.Value)
		}
		r.dead = append(r.dead, d.Reason+": "+v)
	}
}

// feed processes events in batches of batchSize.
func feed(t testing.TB, op pipeline.Operator, events []ev, batchSize int, res *runResult) {
	t.Helper()
	for i := 0; i < len(events); i += batchSize {
		b := &pipeline.Batch{}
		for _, e := range events[i:min(i+batchSize, len(events))] {
			b.Records = append(b.Records, e.record())
		}
		if err := op.Process(context.Background(), b); err != nil {
			t.Fatalf("process: %v", err)
		}
		res.take(b)
	}
}

func finish(t testing.TB, op pipeline.Operator, res *runResult) {
	t.Helper()
	b := &pipeline.Batch{}
	if err := op.(pipeline.Finisher).Finish(context.Background(), b); err != nil {
		t.Fatalf("finish: %v", err)
	}
	res.take(b)
}

// run feeds all events in batches of batchSize and, when fin is set,
// finishes.
func run(t testing.TB, op pipeline.Operator, events []ev, batchSize int, fin bool) runResult {
	t.Helper()
	var res runResult
	feed(t, op, events, batchSize, &res)
	if fin {
		finish(t, op, &res)
	}
	return res
}

func equalLines(t testing.TB, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// row builds an expected output line: window [s, e) seconds after t0, then
// the other fields as JSON text, then firing.
func row(s, e float64, fields, firing string) string {
	out := fmt.Sprintf(`{"window_start":%q,"window_end":%q`, at(sec(s)), at(sec(e)))
	if fields != "" {
		out += "," + fields
	}
	return out + fmt.Sprintf(`,"firing":%q}`, firing)
}
