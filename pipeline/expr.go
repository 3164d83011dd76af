package pipeline

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	vmruntime "github.com/expr-lang/expr/vm/runtime"
	yamlast "github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// Expr is an expr-lang expression over a record's fields, compiled once at
// load. Field names are variables; a missing field reads as nil, never a
// runtime error.
//
// An Expr is not safe for concurrent use (it reuses its VM and variable
// map between calls); Clone gives an independent evaluator of the same
// compiled program.
type Expr struct {
	Source string
	Pos    Pos

	program *vm.Program
	vars    []string // fields the program reads, bound from the record per call
	// allFields: the program reads $env as a whole, so every field is bound.
	allFields bool
	// zoned: the program calls date, hour or format_time without a zone,
	// which then reads the hidden variable $zone, bound to zone per call
	// (SetZone; "UTC" by default).
	zoned bool
	zone  string
	env   map[string]any
	vm    vm.VM
	// shortcut evaluates the expression in Go when it has one of the
	// common shapes (see exprShortcut); nil otherwise.
	shortcut exprShortcut
}

// CompileExpr compiles src; pos locates it in the configuration for errors.
func CompileExpr(src string, pos Pos) (*Expr, error) {
	e := &Expr{Source: src, Pos: pos}
	if err := e.compile(); err != nil {
		return nil, err
	}
	return e, nil
}

// MustCompileExpr is CompileExpr for tests and constants; it panics on error.
func MustCompileExpr(src string) *Expr {
	e, err := CompileExpr(src, Pos{})
	if err != nil {
		panic(err)
	}
	return e
}

func (e *Expr) compile() error {
	if strings.TrimSpace(e.Source) == "" {
		return &ConfigError{Pos: e.Pos, Msg: "empty expression"}
	}
	names := &nameCollector{}
	fields := &fieldAccess{names: names}
	opts := append([]expr.Option{expr.Env(map[string]any{}), expr.AllowUndefinedVariables(), expr.Patch(names), expr.Patch(fields)}, exprFunctions...)
	opts = append(opts, checkedArithmetic...)
	p, err := expr.Compile(e.Source, opts...)
	if fields.err != nil {
		return &ConfigError{Pos: e.posAt(fields.errAt), Msg: fmt.Sprintf("expression %q: %s", e.Source, fields.err)}
	}
	if err != nil {
		pos := e.Pos
		msg := err.Error()
		var fe *file.Error
		if errors.As(err, &fe) {
			msg = fe.Message
			if fe.Line <= 1 && pos.Line > 0 {
				pos.Column += fe.Column
			}
		}
		return &ConfigError{Pos: pos, Msg: fmt.Sprintf("expression %q: %s", e.Source, msg)}
	}
	e.program = p
	e.vars, e.allFields = identifiers(p.Node())
	e.zoned = fields.zoned
	if e.zone == "" {
		e.zone = "UTC"
	}
	e.env = make(map[string]any, len(e.vars))
	e.shortcut = nil
	if !e.allFields && !e.zoned {
		e.shortcut = compileShortcut(p.Node())
	}
	return nil
}

// BareWord is a name in an expression that reads a field but may have
// been meant as text: in `level == error`, error is the field error, not
// the text "error".
type BareWord struct {
	Name string
	Pos  Pos    // the name's position in the configuration
	Text string // the expression with the name written as text
}

// BareWords returns the names that read a field where a text constant is
// as likely: the right-hand side of == or != and the items of an `in`
// list, when the other side is a name too; and, when whole is set, the
// whole expression if it is a single name (a map value). The explicit
// forms $["name"] and $.name are never reported.
func (e *Expr) BareWords(whole bool) []BareWord {
	var ids []*ast.IdentifierNode
	root := e.program.Node()
	names := &nameCollector{}
	ast.Walk(&root, names)
	isName := func(n ast.Node) (*ast.IdentifierNode, bool) {
		id, ok := n.(*ast.IdentifierNode)
		return id, ok && id.Value != "$env" && !names.lets[id.Value]
	}
	if id, ok := isName(root); ok && whole {
		ids = append(ids, id)
	}
	ast.Find(root, func(n ast.Node) bool {
		b, ok := n.(*ast.BinaryNode)
		if !ok {
			return false
		}
		if _, ok := isName(b.Left); !ok {
			return false
		}
		switch b.Operator {
		case "==", "!=":
			if id, ok := isName(b.Right); ok {
				ids = append(ids, id)
			}
		case "in", "not in":
			if arr, ok := b.Right.(*ast.ArrayNode); ok {
				for _, item := range arr.Nodes {
					if id, ok := isName(item); ok {
						ids = append(ids, id)
					}
				}
			}
		}
		return false
	})
	out := make([]BareWord, 0, len(ids))
	src := []rune(e.Source)
	for _, id := range ids {
		loc := id.Location()
		text := e.Source
		if loc.From >= 0 && loc.From+len([]rune(id.Value)) <= len(src) {
			text = string(src[:loc.From]) + strconv.Quote(id.Value) + string(src[loc.From+len([]rune(id.Value)):])
		}
		out = append(out, BareWord{Name: id.Value, Pos: e.posAt(loc.From), Text: text})
	}
	return out
}

