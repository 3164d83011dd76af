package pipetest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/weirhq/weir/internal/pipetest"
	_ "github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
	_ "github.com/weirhq/weir/sinks"
	_ "github.com/weirhq/weir/sources"
)

const base = `
pipelines:
  - name: errs
    sources: [ {stdin: {}} ]
    operators:
      - parse: { format: json }
      - filter: 'level == "error"'
      - map: { alert: 'status >= 500' }
    sinks: [ {file: {path: out.jsonl}} ]
    dead_letter: { file: { path: dead.jsonl } }
    tests:
`

func run(t *testing.T, tests string) []pipetest.Result {
	t.Helper()
	cfg, err := pipeline.Default.Load("p.yaml", []byte(base+tests))
	if err != nil {
		t.Fatal(err)
	}
	spec := cfg.Pipelines[0]
	cases, err := pipetest.Cases("p.yaml", spec)
	if err != nil {
		t.Fatal(err)
	}
	var out []pipetest.Result
	for _, c := range cases {
		out = append(out, pipetest.Run(context.Background(), spec, c))
	}
	return out
}

func TestPipelineTestPasses(t *testing.T) {
	res := run(t, `
      - name: errors kept and flagged
        input:
          - {level: error, status: 503, msg: boom}
          - {level: info, status: 200}
          - 'not json'
          - '{"level":"error","status":404}'
        expect:
          - {msg: boom, status: 503.0, level: error, alert: true}
          - {level: error, status: 404, alert: false}
        expect_dead:
          - {reason: parse, value: 'not json'}
      - name: the filter alone gets parsed records
        operator: 1
        input: [{level: error, n: 1}, {level: info}]
        expect: [{level: error, n: 1}]
`)
	for _, r := range res {
		if r.Err != nil || !r.Passed {
			t.Errorf("%s: passed %v err %v\n%s", r.Case.Name, r.Passed, r.Err, pipetest.Diff(r.Want, r.Got))
		}
	}
}

func TestPipelineTestFailureShowsDiff(t *testing.T) {
	res := run(t, `
      - name: wrong expectation
        input: [{level: error, status: 503}, {level: error, status: 200}]
        expect: [{level: error, status: 503, alert: false}, {level: error, status: 200, alert: false}]
      - name: unexpected dead letter
        input: ['oops']
        expect: []
`)
	if res[0].Passed || res[1].Passed {
		t.Fatalf("passed: %v %v", res[0].Passed, res[1].Passed)
	}
	d := pipetest.Diff(res[0].Want, res[0].Got)
	for _, want := range []string{
		`  - {"alert":false,"level":"error","status":503}`,
		`  + {"alert":true,"level":"error","status":503}`,
		`    {"alert":false,"level":"error","status":200}`,
	} {
		if !strings.Contains(d, want+"\n") {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	if d := pipetest.Diff(res[1].Want, res[1].Got); !strings.Contains(d, "  + dead: parse") {
		t.Errorf("dead letter not in the diff:\n%s", d)
	}
}

func TestCasesReportsPositions(t *testing.T) {
	cfg, err := pipeline.Default.Load("p.yaml", []byte(base+`
      - name: bad
        operator: 7
        input: []
        expect: []
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pipetest.Cases("p.yaml", cfg.Pipelines[0])
	if err == nil || !strings.Contains(err.Error(), "p.yaml:14:") || !strings.Contains(err.Error(), "operator index from 0 to 2") {
		t.Fatalf("err = %v", err)
	}
}

// Windows hold records until the end of input; Finish flushes them.
func TestWindowFlushesAtEndOfInput(t *testing.T) {
	cfg, err := pipeline.Default.Load("p.yaml", []byte(`
pipelines:
  - name: w
    guarantee: at_least_once
    sources: [ {stdin: {}} ]
    operators:
      - parse: { format: json }
      - window:
          tumbling: 1m
          event_time: ts
          group_by: [svc]
          aggregate: { n: count() }
    sinks: [ {stdout: {}} ]
    tests:
      - name: counts per minute
        input:
          - {ts: "2026-01-01T00:00:01Z", svc: a}
          - {ts: "2026-01-01T00:00:02Z", svc: a}
          - {ts: "2026-01-01T00:01:02Z", svc: a}
        expect:
          - {window_start: "2026-01-01T00:00:00.000Z", window_end: "2026-01-01T00:01:00.000Z", svc: a, n: 2, firing: on_time}
          - {window_start: "2026-01-01T00:01:00.000Z", window_end: "2026-01-01T00:02:00.000Z", svc: a, n: 1, firing: on_time}
`))
	if err != nil {
		t.Fatal(err)
	}
	cases, err := pipetest.Cases("p.yaml", cfg.Pipelines[0])
	if err != nil {
		t.Fatal(err)
	}
	r := pipetest.Run(context.Background(), cfg.Pipelines[0], cases[0])
	if r.Err != nil || !r.Passed {
		t.Fatalf("err %v\n%s", r.Err, pipetest.Diff(r.Want, r.Got))
	}
}
