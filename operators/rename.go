package operators

import (
	"context"
	"fmt"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("rename", "give fields new names, in place", func() *RenameConfig { return &RenameConfig{} })
}

// RenameConfig is `rename: {old: new, ...}`: each field old, when the
// record has it, gets the name new, keeping its place and its value; a
// field already named new is replaced. The renames apply in the order
// written, so `{a: b, b: c}` moves a to c. Names are taken as written
// (`log.level` is the key with a dot), or as $["any name"].
type RenameConfig struct {
	Old, New []string
}

// UnmarshalYAML reads the mapping, in order.
func (c *RenameConfig) UnmarshalYAML(n ast.Node) error {
	pairs, err := yamlMapping(n, "rename")
	if err != nil {
		return err
	}
	var errs pipeline.ConfigErrors
	seen := map[string]bool{}
	for _, p := range pairs {
		to, err := p.scalar("rename: " + p.key)
		if err != nil {
			errs = appendConfigErr(errs, err, p.at())
			continue
		}
		from, err1 := pipeline.FieldNameOf(p.key)
		to, err2 := pipeline.FieldNameOf(to)
		switch {
		case err1 != nil:
			errs = append(errs, configErr(p.kn, "rename: %q: %v", p.key, err1))
		case err2 != nil:
			errs = append(errs, configErr(p.at(), "rename: %q: %v", p.key, err2))
		case to == "":
			errs = append(errs, configErr(p.at(), "rename: %q: the new name is empty", p.key))
		case seen[from]:
			errs = append(errs, configErr(p.kn, "rename: %q is renamed twice", from))
		default:
			seen[from] = true
			c.Old, c.New = append(c.Old, from), append(c.New, to)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Validate implements pipeline.Validator.
func (c *RenameConfig) Validate() error {
	if len(c.Old) == 0 {
		return fmt.Errorf("rename: needs at least one `old: new`")
	}
	return nil
}

// DeclaredFields implements pipeline.FieldDeclarer.
func (c *RenameConfig) DeclaredFields() ([]string, bool) { return c.New, false }

// NewOperator implements pipeline.OperatorConfig.
func (c *RenameConfig) NewOperator(pipeline.Build) (pipeline.Operator, error) {
	return &rename{old: c.Old, new: c.New}, nil
}

type rename struct{ old, new []string }

// Stateless implements pipeline.Stateless.
func (o *rename) Stateless() bool { return true }

func (o *rename) Process(_ context.Context, b *pipeline.Batch) error {
	for _, r := range b.Records {
		fs := r.Fields()
		for i, old := range o.old {
			fs.Rename(old, o.new[i])
		}
	}
	return nil
}
