package pipeline

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	yamlast "github.com/goccy/go-yaml/ast"
)

// Expr is an expr-lang expression over a record's fields, compiled once at
// load. Field names are variables; a missing field reads as nil, never a
// runtime error.
//
// An Expr is not safe for concurrent use (it reuses its VM and variable
// map between calls); Clone gives an independent evaluator of the same
// compiled program.
type Expr struct {
	Source string
	Pos    Pos

	program *vm.Program
	vars    []string // identifiers the program reads, bound from the record per call
	env     map[string]any
	vm      vm.VM
}

// CompileExpr compiles src; pos locates it in the configuration for errors.
func CompileExpr(src string, pos Pos) (*Expr, error) {
	e := &Expr{Source: src, Pos: pos}
	if err := e.compile(); err != nil {
		return nil, err
	}
	return e, nil
}

// MustCompileExpr is CompileExpr for tests and constants; it panics on error.
func MustCompileExpr(src string) *Expr {
	e, err := CompileExpr(src, Pos{})
	if err != nil {
		panic(err)
	}
	return e
}

func (e *Expr) compile() error {
	if strings.TrimSpace(e.Source) == "" {
		return &ConfigError{Pos: e.Pos, Msg: "empty expression"}
	}
	opts := append([]expr.Option{expr.Env(map[string]any{}), expr.AllowUndefinedVariables()}, exprFunctions...)
	p, err := expr.Compile(e.Source, opts...)
	if err != nil {
		pos := e.Pos
		msg := err.Error()
		var fe *file.Error
		if errors.As(err, &fe) {
			msg = fe.Message
			if fe.Line <= 1 && pos.Line > 0 {
				pos.Column += fe.Column
			}
		}
		return &ConfigError{Pos: pos, Msg: fmt.Sprintf("expression %q: %s", e.Source, msg)}
	}
	e.program = p
	e.vars = identifiers(p.Node())
	e.env = make(map[string]any, len(e.vars))
	return nil
}

// identifiers lists the top-level variables an expression reads.
func identifiers(n ast.Node) []string {
	c := &identCollector{seen: map[string]bool{}}
	ast.Walk(&n, c)
	return c.names
}

type identCollector struct {
	seen  map[string]bool
	names []string
}

func (c *identCollector) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok && !c.seen[id.Value] {
		c.seen[id.Value] = true
		c.names = append(c.names, id.Value)
	}
}

// Vars returns the field names the expression reads.
func (e *Expr) Vars() []string { return e.vars }

// Clone returns an independent evaluator of the same program.
func (e *Expr) Clone() *Expr {
	return &Expr{Source: e.Source, Pos: e.Pos, program: e.program, vars: e.vars, env: make(map[string]any, len(e.vars))}
}

// Eval evaluates the expression against r's fields.
func (e *Expr) Eval(r *Record) (any, error) {
	fs := r.Fields()
	for _, name := range e.vars {
		e.env[name] = fs.Get(name)
	}
	out, err := e.vm.Run(e.program, e.env)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", e.Source, err)
	}
	return out, nil
}

// EvalBool evaluates the expression as a condition: true only for boolean
// true; nil (a missing field) is false. A non-boolean result is an error.
func (e *Expr) EvalBool(r *Record) (bool, error) {
	v, err := e.Eval(r)
	if err != nil {
		return false, err
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case nil:
		return false, nil
	}
	return false, fmt.Errorf("expression %q: got %T, want a boolean", e.Source, v)
}

// UnmarshalYAML reads the expression from a YAML scalar, keeping its
// position, and compiles it.
func (e *Expr) UnmarshalYAML(n yamlast.Node) error {
	src, pos, err := scalarString(n)
	if err != nil {
		return err
	}
	e.Source, e.Pos = src, pos
	return e.compile()
}

// Template is a string with {{ expression }} parts, rendered per record
// (paths, topics, routing keys). Text outside the braces is literal.
// Render renders it as text; RenderPath as a file path, each value escaped
// so that it stays one path segment (path.go).
// Like Expr, a Template is not safe for concurrent use; Clone it.
type Template struct {
	Source  string
	Pos     Pos
	parts   []templatePart
	scratch []byte // RenderPath's copy of a value being escaped
}

type templatePart struct {
	lit  string
	expr *Expr
}

// CompileTemplate compiles src.
func CompileTemplate(src string, pos Pos) (*Template, error) {
	t := &Template{Source: src, Pos: pos}
	rest := src
	offset := 0
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, templatePart{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, &ConfigError{Pos: pos.Add(offset + i), Msg: fmt.Sprintf("template %q: unclosed {{", src)}
		}
		e, err := CompileExpr(rest[i+2:i+j], pos.Add(offset+i+2))
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, templatePart{expr: e})
		offset += i + j + 2
		rest = rest[i+j+2:]
	}
}

