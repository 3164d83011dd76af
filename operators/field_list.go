package operators

import (
	"context"
	"fmt"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("drop_fields", "remove the named fields", func() *FieldListConfig { return &FieldListConfig{} })
	pipeline.RegisterOperator("keep_fields", "keep only the named fields", func() *FieldListConfig { return &FieldListConfig{keep: true} })
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
