// Package pipetest runs the unit tests written in a pipeline's `tests:`
// block (`weir test`): named input records go through the pipeline's
// operators — all of them, as if read by one source that then ends, or one
// operator alone — and the records that come out, and those dead-lettered,
// are compared with the expected ones. No source, sink, checkpoint or
// data directory is involved.
//
//	pipelines:
//	  - name: app-errors
//	    ...
//	    tests:
//	      - name: server errors are kept and flagged
//	        input:
//	          - {level: error, status: 503, service: api}
//	          - {level: info, status: 200, service: api}
//	          - 'not json'                  # a string is a raw line
//	        expect:
//	          - {level: error, status: 503, service: API, alert: true}
//	        expect_dead:
//	          - {reason: parse}
//	      - name: the filter alone
//	        operator: 1                     # operators[1], 0-based
//	        input: [{level: error}, {level: info}]
//	        expect: [{level: error}]
//
// Input: a mapping is a JSON object, a string a raw line. In a pipeline
// test every input reaches the first operator as the raw bytes a source
// would have read (a mapping as its compact JSON text); in an operator
// test a mapping arrives already parsed, as the operators before would
// have left it, and a string as a raw record.
//
// Expect: a mapping matches an output record with the same fields and
// values (field order and number formatting, 1 vs 1.0, do not matter); a
// string matches an output written exactly so (a record no operator
// parsed). Output order matters. expect_dead lists the dead letters in
// order, each with its reason and, optionally, the original value; when
// expect_dead is absent no record may be dead-lettered.
package pipetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/weirhq/weir/pipeline"
)

// Case is one test of a pipeline.
type Case struct {
	Pipeline string
	Name     string
	Pos      pipeline.Pos
	// Operator is the index of the operator under test; -1 runs them all.
	Operator   int
	Inputs     []Input
	Expect     []Value
	ExpectDead []Dead
	// DeadChecked is false when expect_dead was absent (then none may
	// occur).
	DeadChecked bool
}

// Input is one input record.
type Input struct {
	JSON   []byte // compact JSON text of a mapping; nil for a raw line
	Raw    string
	Object bool
}

// Value is one expected output record.
type Value struct {
	Pos    pipeline.Pos
	Object any    // decoded JSON (map[string]any) of a mapping
	Raw    string // exact output text, for a string
	IsRaw  bool
}

// Dead is one expected dead letter.
type Dead struct {
	Pos    pipeline.Pos
	Reason string
	Value  *string // the original record's text, when given
}

// Cases reads the tests of spec (from spec.Tests; none when absent). file
// is used in error positions.
func Cases(file string, spec *pipeline.Spec) ([]Case, error) {
	if spec.Tests == nil {
		return nil, nil
	}
	p := &reader{file: file}
	seq, ok := pipeline.Unwrap(spec.Tests).(*ast.SequenceNode)
	if !ok {
		return nil, p.errorf(spec.Tests, "tests: expected a list of tests")
	}
	var out []Case
	for i, n := range seq.Values {
		c := Case{Pipeline: spec.Name, Operator: -1, Pos: p.pos(n), Name: fmt.Sprintf("test %d", i+1)}
		kvs, ok := pipeline.Mapping(n)
		if !ok || pipeline.IsNull(n) {
			return nil, p.errorf(n, "tests[%d]: expected a mapping with name, input and expect", i)
		}
		seen := map[string]bool{}
		for _, kv := range kvs {
			key := kv.Key
			seen[key] = true
			v := kv.Value
			switch key {
			case "name":
				c.Name = scalarText(v)
			case "operator":
				idx, err := strconv.Atoi(scalarText(v))
				if err != nil || idx < 0 || idx >= len(spec.Operators) {
					at := v
					if at == nil {
						at = kv.KeyNode
					}
					return nil, p.errorf(at, "tests[%d]: operator: want an operator index from 0 to %d, got %q", i, len(spec.Operators)-1, scalarText(v))
				}
				c.Operator = idx
			case "input":
				items, err := p.list(v, "input", i)
				if err != nil {
					return nil, err
				}
				for _, it := range items {
					in, err := p.input(it)
					if err != nil {
						return nil, err
					}
					c.Inputs = append(c.Inputs, in)
				}
			case "expect":
				items, err := p.list(v, "expect", i)
				if err != nil {
					return nil, err
				}
				for _, it := range items {
					ev, err := p.expected(it)
					if err != nil {
						return nil, err
					}
					c.Expect = append(c.Expect, ev)
				}
			case "expect_dead":
				c.DeadChecked = true
				items, err := p.list(v, "expect_dead", i)
				if err != nil {
					return nil, err
				}
				for _, it := range items {
					d, err := p.dead(it)
					if err != nil {
						return nil, err
					}
					c.ExpectDead = append(c.ExpectDead, d)
				}
			default:
				return nil, p.errorf(kv.KeyNode, "tests[%d]: unknown key %q (want name, operator, input, expect, expect_dead)", i, key)
			}
		}
		if !seen["input"] {
			return nil, p.errorf(n, "tests[%d] (%s): missing `input:`", i, c.Name)
		}
		if !seen["expect"] {
			return nil, p.errorf(n, "tests[%d] (%s): missing `expect:` (use `expect: []` for no output)", i, c.Name)
		}
		out = append(out, c)
	}
	return out, nil
}

