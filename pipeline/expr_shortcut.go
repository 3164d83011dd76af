package pipeline

import (
	"math"

	"github.com/expr-lang/expr/ast"
)

// An exprShortcut evaluates one of the common expression shapes directly
// in Go, without binding variables and running expr-lang's VM:
//
//   - a literal ("bench", 5, 1.5, true, nil);
//   - a field (latency_ms, $["user-agent"]);
//   - a field compared with a literal (level == "error", status >= 500,
//     500 <= status, latency_ms < 1.5), with ==, !=, <, <=, > or >=;
//   - and, or, not and ?: over shapes that give booleans and values
//     (status >= 500 ? 1 : 0).
//
// expr-lang stays the language: a shortcut exists only for a tree of these
// nodes, and it answers only for the values whose result it knows to be the
// VM's (strings, finite numbers, booleans and nulls, in the combinations
// where the VM gives a value and no error). For anything else (a type
// mismatch, a number out of range, a nested object) it reports ok false and
// Eval runs the VM, which gives the result or the error it always gave.
// TestExprShortcutMatchesVM holds every shortcut to the VM over a table of
// expressions and records.
//
// A shortcut keeps no state: clones of an Expr share it.
type exprShortcut func(fs *Fields) (v any, ok bool)

// compileShortcut returns the shortcut for the tree n, or nil when n is
// not made only of the shapes above. lets are the names let declares
// (never fields).
func compileShortcut(n ast.Node) exprShortcut {
	switch x := n.(type) {
	case *ast.StringNode:
		v := any(x.Value)
		return func(*Fields) (any, bool) { return v, true }
	case *ast.IntegerNode:
		v := any(x.Value)
		return func(*Fields) (any, bool) { return v, true }
	case *ast.FloatNode:
		if math.IsInf(x.Value, 0) || math.IsNaN(x.Value) {
			return nil
		}
		v := any(x.Value)
		return func(*Fields) (any, bool) { return v, true }
	case *ast.BoolNode:
		v := any(x.Value)
		return func(*Fields) (any, bool) { return v, true }
	case *ast.NilNode:
		return func(*Fields) (any, bool) { return nil, true }
	case *ast.ConditionalNode:
		cond := compileBoolShortcut(x.Cond)
		a, b := compileShortcut(x.Exp1), compileShortcut(x.Exp2)
		if cond == nil || a == nil || b == nil {
			return nil
		}
		return func(fs *Fields) (any, bool) {
			c, ok := cond(fs)
			if !ok {
				return nil, false
			}
			if c {
				return a(fs)
			}
			return b(fs)
		}
	}
	if name, ok := shortcutField(n); ok {
		return func(fs *Fields) (any, bool) {
			v := fs.Get(name)
			if f, isFloat := v.(float64); isFloat && (math.IsInf(f, 0) || math.IsNaN(f)) {
				return nil, false // Eval's error
			}
			return v, true
		}
	}
	if cond := compileBoolShortcut(n); cond != nil {
		return func(fs *Fields) (any, bool) {
			c, ok := cond(fs)
			if !ok {
				return nil, false
			}
			return c, true
		}
	}
	return nil
}

// A boolShortcut is an exprShortcut whose value is a boolean.
type boolShortcut func(fs *Fields) (v, ok bool)

// compileBoolShortcut returns a shortcut for a tree that gives a boolean:
// a comparison of a field with a literal, a boolean literal, and and, or
// and not over those.
func compileBoolShortcut(n ast.Node) boolShortcut {
	switch x := n.(type) {
	case *ast.BoolNode:
		v := x.Value
		return func(*Fields) (bool, bool) { return v, true }
	case *ast.UnaryNode:
		if x.Operator != "not" && x.Operator != "!" {
			return nil
		}
		inner := compileBoolShortcut(x.Node)
		if inner == nil {
			return nil
		}
		return func(fs *Fields) (bool, bool) {
			v, ok := inner(fs)
			return !v, ok
		}
	case *ast.BinaryNode:
		switch x.Operator {
		case "and", "&&", "or", "||":
			l, r := compileBoolShortcut(x.Left), compileBoolShortcut(x.Right)
			if l == nil || r == nil {
				return nil
			}
			or := x.Operator == "or" || x.Operator == "||"
			return func(fs *Fields) (bool, bool) {
				a, ok := l(fs)
				if !ok {
					return false, false
				}
				if a == or { // true or ..., false and ...: the VM skips the right side too
					return a, true
				}
				return r(fs)
			}
		case "==", "!=", "<", "<=", ">", ">=":
			return compileComparison(x)
		}
	}
	return nil
}

