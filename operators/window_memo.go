package operators

import (
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/weirhq/weir/pipeline"
)

// exprMemo caches the results of a pure expression by the values of the
// (at most two) fields it reads, so that an aggregate argument such as
// `status >= 500 ? 1 : 0` costs a map lookup instead of a run of the
// expression VM for each record. Only expressions made of literals, field
// names, operators and conditionals are memoized: their result depends on
// nothing but those fields. The cache stops growing at memoMaxEntries and
// turns itself off when fewer than half of the first memoProbe lookups
// hit, so expressions over fields with many values pay almost nothing for
// it. It changes speed, never results. Not safe for concurrent use.
type exprMemo struct {
	vars          []string
	cache         map[string]any // by the encoded field values (appendKeyValue)
	buf           []byte
	x             value
	lookups, hits int
	off           bool
}

const (
	memoMaxEntries = 1024
	memoProbe      = 4096
)

// memoMaxVars is the most fields a memoized expression may read.
const memoMaxVars = 2

// newExprMemo returns a memo for e, or nil when e may not be memoized.
func newExprMemo(e *pipeline.Expr) *exprMemo {
	vars := e.Vars()
	if len(vars) == 0 || len(vars) > memoMaxVars {
		return nil
	}
	for _, v := range vars {
		if strings.HasPrefix(v, "$") {
			return nil
		}
	}
	tree, err := parser.Parse(e.Source)
	if err != nil || !pureNode(tree.Node) {
		return nil
	}
	return &exprMemo{vars: vars, cache: map[string]any{}}
}

// pureNode reports whether n is built only of literals (lists included),
// identifiers, operators and conditionals.
func pureNode(n ast.Node) bool {
	switch x := n.(type) {
	case *ast.IdentifierNode, *ast.IntegerNode, *ast.FloatNode, *ast.StringNode, *ast.BoolNode, *ast.NilNode:
		return true
	case *ast.UnaryNode:
		return pureNode(x.Node)
	case *ast.BinaryNode:
		return pureNode(x.Left) && pureNode(x.Right)
	case *ast.ConditionalNode:
		return pureNode(x.Cond) && pureNode(x.Exp1) && pureNode(x.Exp2)
	case *ast.ArrayNode:
		for _, n := range x.Nodes {
			if !pureNode(n) {
				return false
			}
		}
		return true
	}
	return false
}

// key encodes r's values of the expression's fields in m.buf; ok is false
// when one is not a scalar (then the expression is evaluated as usual).
func (m *exprMemo) key(fs *pipeline.Fields) bool {
	m.buf = m.buf[:0]
	for _, name := range m.vars {
		m.x.Scalar = fs.Scalar(name)
		if m.x.Kind == pipeline.ScalarOther {
			return false
		}
		m.buf = appendKeyValue(m.buf, &m.x)
		m.buf = append(m.buf, byte(m.x.Kind)) // 3 and 3.0 may evaluate differently
	}
	return true
}

// eval evaluates e for r through the memo.
func (m *exprMemo) eval(e *pipeline.Expr, r *pipeline.Record) (any, error) {
	if !m.key(r.Fields()) {
		return e.Eval(r)
	}
	m.lookups++
	if v, hit := m.cache[string(m.buf)]; hit {
		m.hits++
		return v, nil
	}
	v, err := e.Eval(r)
	if err != nil {
		return v, err
	}
	switch {
	case m.lookups >= memoProbe && m.hits < m.lookups/2:
		m.off, m.cache = true, nil
	case len(m.cache) < memoMaxEntries:
		v = retain(v)
		m.cache[string(m.buf)] = v
	}
	return v, nil
}