// FieldNameOf reads a field name written in a list of names (drop_fields,
// rename): the text itself, or, when it starts with "$", the name that
// the expression $["name"] reads.
func FieldNameOf(text string) (string, error) {
	if !strings.HasPrefix(strings.TrimSpace(text), "$") {
		return text, nil
	}
	e, err := CompileExpr(text, Pos{})
	if err != nil {
		return "", err
	}
	name, ok := e.FieldName()
	if !ok {
		return "", errors.New(`want a field name, or $["any name"]`)
	}
	return name, nil
}

// posAt returns the configuration position of the rune at offset from in
// the source (on its first line; a later line gives the expression's
// position).
func (e *Expr) posAt(from int) Pos {
	pos := e.Pos
	if pos.Line == 0 {
		return pos
	}
	col := 0
	for _, r := range e.Source {
		if col == from {
			break
		}
		if r == '\n' {
			return pos
		}
		col++
	}
	pos.Column += col
	return pos
}

// Arithmetic is checked: + - * on whole numbers that overflow int64, and
// / or % by zero, are errors (the record goes to the dead-letter output
// with the reason) instead of wrapping around, or giving +Inf (written as
// null). fieldAccess replaces each such operator by a call of its checked
// form, which computes as expr-lang does (strings, times, durations) once
// the check has passed. A result that is not a finite number, or a field
// whose number is out of range (1e400), is an error too (see Eval).

// checkedOperators maps an operator to the name of its checked function.
// The names start with "$", so no expression can call them by name.
var checkedOperators = map[string]string{"+": "$add", "-": "$sub", "*": "$mul", "/": "$div", "%": "$mod"}

// checkedArithmetic are the checked operator functions.
var checkedArithmetic = []expr.Option{
	expr.Function("$add", func(p ...any) (any, error) {
		if a, b, ok := twoInts(p); ok && (b > 0 && a > math.MaxInt64-b || b < 0 && a < math.MinInt64-b) {
			return nil, fmt.Errorf("integer overflow: %d + %d", a, b)
		}
		return vmruntime.Add(p[0], p[1]), nil
	}),
	expr.Function("$sub", func(p ...any) (any, error) {
		if a, b, ok := twoInts(p); ok && (b < 0 && a > math.MaxInt64+b || b > 0 && a < math.MinInt64+b) {
			return nil, fmt.Errorf("integer overflow: %d - %d", a, b)
		}
		return vmruntime.Subtract(p[0], p[1]), nil
	}),
	expr.Function("$mul", func(p ...any) (any, error) {
		if a, b, ok := twoInts(p); ok && a != 0 && b != 0 {
			r := a * b
			if r/b != a || a == -1 && b == math.MinInt64 || b == -1 && a == math.MinInt64 {
				return nil, fmt.Errorf("integer overflow: %d * %d", a, b)
			}
		}
		return vmruntime.Multiply(p[0], p[1]), nil
	}),
	expr.Function("$div", func(p ...any) (any, error) {
		if isZero(p[1]) {
			return nil, fmt.Errorf("division by zero: %v / %v", p[0], p[1])
		}
		return vmruntime.Divide(p[0], p[1]), nil
	}),
	expr.Function("$mod", func(p ...any) (any, error) {
		if isZero(p[1]) {
			return nil, fmt.Errorf("division by zero: %v %% %v", p[0], p[1])
		}
		return vmruntime.Modulo(p[0], p[1]), nil
	}),
}