type reader struct{ file string }

func (p *reader) pos(n ast.Node) pipeline.Pos {
	if n == nil || n.GetToken() == nil {
		return pipeline.Pos{File: p.file}
	}
	t := n.GetToken().Position
	return pipeline.Pos{File: p.file, Line: t.Line, Column: t.Column}
}

func (p *reader) errorf(n ast.Node, format string, args ...any) error {
	return &pipeline.ConfigError{Pos: p.pos(n), Msg: fmt.Sprintf(format, args...)}
}

func (p *reader) list(n ast.Node, what string, i int) ([]ast.Node, error) {
	switch x := n.(type) {
	case nil, *ast.NullNode:
		return nil, nil
	case *ast.SequenceNode:
		return x.Values, nil
	}
	return nil, p.errorf(n, "tests[%d]: %s: expected a list", i, what)
}

func (p *reader) input(n ast.Node) (Input, error) {
	n = pipeline.Unwrap(n)
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		var b bytes.Buffer
		if err := p.appendJSON(&b, n); err != nil {
			return Input{}, err
		}
		return Input{JSON: b.Bytes(), Object: true}, nil
	case *ast.StringNode, *ast.LiteralNode:
		return Input{Raw: scalarText(n)}, nil
	}
	return Input{}, p.errorf(n, "input: expected a mapping (a JSON object) or a string (a raw line)")
}

func (p *reader) expected(n ast.Node) (Value, error) {
	n = pipeline.Unwrap(n)
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		var b bytes.Buffer
		if err := p.appendJSON(&b, n); err != nil {
			return Value{}, err
		}
		var v any
		if err := decodeJSON(b.Bytes(), &v); err != nil {
			return Value{}, p.errorf(n, "expect: %v", err)
		}
		return Value{Pos: p.pos(n), Object: v}, nil
	case *ast.StringNode, *ast.LiteralNode:
		return Value{Pos: p.pos(n), Raw: scalarText(n), IsRaw: true}, nil
	}
	return Value{}, p.errorf(n, "expect: expected a mapping (a JSON object) or a string (an exact output line)")
}

func (p *reader) dead(n ast.Node) (Dead, error) {
	d := Dead{Pos: p.pos(n)}
	n = pipeline.Unwrap(n)
	if x, ok := n.(*ast.StringNode); ok {
		d.Reason = x.Value
		return d, nil
	}
	kvs, ok := pipeline.Mapping(n)
	if !ok || pipeline.IsNull(n) {
		return d, p.errorf(n, "expect_dead: expected {reason: ..., value: ...} or a reason")
	}
	for _, kv := range kvs {
		switch k := kv.Key; k {
		case "reason":
			d.Reason = scalarText(kv.Value)
		case "value":
			s := scalarText(kv.Value)
			d.Value = &s
		default:
			return d, p.errorf(kv.KeyNode, "expect_dead: unknown key %q (want reason, value)", k)
		}
	}
	return d, nil
}

