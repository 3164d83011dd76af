package operators

import (
	"context"
	"fmt"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("unnest", "one record per element of a list field (alias explode)", newUnnestConfig)
	pipeline.RegisterOperator("explode", "one record per element of a list field (alias of unnest)", newUnnestConfig)
}

func newUnnestConfig() *UnnestConfig { return &UnnestConfig{} }

// UnnestConfig is the `unnest:` operator (also spelled `explode:`, as in
// Spark):
//
//   - unnest: items          # the list field
//   - unnest:
//     field: items           # the list field
//     as: item               # the element's field name (default: field)
//     index: i               # a field for the element's position, from 0 (default none)
//     keep_empty: false      # keep a record whose list is empty or missing (default false)
//
// Each record becomes one record per element of the list, in order: a
// copy of the record with the list replaced by the element (in the list's
// place, or under `as`, where the list field is removed). A record whose
// field is an empty list, null or missing gives no record (as Spark's
// explode), or, with keep_empty, itself without the field. A field that
// is not a list goes to the dead-letter output with reason "unnest".
type UnnestConfig struct {
	Field     string `yaml:"field"`
	As        string `yaml:"as"`
	Index     string `yaml:"index"`
	KeepEmpty bool   `yaml:"keep_empty"`
}

// UnmarshalYAML takes the field name alone, or the mapping.
func (c *UnnestConfig) UnmarshalYAML(n ast.Node) error {
	if s, ok := pipeline.UnwrapValue(n).(ast.ScalarNode); ok {
		c.Field = fmt.Sprint(s.GetValue())
	} else {
		type plain UnnestConfig
		if err := pipeline.DecodeNode(n, (*plain)(c)); err != nil {
			return err
		}
	}
	for _, name := range []*string{&c.Field, &c.As, &c.Index} {
		f, err := pipeline.FieldNameOf(*name)
		if err != nil {
			return configErr(n, "unnest: %q: %v", *name, err)
		}
		*name = f
	}
	return nil
}

// Validate implements pipeline.Validator.
func (c *UnnestConfig) Validate() error {
	switch {
	case c.Field == "":
		return fmt.Errorf("unnest: needs the list field, such as `unnest: items` or `unnest: {field: items}`")
	case c.Index != "" && (c.Index == c.Field && c.As == "" || c.Index == c.As):
		return fmt.Errorf("unnest: index: %q is also the element's field", c.Index)
	}
	return nil
}

// DeclaredFields implements pipeline.FieldDeclarer.
func (c *UnnestConfig) DeclaredFields() ([]string, bool) {
	var out []string
	for _, f := range []string{c.As, c.Index} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out, false
}

// NewOperator implements pipeline.OperatorConfig.
func (c *UnnestConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
	return &unnest{cfg: *c, id: b.Component}, nil
}

type unnest struct {
	cfg UnnestConfig
	id  string
}

// Stateless implements pipeline.Stateless.
func (u *unnest) Stateless() bool { return true }

func (u *unnest) Process(_ context.Context, b *pipeline.Batch) error {
	// The output may be longer than the input: it is a new slice.
	out := make([]*pipeline.Record, 0, len(b.Records))
	for _, r := range b.Records {
		fs := r.Fields()
		v := fs.Get(u.cfg.Field)
		list, ok := v.([]any)
		if !ok && v != nil {
			b.Reject(r, u.id, "unnest", fmt.Errorf("unnest: field %q is %s, not a list", u.cfg.Field, describeValueType(v)))
			continue
		}
		if len(list) == 0 {
			if u.cfg.KeepEmpty {
				fs.Delete(u.cfg.Field)
				out = append(out, r)
			}
			continue
		}
		for i, elem := range list {
			c := r
			if i < len(list)-1 {
				c = r.Clone()
			}
			cf := c.Fields()
			if u.cfg.As == "" || u.cfg.As == u.cfg.Field {
				cf.Set(u.cfg.Field, elem)
			} else {
				cf.Delete(u.cfg.Field)
				cf.Set(u.cfg.As, elem)
			}
			if u.cfg.Index != "" {
				cf.Set(u.cfg.Index, int64(i))
			}
			out = append(out, c)
		}
	}
	b.Records = out
	return nil
}

// describeValueType names the JSON type of v for errors.
func describeValueType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64, float64, int:
		return "a number"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