// typeKnown reports whether the checker gave n a concrete type.
func typeKnown(n ast.Node) bool {
	t := n.Type()
	return t != nil && t.Kind() != reflect.Interface
}

// twoInts returns p[0] and p[1] as int64 when both are whole numbers.
func twoInts(p []any) (a, b int64, ok bool) {
	a, ok1 := wholeNumber(p[0])
	b, ok2 := wholeNumber(p[1])
	return a, b, ok1 && ok2
}

func wholeNumber(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	}
	return 0, false
}

func isZero(v any) bool {
	if n, ok := wholeNumber(v); ok {
		return n == 0
	}
	switch x := v.(type) {
	case float64:
		return x == 0
	case float32:
		return x == 0
	}
	return false
}

// A field is reached by its name as a variable (status, log.level for a
// nested object), or by any name through the record itself: $env is the
// record (expr-lang's name for the environment) and $ is short for it, so
// $["@timestamp"], $["user-agent"] and $["http.status"] (a key with a dot
// in it, not a nested object) read those fields. Where a name is used as
// a value, a field wins over a function of the same name: with a field
// max, `max + 1` adds to the field and `max(a, b)` still calls max.
//
// Two patch passes do this over expr-lang's tree, before it is checked:
// nameCollector finds what a name is (a call's callee, a let variable),
// then fieldAccess rewrites $ to $env, and a function's name used as a
// value to $env["name"]; a call of a function that does not exist is an
// error, with the nearest known name.

// nameCollector records the identifiers that are called and the names
// that let declares.
type nameCollector struct {
	callees map[*ast.IdentifierNode]bool
	lets    map[string]bool
}

func (c *nameCollector) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			if c.callees == nil {
				c.callees = map[*ast.IdentifierNode]bool{}
			}
			c.callees[id] = true
		}
	case *ast.VariableDeclaratorNode:
		if c.lets == nil {
			c.lets = map[string]bool{}
		}
		c.lets[n.Name] = true
	}
}

// fieldAccess is the rewriting pass; see above. It also gives a call of
// date, hour or format_time without a time zone the hidden argument $zone
// (see SetZone).
type fieldAccess struct {
	names *nameCollector
	err   error
	errAt int  // rune offset of err in the source
	zoned bool // a $zone argument was added
}

// zoneArgs is, for the functions that take a time zone last, how many
// arguments they have without it.
var zoneArgs = map[string]int{"date": 1, "hour": 1, "format_time": 2}

func (f *fieldAccess) Visit(node *ast.Node) {
	if c, ok := (*node).(*ast.CallNode); ok {
		if id, ok := c.Callee.(*ast.IdentifierNode); ok && !f.names.lets[id.Value] {
			if n, ok := zoneArgs[id.Value]; ok && len(c.Arguments) == n {
				// A new node: the checker's notes on the old one are for n arguments.
				args := append(slices.Clip(c.Arguments), &ast.IdentifierNode{Value: "$zone"})
				ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: id.Value}, Arguments: args})
				f.zoned = true
			}
		}
		return
	}
	if b, ok := (*node).(*ast.BinaryNode); ok {
		// Operands whose types the checker knows (literals, typed function
		// results) keep expr-lang's operator, and its errors at load.
		if fn, ok := checkedOperators[b.Operator]; ok && !(typeKnown(b.Left) && typeKnown(b.Right)) {
			ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: fn}, Arguments: []ast.Node{b.Left, b.Right}})
		}
		return
	}
	id, ok := (*node).(*ast.IdentifierNode)
	if !ok || f.names.lets[id.Value] {
		return
	}
	switch {
	case id.Value == "$":
		id.Value = "$env"
	case f.names.callees[id]:
		if !isExprFunction(id.Value) && f.err == nil {
			f.err, f.errAt = unknownFunction(id.Value), id.Location().From
		}
	case id.Value != "$env" && isExprFunction(id.Value):
		ast.Patch(node, &ast.MemberNode{Node: &ast.IdentifierNode{Value: "$env"}, Property: &ast.StringNode{Value: id.Value}})
	}
}

// isExprFunction reports whether name is a function an expression can
// call: one of expr-lang's builtins or one of weir's (exprFunctions).
func isExprFunction(name string) bool {
	if _, ok := builtin.Index[name]; ok {
		return true
	}
	return slices.Contains(exprFunctionNames, name)
}