// appendJSON writes a YAML node as JSON, keeping mapping order.
func (p *reader) appendJSON(b *bytes.Buffer, n ast.Node) error {
	n = pipeline.Unwrap(n)
	switch x := n.(type) {
	case nil, *ast.NullNode:
		b.WriteString("null")
	case *ast.MappingNode, *ast.MappingValueNode:
		kvs, _ := pipeline.Mapping(x)
		b.WriteByte('{')
		for i, kv := range kvs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(pipeline.AppendJSONString(nil, kv.Key))
			b.WriteByte(':')
			if err := p.appendJSON(b, kv.Value); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case *ast.SequenceNode:
		b.WriteByte('[')
		for i, v := range x.Values {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := p.appendJSON(b, v); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case *ast.StringNode, *ast.LiteralNode:
		b.Write(pipeline.AppendJSONString(nil, scalarText(n)))
	case *ast.BoolNode:
		b.WriteString(strconv.FormatBool(x.Value))
	case *ast.IntegerNode, *ast.FloatNode:
		var v any
		if err := json.Unmarshal([]byte(x.GetToken().Value), &v); err != nil {
			// YAML-only spellings (0x1F, 1_000, .5): go through the float.
			f, ferr := strconv.ParseFloat(strings.ReplaceAll(x.GetToken().Value, "_", ""), 64)
			if ferr != nil {
				return p.errorf(n, "number %q cannot be written as JSON", x.GetToken().Value)
			}
			b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
			return nil
		}
		b.WriteString(x.GetToken().Value)
	case *ast.InfinityNode, *ast.NanNode:
		return p.errorf(n, "%s cannot be written as JSON", x.GetToken().Value)
	default:
		return p.errorf(n, "unsupported YAML value %q in a test record", n.GetToken().Value)
	}
	return nil
}

func scalarText(n ast.Node) string {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value
	case *ast.LiteralNode:
		return x.Value.Value
	case nil, *ast.NullNode:
		return ""
	}
	if t := n.GetToken(); t != nil {
		return t.Value
	}
	return ""
}

func decodeJSON(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return d.Decode(v)
}

// Result is the outcome of one Case.
type Result struct {
	Case   Case
	Passed bool
	// Got and Want are the output records as canonical JSON lines (keys
	// sorted), and the dead letters as "dead: reason value" lines.
	Got, Want []string
	// Err is a failure to run (an operator's constructor or a Process
	// error), not a mismatch.
	Err error
}

// Run runs c against spec's operators.
func Run(ctx context.Context, spec *pipeline.Spec, c Case) Result {
	res := Result{Case: c}
	out, dead, err := execute(ctx, spec, c)
	if err != nil {
		res.Err = err
		return res
	}
	for _, r := range out {
		res.Got = append(res.Got, render(r))
	}
	for _, e := range c.Expect {
		res.Want = append(res.Want, renderExpected(e))
	}
	// Match record by record so that 1 and 1.0, or field order, do not
	// count as a difference.
	res.Passed = len(out) == len(c.Expect)
	for i := 0; res.Passed && i < len(out); i++ {
		res.Passed = matches(out[i], c.Expect[i])
		if res.Passed {
			res.Got[i] = res.Want[i] // show equal records identically in a diff
		}
	}
	gotDead := make([]string, 0, len(dead))
	for i, d := range dead {
		var want *Dead
		if i < len(c.ExpectDead) {
			want = &c.ExpectDead[i]
		}
		gotDead = append(gotDead, renderDead(d, want))
	}
	wantDead := make([]string, 0, len(c.ExpectDead))
	for _, d := range c.ExpectDead {
		v := ""
		if d.Value != nil {
			v = " " + strconv.Quote(*d.Value)
		}
		wantDead = append(wantDead, "dead: "+d.Reason+v)
	}
	if !reflect.DeepEqual(gotDead, wantDead) {
		res.Passed = false
	}
	res.Got = append(res.Got, gotDead...)
	res.Want = append(res.Want, wantDead...)
	return res
}

