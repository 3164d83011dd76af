package operators

import (
	"context"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("filter", "keep records for which an expression is true", func() *FilterConfig { return &FilterConfig{} })
	pipeline.RegisterOperator("map", "set fields to expressions; null deletes a field", func() *MapConfig { return &MapConfig{} })
	pipeline.RegisterOperator("drop_fields", "remove the named fields", func() *FieldListConfig { return &FieldListConfig{} })
	pipeline.RegisterOperator("keep_fields", "keep only the named fields", func() *FieldListConfig { return &FieldListConfig{keep: true} })
}

// FilterConfig is `filter: 'expression'`: records for which the expression
// is true are kept; false or null (a missing field) drops them. A record on
// which the expression fails (a type error) goes to the dead-letter output.
type FilterConfig struct {
	Expr *pipeline.Expr
}

// UnmarshalYAML takes the expression as the whole value.
func (c *FilterConfig) UnmarshalYAML(n ast.Node) error {
	c.Expr = new(pipeline.Expr)
	return c.Expr.UnmarshalYAML(n)
}

// BareWords implements pipeline.BareWordReader.
func (c *FilterConfig) BareWords() []pipeline.BareWordUse {
	if c.Expr == nil {
		return nil
	}
	var out []pipeline.BareWordUse
	for _, w := range c.Expr.BareWords(false) {
		out = append(out, pipeline.BareWordUse{BareWord: w, Fix: "filter: " + singleQuoted(w.Text)})
	}
	return out
}

// singleQuoted writes s as a YAML single-quoted scalar.
func singleQuoted(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// NewOperator implements pipeline.OperatorConfig.
func (c *FilterConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
	if c.Expr == nil {
		return nil, fmt.Errorf("filter: no expression")
	}
	return &filter{expr: c.Expr.Clone(), id: b.Component}, nil
}

type filter struct {
	expr *pipeline.Expr
	id   string
}

// Stateless implements pipeline.Stateless.
func (f *filter) Stateless() bool { return true }

func (f *filter) Process(_ context.Context, b *pipeline.Batch) error {
	out := b.Records[:0]
	for _, r := range b.Records {
		keep, err := f.expr.EvalBool(r)
		if err != nil {
			b.Reject(r, f.id, "filter", err)
			continue
		}
		if keep {
			out = append(out, r)
		}
	}
	clear(b.Records[len(out):])
	b.Records = out
	return nil
}

// MapConfig is `map: {field: expression, ...}`. Every expression sees the
// record as it entered the step; then the fields are set in the order
// written. An expression whose value is null deletes its field; a YAML null
// (`field: ~`) deletes it too.
type MapConfig struct {
	Fields pipeline.ExprMap
}

// UnmarshalYAML takes the mapping as the whole value.
func (c *MapConfig) UnmarshalYAML(n ast.Node) error { return c.Fields.UnmarshalYAML(n) }

// Validate implements pipeline.Validator.
func (c *MapConfig) Validate() error {
	if len(c.Fields.Names) == 0 {
		return fmt.Errorf("map: needs at least one `field: expression`")
	}
	return nil
}

// BareWords implements pipeline.BareWordReader: a value that is one bare
// word (env: prod), and bare words compared with fields.
func (c *MapConfig) BareWords() []pipeline.BareWordUse {
	var out []pipeline.BareWordUse
	for i, e := range c.Fields.Exprs {
		if e == nil {
			continue
		}
		for _, w := range e.BareWords(true) {
			out = append(out, pipeline.BareWordUse{BareWord: w, Fix: c.Fields.Names[i] + ": " + singleQuoted(w.Text)})
		}
	}
	return out
}

// DeclaredFields implements pipeline.FieldDeclarer: map adds its fields.
func (c *MapConfig) DeclaredFields() ([]string, bool) { return c.Fields.Names, false }

// NewOperator implements pipeline.OperatorConfig.
func (c *MapConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
	m := &mapper{id: b.Component, names: c.Fields.Names, exprs: make([]*pipeline.Expr, len(c.Fields.Exprs))}
	for i, e := range c.Fields.Exprs {
		if e != nil {
			m.exprs[i] = e.Clone()
		}
	}
	m.vals = make([]any, len(m.exprs))
	return m, nil
}

type mapper struct {
	id    string
	names []string
	exprs []*pipeline.Expr
	vals  []any // scratch, one per expression
}

// Stateless implements pipeline.Stateless.
func (m *mapper) Stateless() bool { return true }

func (m *mapper) Process(_ context.Context, b *pipeline.Batch) error {
	out := b.Records[:0]
records:
	for _, r := range b.Records {
		for i, e := range m.exprs {
			m.vals[i] = nil
			if e == nil {
				continue
			}
			v, err := e.Eval(r)
			if err != nil {
				b.Reject(r, m.id, "map", err)
				continue records
			}
			m.vals[i] = v
		}
		fs := r.Fields()
		for i, name := range m.names {
			if m.vals[i] == nil {
				fs.Delete(name)
			} else {
				fs.Set(name, m.vals[i])
			}
		}
		out = append(out, r)
	}
	clear(b.Records[len(out):])
	b.Records = out
	return nil
}

// FieldListConfig is `drop_fields: [a, b]` or `keep_fields: [a, b]`. Each
// item is a top-level field name as written (`log.level` is the key with
// a dot in it), or the same name in the expression form $["log.level"].
type FieldListConfig struct {
	Fields []string
	keep   bool
}

// UnmarshalYAML takes the list as the whole value.
func (c *FieldListConfig) UnmarshalYAML(n ast.Node) error {
	if err := pipeline.DecodeNode(n, &c.Fields); err != nil {
		return err
	}
	for i, f := range c.Fields {
		name, err := pipeline.FieldNameOf(f)
		if err != nil {
			return fmt.Errorf("%q: %w", f, err)
		}
		c.Fields[i] = name
	}
	return nil
}

// Validate implements pipeline.Validator.
func (c *FieldListConfig) Validate() error {
	if len(c.Fields) == 0 {
		return fmt.Errorf("needs a list of field names")
	}
	return nil
}

// NewOperator implements pipeline.OperatorConfig.
func (c *FieldListConfig) NewOperator(pipeline.Build) (pipeline.Operator, error) {
	set := make(map[string]struct{}, len(c.Fields))
	for _, f := range c.Fields {
		set[f] = struct{}{}
	}
	return &fieldList{set: set, names: c.Fields, keep: c.keep}, nil
}

type fieldList struct {
	set   map[string]struct{}
	names []string
	keep  bool
}

// Stateless implements pipeline.Stateless.
func (f *fieldList) Stateless() bool { return true }

func (f *fieldList) Process(_ context.Context, b *pipeline.Batch) error {
	for _, r := range b.Records {
		fs := r.Fields()
		if f.keep {
			fs.Keep(f.set)
			continue
		}
		for _, n := range f.names {
			fs.Delete(n)
		}
	}
	return nil
}