// unknownFunction is the error for a call of name, with the nearest known
// function name when one is close.
func unknownFunction(name string) error {
	best, bestD := "", 3
	for _, known := range slices.Concat(exprFunctionNames, builtin.Names) {
		if d := editDistance(strings.ToLower(name), strings.ToLower(known)); d < bestD || d == bestD && best != "" && known < best {
			best, bestD = known, d
		}
	}
	if best != "" && bestD <= max(1, len(name)/3) {
		return fmt.Errorf("unknown function %s (did you mean %s?)", name, best)
	}
	return fmt.Errorf("unknown function %s (the functions are expr-lang's builtins and weir's %s; a field is read without parentheses)", name, strings.Join(exprFunctionNames, ", "))
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// identifiers lists the fields an expression reads: variables that are
// not called and not let-declared, and constant keys of $env. all is true
// when the expression uses $env otherwise ($env[name], $env itself): then
// every field is bound.
func identifiers(n ast.Node) (names []string, all bool) {
	c := &nameCollector{}
	ast.Walk(&n, c)
	r := &fieldReads{names: c, seen: map[string]bool{}, envBases: map[*ast.IdentifierNode]bool{}}
	ast.Walk(&n, r)
	for _, used := range r.envBases {
		if !used {
			all = true
		}
	}
	return r.out, all
}

type fieldReads struct {
	names    *nameCollector
	seen     map[string]bool
	out      []string
	envBases map[*ast.IdentifierNode]bool // $env nodes; true: read with a constant key
}

func (r *fieldReads) add(name string) {
	if !r.seen[name] {
		r.seen[name] = true
		r.out = append(r.out, name)
	}
}

func (r *fieldReads) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		switch {
		case n.Value == "$env":
			if _, ok := r.envBases[n]; !ok {
				r.envBases[n] = false
			}
		case n.Value == "$zone": // bound by Eval, not from the record
		case !r.names.callees[n] && !r.names.lets[n.Value]:
			r.add(n.Value)
		}
	case *ast.MemberNode:
		if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "$env" {
			if s, ok := n.Property.(*ast.StringNode); ok {
				r.envBases[id] = true
				r.add(s.Value)
			}
		}
	}
}

// SetZone sets the IANA time zone that date, hour and format_time use
// when called without one (the pipeline's `timezone:`); the default is
// UTC. It returns an error for an unknown zone.
func (e *Expr) SetZone(name string) error {
	if _, err := loadZone(name); err != nil {
		return err
	}
	e.zone = name
	return nil
}

// FieldName returns the name of the field the expression reads when it is
// nothing but a field: a name (service), or $["any name"]. group_by and
// the field lists name their output after it.
func (e *Expr) FieldName() (string, bool) {
	switch n := e.program.Node().(type) {
	case *ast.IdentifierNode:
		if n.Value != "$env" {
			return n.Value, true
		}
	case *ast.MemberNode:
		if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "$env" {
			if s, ok := n.Property.(*ast.StringNode); ok {
				return s.Value, true
			}
		}
	}
	return "", false
}

// Vars returns the field names the expression reads.
func (e *Expr) Vars() []string { return e.vars }

// Clone returns an independent evaluator of the same program.
func (e *Expr) Clone() *Expr {
	return &Expr{Source: e.Source, Pos: e.Pos, program: e.program, vars: e.vars, allFields: e.allFields, zoned: e.zoned, zone: e.zone, env: make(map[string]any, len(e.vars)), shortcut: e.shortcut}
}

// Eval evaluates the expression against r's fields.
func (e *Expr) Eval(r *Record) (any, error) {
	fs := r.Fields()
	if e.shortcut != nil {
		if v, ok := e.shortcut(fs); ok && (len(e.vars) == 1 || finiteFields(fs, e.vars)) {
			return v, nil
		}
	}
	if e.allFields {
		clear(e.env)
		for i := range fs.Len() {
			e.env[fs.Name(i)] = fs.Value(i)
		}
	}
	if e.zoned {
		e.env["$zone"] = e.zone
	}
	for _, name := range e.vars {
		v := fs.Get(name)
		if f, ok := v.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
			return nil, fmt.Errorf("expression %q: field %q holds a number out of range (%v)", e.Source, name, f)
		}
		e.env[name] = v
	}
	out, err := e.vm.Run(e.program, e.env)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", e.Source, err)
	}
	if f, ok := out.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
		return nil, fmt.Errorf("expression %q: the result, %v, is not a finite number", e.Source, f)
	}
	return out, nil
}

