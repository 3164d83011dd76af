package operators

import (
	"context"
	"fmt"
	"slices"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("flatten", "turn nested objects into top-level fields with joined names", func() *FlattenConfig {
		return &FlattenConfig{Separator: "."}
	})
}

// FlattenConfig is the `flatten:` operator:
//
//   - flatten: {}            # every nested object, to any depth
//   - flatten:
//     separator: "."        # joins the names (default ".")
//     depth: 1              # levels to flatten (default 0: all)
//     fields: [http, user]  # only these top-level fields (default all)
//
// {"http":{"request":{"method":"GET"}},"a":1} becomes
// {"http.request.method":"GET","a":1}: each object field is replaced, in
// its place, by its members with joined names (in sorted order, as JSON
// objects have none); at depth 1, {"http.request":{"method":"GET"}}.
// Lists are values and stay as they are; so does an empty object. When a
// joined name meets a field of that name (a literal "a.b" key and a
// flattened a.b), the later in the record wins, as a JSON object's
// duplicate key does; the name keeps the first one's place.
type FlattenConfig struct {
	Separator string   `yaml:"separator"`
	Depth     int      `yaml:"depth"`
	Fields    []string `yaml:"fields"`
}

// UnmarshalYAML accepts `flatten:` with no options, or the mapping.
func (c *FlattenConfig) UnmarshalYAML(n ast.Node) error {
	if pipeline.UnwrapValue(n) == nil {
		return nil
	}
	type plain FlattenConfig
	if err := pipeline.DecodeNode(n, (*plain)(c)); err != nil {
		return err
	}
	for i, f := range c.Fields {
		name, err := pipeline.FieldNameOf(f)
		if err != nil {
			return configErr(n, "flatten: fields: %q: %v", f, err)
		}
		c.Fields[i] = name
	}
	return nil
}

// Validate implements pipeline.Validator.
func (c *FlattenConfig) Validate() error {
	switch {
	case c.Separator == "":
		return fmt.Errorf("flatten: separator: want at least one character")
	case c.Depth < 0:
		return fmt.Errorf("flatten: depth: want 0 (all levels) or more, got %d", c.Depth)
	}
	return nil
}

// NewOperator implements pipeline.OperatorConfig.
func (c *FlattenConfig) NewOperator(pipeline.Build) (pipeline.Operator, error) {
	return &flatten{sep: c.Separator, depth: c.Depth, only: c.Fields}, nil
}

type flatten struct {
	sep   string
	depth int
	only  []string
	names []string // scratch: the record's fields, flattened
	vals  []any
}

// Stateless implements pipeline.Stateless.
func (f *flatten) Stateless() bool { return true }

func (f *flatten) Process(_ context.Context, b *pipeline.Batch) error {
	for _, r := range b.Records {
		fs := r.Fields()
		nested := false
		for i := range fs.Len() {
			if f.wants(fs.Name(i)) {
				if m, ok := fs.Value(i).(map[string]any); ok && len(m) > 0 {
					nested = true
					break
				}
			}
		}
		if !nested {
			continue // the record keeps its fields, and their encoding
		}
		f.names, f.vals = f.names[:0], f.vals[:0]
		for i := range fs.Len() {
			name, v := fs.Name(i), fs.Value(i)
			if m, ok := v.(map[string]any); ok && len(m) > 0 && f.wants(name) {
				f.add(name, m, 1)
				continue
			}
			f.names, f.vals = append(f.names, name), append(f.vals, v)
		}
		out := r.SetFields()
		for i, name := range f.names {
			out.Set(name, f.vals[i])
		}
		clear(f.vals)
	}
	return nil
}

func (f *flatten) wants(name string) bool { return f.only == nil || slices.Contains(f.only, name) }

// add appends the members of m, named prefix+sep+key, flattening objects
// below level depth.
func (f *flatten) add(prefix string, m map[string]any, level int) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name, v := prefix+f.sep+k, m[k]
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 && (f.depth == 0 || level < f.depth) {
			f.add(name, sub, level+1)
			continue
		}
		f.names, f.vals = append(f.names, name), append(f.vals, v)
	}
}