// compileComparison compiles field OP literal and literal OP field.
func compileComparison(x *ast.BinaryNode) boolShortcut {
	op := x.Operator
	name, ok := shortcutField(x.Left)
	lit := x.Right
	if !ok {
		if name, ok = shortcutField(x.Right); !ok {
			return nil
		}
		lit = x.Left
		op = mirroredComparison[op]
	}
	eq := op == "==" || op == "!="
	neg := op == "!="
	switch l := lit.(type) {
	case *ast.StringNode:
		c := l.Value
		return func(fs *Fields) (bool, bool) {
			v, ok := shortcutScalar(fs, name)
			switch {
			case !ok:
				return false, false
			case v.Kind == ScalarString:
				return compareStrings(op, v.Str, c), true
			case v.Kind == ScalarNull && eq:
				return neg, true // nil == "x" is false
			}
			return false, false
		}
	case *ast.IntegerNode, *ast.FloatNode:
		var c float64
		var ci int64
		isInt := false
		if in, ok := l.(*ast.IntegerNode); ok {
			ci, c, isInt = int64(in.Value), float64(in.Value), true
		} else {
			c = l.(*ast.FloatNode).Value
			if math.IsInf(c, 0) || math.IsNaN(c) {
				return nil
			}
		}
		return func(fs *Fields) (bool, bool) {
			v, ok := shortcutScalar(fs, name)
			switch {
			case !ok:
				return false, false
			case v.Kind == ScalarInt && isInt:
				return compareInts(op, v.Int, ci), true
			case v.Kind == ScalarInt, v.Kind == ScalarFloat:
				return compareFloats(op, v.Float, c), true
			case v.Kind == ScalarNull && eq:
				return neg, true // nil == 5 is false
			}
			return false, false
		}
	}
	return nil
}

// mirroredComparison turns literal OP field into field OP' literal.
var mirroredComparison = map[string]string{"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

func compareStrings(op, a, b string) bool {
	switch op {
	case "==":
		return a == b
	case "!=":
		return a != b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	}
	return a >= b
}

func compareInts(op string, a, b int64) bool {
	switch op {
	case "==":
		return a == b
	case "!=":
		return a != b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	}
	return a >= b
}

func compareFloats(op string, a, b float64) bool {
	switch op {
	case "==":
		return a == b
	case "!=":
		return a != b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	}
	return a >= b
}

// shortcutField returns the field that n reads when n is nothing but a
// field: a name, or $env["name"] (what $["name"] becomes).
func shortcutField(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.IdentifierNode:
		if x.Value != "$env" && x.Value != "$zone" {
			return x.Value, true
		}
	case *ast.MemberNode:
		if id, ok := x.Node.(*ast.IdentifierNode); ok && id.Value == "$env" && !x.Optional {
			if s, ok := x.Property.(*ast.StringNode); ok {
				return s.Value, true
			}
		}
	}
	return "", false
}

// shortcutScalar reads the named field as a Scalar for a comparison. ok is
// false when the VM must decide: a value that is not a scalar, and a number
// that is not finite (Eval refuses it with an error).
func shortcutScalar(fs *Fields, name string) (Scalar, bool) {
	i := fs.index(name)
	if i < 0 {
		return Scalar{}, true
	}
	s := fs.ScalarAt(i)
	switch s.Kind {
	case ScalarOther:
		return s, false
	case ScalarFloat:
		return s, !math.IsInf(s.Float, 0) && !math.IsNaN(s.Float)
	case ScalarNull:
		// A raw number that reads as null is out of range (1e400).
		f := &fs.f[i]
		return s, f.raw == nil || f.decoded || f.kind != rawNumber
	}
	return s, true
}

// finiteFields reports whether no field of names holds a number out of
// range, which Eval refuses for every field an expression reads, even one
// that a shortcut (an and, an or, a ?:) did not need.
func finiteFields(fs *Fields, names []string) bool {
	for _, name := range names {
		if _, ok := shortcutScalar(fs, name); !ok {
			if s := fs.Scalar(name); s.Kind != ScalarOther {
				return false
			}
		}
	}
	return true
}