// EvalBool evaluates the expression as a condition: true only for boolean
// true; nil (a missing field) is false. A non-boolean result is an error.
func (e *Expr) EvalBool(r *Record) (bool, error) {
	v, err := e.Eval(r)
	if err != nil {
		return false, err
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case nil:
		return false, nil
	}
	return false, fmt.Errorf("expression %q: got %T, want a boolean", e.Source, v)
}

// UnmarshalYAML reads the expression from a YAML scalar, keeping its
// position (past an opening quote), and compiles it.
func (e *Expr) UnmarshalYAML(n yamlast.Node) error {
	src, pos, err := scalarString(n)
	if err != nil {
		return err
	}
	e.Source, e.Pos = src, pos.Add(quoteWidth(n))
	return e.compile()
}

// quoteWidth is 1 for a quoted scalar (its text starts a column after the
// token) and 0 otherwise.
func quoteWidth(n yamlast.Node) int {
	n = Unwrap(n)
	if n == nil || n.GetToken() == nil {
		return 0
	}
	switch n.GetToken().Type {
	case token.SingleQuoteType, token.DoubleQuoteType:
		return 1
	}
	return 0
}

// Template is a string with {{ expression }} parts, rendered per record
// (paths, topics, routing keys). Text outside the braces is literal.
// Render renders it as text; RenderPath as a file path, each value escaped
// so that it stays one path segment (path.go).
// Like Expr, a Template is not safe for concurrent use; Clone it.
type Template struct {
	Source  string
	Pos     Pos
	parts   []templatePart
	scratch []byte // RenderPath's copy of a value being escaped
}

type templatePart struct {
	lit  string
	expr *Expr
}

// CompileTemplate compiles src.
func CompileTemplate(src string, pos Pos) (*Template, error) { return compileTemplate(src, pos, 0) }

// compileTemplate compiles src, whose text starts inner columns after pos
// (past a quote).
func compileTemplate(src string, pos Pos, inner int) (*Template, error) {
	t := &Template{Source: src, Pos: pos}
	rest := src
	offset := inner
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, templatePart{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, &ConfigError{Pos: pos.Add(offset + i), Msg: fmt.Sprintf("template %q: unclosed {{", src)}
		}
		e, err := CompileExpr(rest[i+2:i+j], pos.Add(offset+i+2))
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, templatePart{expr: e})
		offset += i + j + 2
		rest = rest[i+j+2:]
	}
}

// IsConstant reports whether the template has no expressions.
func (t *Template) IsConstant() bool {
	for _, p := range t.parts {
		if p.expr != nil {
			return false
		}
	}
	return true
}

// Clone returns an independent copy.
func (t *Template) Clone() *Template {
	c := &Template{Source: t.Source, Pos: t.Pos, parts: make([]templatePart, len(t.parts))}
	for i, p := range t.parts {
		c.parts[i] = p
		if p.expr != nil {
			c.parts[i].expr = p.expr.Clone()
		}
	}
	return c
}

// Render appends the template rendered for r to dst.
func (t *Template) Render(dst []byte, r *Record) ([]byte, error) {
	for _, p := range t.parts {
		if p.expr == nil {
			dst = append(dst, p.lit...)
			continue
		}
		v, err := p.expr.Eval(r)
		if err != nil {
			return dst, err
		}
		dst = AppendText(dst, v)
	}
	return dst, nil
}

// String renders the template for r as a string.
func (t *Template) String(r *Record) (string, error) {
	b, err := t.Render(nil, r)
	return string(b), err
}

// UnmarshalYAML reads the template from a YAML scalar and compiles it.
func (t *Template) UnmarshalYAML(n yamlast.Node) error {
	src, pos, err := scalarString(n)
	if err != nil {
		return err
	}
	c, err := compileTemplate(src, pos, quoteWidth(n))
	if err != nil {
		return err
	}
	*t = *c
	return nil
}

