package operators

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
	"github.com/weirhq/weir/pipeline"
)

// This file holds the small YAML readers that the window and dedupe
// configurations use to decode themselves by hand, so that every problem is
// reported at its own line and column.

// yamlPair is one key: value of a mapping. value is nil for `key:` with no
// value (or an explicit null).
type yamlPair struct {
	key   string
	kn    ast.Node
	value ast.Node
}

// configErr builds a positioned configuration error. The loader fills in the
// file name. A problem with a whole mapping is reported at its first key.
func configErr(n ast.Node, format string, args ...any) *pipeline.ConfigError {
	var pos pipeline.Pos
	switch m := pipeline.UnwrapValue(n).(type) {
	case nil:
	case *ast.MappingNode:
		if len(m.Values) > 0 {
			pos = pipeline.NodePos(m.Values[0].Key)
		} else {
			pos = pipeline.NodePos(m)
		}
	case *ast.MappingValueNode:
		pos = pipeline.NodePos(m.Key)
	default:
		pos = pipeline.NodePos(m)
	}
	return &pipeline.ConfigError{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// yamlMapping returns the pairs of a mapping node in order, refusing
// duplicate keys. what names the mapping in errors.
func yamlMapping(n ast.Node, what string) ([]yamlPair, error) {
	kvs, ok := pipeline.Mapping(n)
	if !ok {
		return nil, configErr(n, "%s: expected a mapping, got %s", what, yamlDescribe(n))
	}
	out := make([]yamlPair, 0, len(kvs))
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		if seen[kv.Key] {
			return nil, configErr(kv.KeyNode, "%s: duplicate key %q", what, kv.Key)
		}
		seen[kv.Key] = true
		out = append(out, yamlPair{key: kv.Key, kn: kv.KeyNode, value: kv.Value})
	}
	return out, nil
}

// yamlOptions is yamlMapping for a mapping of options: an option set to
// null (or to nothing) is left out, as if it were not written, so that it
// keeps its default, as in every component decoded from its struct. A null
// key that is not one of known stays, for the caller to refuse.
func yamlOptions(n ast.Node, what string, known ...string) ([]yamlPair, error) {
	pairs, err := yamlMapping(n, what)
	if err != nil {
		return nil, err
	}
	set := pairs[:0]
	for _, p := range pairs {
		if p.value == nil && slices.Contains(known, p.key) {
			continue
		}
		set = append(set, p)
	}
	return set, nil
}

func yamlDescribe(n ast.Node) string {
	switch x := pipeline.UnwrapValue(n).(type) {
	case nil:
		return "nothing"
	case *ast.SequenceNode:
		return "a list"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	default:
		return strconv.Quote(x.GetToken().Value)
	}
}

// at returns the node to blame for a problem with p's value.
func (p yamlPair) at() ast.Node {
	if p.value != nil {
		return p.value
	}
	return p.kn
}

// scalar returns the text of a scalar value.
func (p yamlPair) scalar(what string) (string, error) {
	switch v := p.value.(type) {
	case *ast.StringNode:
		return v.Value, nil
	case *ast.LiteralNode:
		return v.Value.Value, nil
	case ast.ScalarNode:
		return v.GetToken().Value, nil
	}
	return "", configErr(p.at(), "%s: expected a value, got %s", what, yamlDescribe(p.value))
}

// maxDuration bounds every duration option, so that event-time arithmetic
// (times between 1800 and 2200 plus or minus these) cannot overflow.
const maxDuration = 10 * 365 * 24 * time.Hour

// duration reads a duration such as 1m or 500ms. positive says zero is not
// allowed; the value must never be negative.
func (p yamlPair) duration(what string, positive bool) (time.Duration, error) {
	s, err := p.scalar(what)
	if err != nil {
		return 0, err
	}
	d, perr := time.ParseDuration(strings.TrimSpace(s))
	switch {
	case perr != nil:
		return 0, configErr(p.at(), "%s: want a duration such as 30s, 1m or 500ms, got %q", what, s)
	case d < 0, positive && d == 0:
		return 0, configErr(p.at(), "%s: want a positive duration, got %q", what, s)
	case d > maxDuration:
		return 0, configErr(p.at(), "%s: %s is longer than the limit of 10 years", what, s)
	}
	return d, nil
}

// integer reads a whole number in [lo, hi].
func (p yamlPair) integer(what string, lo, hi int) (int, error) {
	s, err := p.scalar(what)
	if err != nil {
		return 0, err
	}
	v, perr := strconv.Atoi(strings.TrimSpace(s))
	if perr != nil || v < lo || v > hi {
		return 0, configErr(p.at(), "%s: want a whole number from %d to %d, got %q", what, lo, hi, s)
	}
	return v, nil
}

// expr compiles the value as an expression at its position.
func (p yamlPair) expr(what string) (*pipeline.Expr, error) {
	if p.value == nil {
		return nil, configErr(p.kn, "%s: expected an expression", what)
	}
	return compileNodeExpr(p.value, what)
}

// compileNodeExpr compiles a scalar node as an expression. Positions point
// into the text itself, past an opening quote.
func compileNodeExpr(n ast.Node, what string) (*pipeline.Expr, error) {
	text, pos, ok := scalarTextPos(n)
	if !ok {
		return nil, configErr(n, "%s: expected an expression, got %s", what, yamlDescribe(n))
	}
	e, err := pipeline.CompileExpr(text, pos)
	if err != nil {
		return nil, prefixConfigErr(err, what)
	}
	return e, nil
}

// appendConfigErr appends err to errs: each of a ConfigErrors, a
// ConfigError as it is, and any other error at n. A nil err appends
// nothing.
func appendConfigErr(errs pipeline.ConfigErrors, err error, n ast.Node) pipeline.ConfigErrors {
	var ces pipeline.ConfigErrors
	var ce *pipeline.ConfigError
	switch {
	case err == nil:
		return errs
	case errors.As(err, &ces):
		return append(errs, ces...)
	case errors.As(err, &ce):
		return append(errs, ce)
	}
	return append(errs, configErr(n, "%v", err))
}

// prefixConfigErr puts what in front of a configuration error's message.
func prefixConfigErr(err error, what string) error {
	if ce, ok := err.(*pipeline.ConfigError); ok {
		return &pipeline.ConfigError{Pos: ce.Pos, Msg: what + ": " + ce.Msg}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// scalarTextPos returns a scalar's text and the position of its first
// character (past an opening quote), so that positions inside the text can
// be computed by adding a byte offset.
func scalarTextPos(n ast.Node) (string, pipeline.Pos, bool) {
	n = pipeline.UnwrapValue(n)
	var text string
	switch v := n.(type) {
	case *ast.StringNode:
		text = v.Value
	case *ast.LiteralNode:
		text = v.Value.Value
	case ast.ScalarNode:
		text = v.GetToken().Value
	default:
		return "", pipeline.Pos{}, false
	}
	pos := pipeline.NodePos(n)
	if tk := n.GetToken(); tk != nil && (tk.Type == token.SingleQuoteType || tk.Type == token.DoubleQuoteType) {
		pos = pos.Add(1)
	}
	return text, pos, true
}

// knownKeys formats a key list for "unknown key" errors.
func knownKeys(keys ...string) string { return strings.Join(keys, ", ") }
