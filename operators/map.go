package operators

import (
	"context"
	"fmt"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("map", "set fields to expressions; null deletes a field", func() *MapConfig { return &MapConfig{} })
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