// AppendText appends v as plain text (strings unquoted, times in
// TimeLayout, nil as empty).
func AppendText(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return dst
	case string:
		return append(dst, x...)
	case time.Time:
		return x.UTC().AppendFormat(dst, TimeLayout)
	case []any, map[string]any:
		return AppendJSONValue(dst, x)
	}
	b := AppendJSONValue(nil, v)
	if len(b) > 1 && b[0] == '"' {
		if s, err := strconv.Unquote(string(b)); err == nil {
			return append(dst, s...)
		}
	}
	return append(dst, b...)
}

// ToTime converts an event-time value: a time.Time, an RFC 3339 string, or a
// number of unix seconds (below 1e11) or milliseconds.
func ToTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			return time.Time{}, fmt.Errorf("not an RFC 3339 time: %q", x)
		}
		return t, nil
	case int64:
		return unixNumber(float64(x)), nil
	case int:
		return unixNumber(float64(x)), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return time.Time{}, fmt.Errorf("not a time: %v", x)
		}
		return unixNumber(x), nil
	case nil:
		return time.Time{}, errors.New("no time: value is null")
	}
	return time.Time{}, fmt.Errorf("not a time: %T", v)
}

func unixNumber(f float64) time.Time {
	if math.Abs(f) < 1e11 { // seconds: 1e11 s is year 5138
		return time.UnixMilli(int64(math.Round(f * 1000))).UTC()
	}
	return time.UnixMilli(int64(f)).UTC()
}

// exprFunctionNames are the names of exprFunctions, in its order.
var exprFunctionNames = []string{"to_time", "date", "hour", "format_time", "unix_ms", "to_string", "to_number"}

// inZone converts t to the IANA time zone named by the optional argument
// at p[i] (UTC when there is none).
func inZone(t time.Time, p []any, i int) (time.Time, error) {
	if len(p) <= i {
		return t.UTC(), nil
	}
	name, _ := p[i].(string)
	loc, err := loadZone(name)
	if err != nil {
		return t, err
	}
	return t.In(loc), nil
}

// zones caches time zones by name: time.LoadLocation reads the zone
// database each call.
var zones sync.Map // string -> *time.Location

func loadZone(name string) (*time.Location, error) {
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil || name == "" || name == "Local" {
		return nil, fmt.Errorf("unknown time zone %q (want an IANA name such as Europe/Paris, or UTC)", name)
	}
	zones.Store(name, l)
	return l, nil
}

// exprFunctions are the functions weir adds to expr-lang's builtins. date,
// hour and format_time take an optional IANA time zone name last (UTC
// when absent); hour returns a number.
var exprFunctions = []expr.Option{
	expr.Function("to_time", func(p ...any) (any, error) { return ToTime(p[0]) }, new(func(any) time.Time)),
	expr.Function("date", func(p ...any) (any, error) {
		t, err := ToTime(p[0])
		if err != nil {
			return nil, err
		}
		if t, err = inZone(t, p, 1); err != nil {
			return nil, err
		}
		return t.Format("2006-01-02"), nil
	}, new(func(any) string), new(func(any, string) string)),
	expr.Function("hour", func(p ...any) (any, error) {
		t, err := ToTime(p[0])
		if err != nil {
			return nil, err
		}
		if t, err = inZone(t, p, 1); err != nil {
			return nil, err
		}
		return t.Hour(), nil
	}, new(func(any) int), new(func(any, string) int)),
	expr.Function("format_time", func(p ...any) (any, error) {
		t, err := ToTime(p[0])
		if err != nil {
			return nil, err
		}
		if t, err = inZone(t, p, 2); err != nil {
			return nil, err
		}
		layout, _ := p[1].(string)
		return t.Format(layout), nil
	}, new(func(any, string) string), new(func(any, string, string) string)),
	expr.Function("unix_ms", func(p ...any) (any, error) {
		t, err := ToTime(p[0])
		return t.UnixMilli(), err
	}, new(func(any) int64)),
	expr.Function("to_string", func(p ...any) (any, error) { return string(AppendText(nil, p[0])), nil }, new(func(any) string)),
	expr.Function("to_number", func(p ...any) (any, error) {
		switch x := p[0].(type) {
		case int64, float64, int:
			return x, nil
		case string:
			return parseNumber([]byte(strings.TrimSpace(x))), nil
		}
		return nil, nil
	}, new(func(any) any)),
}