// IsConstant reports whether the template has no expressions.
func (t *Template) IsConstant() bool {
	for _, p := range t.parts {
		if p.expr != nil {
			return false
		}
	}
	return true
}

// Clone returns an independent copy.
func (t *Template) Clone() *Template {
	c := &Template{Source: t.Source, Pos: t.Pos, parts: make([]templatePart, len(t.parts))}
	for i, p := range t.parts {
		c.parts[i] = p
		if p.expr != nil {
			c.parts[i].expr = p.expr.Clone()
		}
	}
	return c
}

// Render appends the template rendered for r to dst.
func (t *Template) Render(dst []byte, r *Record) ([]byte, error) {
	for _, p := range t.parts {
		if p.expr == nil {
			dst = append(dst, p.lit...)
			continue
		}
		v, err := p.expr.Eval(r)
		if err != nil {
			return dst, err
		}
		dst = AppendText(dst, v)
	}
	return dst, nil
}

// String renders the template for r as a string.
func (t *Template) String(r *Record) (string, error) {
	b, err := t.Render(nil, r)
	return string(b), err
}

// UnmarshalYAML reads the template from a YAML scalar and compiles it.
func (t *Template) UnmarshalYAML(n yamlast.Node) error {
	src, pos, err := scalarString(n)
	if err != nil {
		return err
	}
	c, err := CompileTemplate(src, pos)
	if err != nil {
		return err
	}
	*t = *c
	return nil
}

// AppendText appends v as plain text (strings unquoted, times in
// TimeLayout, nil as empty).
func AppendText(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return dst
	case string:
		return append(dst, x...)
	case time.Time:
		return x.UTC().AppendFormat(dst, TimeLayout)
	case []any, map[string]any:
		return AppendJSONValue(dst, x)
	}
	b := AppendJSONValue(nil, v)
	if len(b) > 1 && b[0] == '"' {
		if s, err := strconv.Unquote(string(b)); err == nil {
			return append(dst, s...)
		}
	}
	return append(dst, b...)
}

// ToTime converts an event-time value: a time.Time, an RFC 3339 string, or a
// number of unix seconds (below 1e11) or milliseconds.
func ToTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			return time.Time{}, fmt.Errorf("not an RFC 3339 time: %q", x)
		}
		return t, nil
	case int64:
		return unixNumber(float64(x)), nil
	case int:
		return unixNumber(float64(x)), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return time.Time{}, fmt.Errorf("not a time: %v", x)
		}
		return unixNumber(x), nil
	case nil:
		return time.Time{}, errors.New("no time: value is null")
	}
	return time.Time{}, fmt.Errorf("not a time: %T", v)
}

func unixNumber(f float64) time.Time {
	if math.Abs(f) < 1e11 { // seconds: 1e11 s is year 5138
		return time.UnixMilli(int64(math.Round(f * 1000))).UTC()
	}
	return time.UnixMilli(int64(f)).UTC()
}

// exprFunctions are the functions weir adds to expr-lang's builtins.
var exprFunctions = []expr.Option{
	expr.Function("to_time", func(p ...any) (any, error) { return ToTime(p[0]) }, new(func(any) time.Time)),
	expr.Function("date", func(p ...any) (any, error) {
		t, err := ToTime(p[0])
		return t.UTC().Format("2006-01-02"), err
	}, new(func(any) string)),
	expr.Function("hour", func(p ...any) (any, error) {
		t, err := ToTime(p[0])
		return t.UTC().Format("15"), err
	}, new(func(any) string)),
	expr.Function("format_time", func(p ...any) (any, error) {
		t, err := ToTime(p[0])
		layout, _ := p[1].(string)
		return t.UTC().Format(layout), err
	}, new(func(any, string) string)),
	expr.Function("unix_ms", func(p ...any) (any, error) {
		t, err := ToTime(p[0])
		return t.UnixMilli(), err
	}, new(func(any) int64)),
	expr.Function("to_string", func(p ...any) (any, error) { return string(AppendText(nil, p[0])), nil }, new(func(any) string)),
	expr.Function("to_number", func(p ...any) (any, error) {
		switch x := p[0].(type) {
		case int64, float64, int:
			return x, nil
		case string:
			return parseNumber([]byte(strings.TrimSpace(x))), nil
		}
		return nil, nil
	}, new(func(any) any)),
}