// execute runs the inputs through the operators under test.
func execute(ctx context.Context, spec *pipeline.Spec, c Case) (out []*pipeline.Record, dead []pipeline.DeadLetter, err error) {
	comps := spec.Operators
	if c.Operator >= 0 {
		comps = comps[c.Operator : c.Operator+1]
	}
	dir, err := os.MkdirTemp("", "weir-test-")
	if err != nil {
		return nil, nil, fmt.Errorf("pipetest: %w", err)
	}
	defer os.RemoveAll(dir)
	ops := make([]pipeline.Operator, len(comps))
	for i, comp := range comps {
		b := pipeline.Build{Pipeline: spec.Name, Component: spec.Name + "/" + comp.ID, Index: i, Guarantee: spec.Guarantee,
			Dir: fmt.Sprintf("%s/%d", dir, i), Logger: slog.New(slog.DiscardHandler),
			CheckpointInterval: spec.CheckpointInterval, BatchSize: spec.BatchSize, Now: time.Now}
		op, err := comp.Config.(pipeline.OperatorConfig).NewOperator(b)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w", comp.Pos, comp.ID, err)
		}
		if cl, ok := op.(interface{ Close(context.Context) error }); ok {
			defer cl.Close(ctx)
		}
		ops[i] = op
	}
	run := func(from int, b *pipeline.Batch) error {
		for i := from; i < len(ops) && len(b.Records) > 0; i++ {
			if err := ops[i].Process(ctx, b); err != nil {
				return fmt.Errorf("%s: %w", comps[i].ID, err)
			}
		}
		out = append(out, b.Records...)
		dead = append(dead, b.Dead...)
		return nil
	}
	size := max(spec.BatchSize, 1)
	for start := 0; start < len(c.Inputs); start += size {
		b := &pipeline.Batch{}
		for k, in := range c.Inputs[start:min(start+size, len(c.Inputs))] {
			r := &pipeline.Record{Time: time.Now(), Origin: pipeline.Origin{Name: "test input", Offset: int64(start + k), Line: int64(start + k + 1)}}
			switch {
			case in.Object && c.Operator >= 0:
				r.Value = in.JSON
				if err := r.SetFields().ParseJSONObject(in.JSON); err != nil {
					return nil, nil, fmt.Errorf("pipetest: input %d: %w", start+k+1, err)
				}
			case in.Object:
				r.Value = in.JSON
			default:
				r.Value = []byte(in.Raw)
			}
			b.Records = append(b.Records, r)
		}
		if err := run(0, b); err != nil {
			return nil, nil, err
		}
	}
	// End of input: flush what operators hold, each flush passing through
	// the operators after it (as the runtime does).
	for i, op := range ops {
		f, ok := op.(pipeline.Finisher)
		if !ok {
			continue
		}
		b := &pipeline.Batch{}
		if err := f.Finish(ctx, b); err != nil {
			return nil, nil, fmt.Errorf("%s: finish: %w", comps[i].ID, err)
		}
		dead = append(dead, b.Dead...)
		b.Dead = nil
		if err := run(i+1, b); err != nil {
			return nil, nil, err
		}
	}
	return out, dead, nil
}

// render writes an output record as canonical JSON (keys sorted), or as
// its raw text when it is not a JSON object.
func render(r *pipeline.Record) string {
	text := r.AppendJSON(nil)
	var v any
	if err := decodeJSON(text, &v); err != nil {
		return string(text)
	}
	if _, ok := v.(map[string]any); !ok {
		return string(text)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func renderExpected(e Value) string {
	if e.IsRaw {
		return e.Raw
	}
	out, _ := json.Marshal(e.Object)
	return string(out)
}

func renderDead(d pipeline.DeadLetter, want *Dead) string {
	s := "dead: " + d.Reason
	if want != nil && want.Value != nil && d.Record != nil {
		s += " " + strconv.Quote(string(d.Record.Value))
	}
	return s
}

func matches(r *pipeline.Record, e Value) bool {
	text := r.AppendJSON(nil)
	if e.IsRaw {
		return string(text) == e.Raw
	}
	var got any
	if err := decodeJSON(text, &got); err != nil {
		return false
	}
	return equal(got, e.Object)
}

// equal compares decoded JSON, numbers by value.
func equal(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		fx, err1 := x.Float64()
		fy, err2 := y.Float64()
		return err1 == nil && err2 == nil && (fx == fy || math.Abs(fx-fy) <= 1e-12*math.Max(math.Abs(fx), math.Abs(fy)))
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// Diff returns a line diff of want and got: "  " common, "- " only in
// want, "+ " only in got.
func Diff(want, got []string) string {
	// Longest common subsequence; tests are small.
	n, m := len(want), len(got)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && want[i] == got[j]:
			b.WriteString("    " + want[i] + "\n")
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] > lcs[i+1][j]):
			b.WriteString("  + " + got[j] + "\n")
			j++
		default:
			b.WriteString("  - " + want[i] + "\n")
			i++
		}
	}
	return b.String()
}
