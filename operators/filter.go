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
