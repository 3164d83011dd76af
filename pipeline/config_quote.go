package pipeline

import (
	"errors"
	"fmt"
	"strings"

	exprparser "github.com/expr-lang/expr/parser"
	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// ParseYAML parses a configuration's interpolated YAML text, as Load does.
// One mistake is common enough in pipeline files to read past: an
// expression with a ternary, unquoted,
//
//	errors: sum(status >= 500 ? 1 : 0)
//
// is not YAML (": " cannot appear in a plain scalar; PyYAML and every
// other parser refuse it too), yet what was meant is plain. When the
// parser stops on such a line and the rest of the line after the key is a
// well-formed expression containing " ? " and " : ", that value is read as if
// single-quoted, and a warning names the line and the quoted form to write
// instead. The same ternary in a flow mapping, {sev: a ? "x" : "y"},
// is read by this parser but not by others: it gets the same warning.
//
// An expression that starts with a quoted string, u: "http://x" + path,
// is not YAML either (the value ends at the closing quote); the error
// says to quote the whole expression, and how. Anything else is an
// error, as before.
func ParseYAML(file, text string) (*ast.File, []*ConfigError, error) {
	var warnings []*ConfigError
	for {
		f, err := parser.ParseBytes([]byte(text), 0)
		if err == nil {
			return f, append(warnings, flowTernaries(file, f)...), nil
		}
		if ce := quotedExpressionError(file, text, err); ce != nil {
			return nil, nil, ce
		}
		line, ok := mappingValueErrorLine(err)
		if !ok || len(warnings) >= 100 {
			return nil, nil, err
		}
		fixed, col, quoted, ok := quoteExpressionLine(text, line)
		if !ok {
			return nil, nil, err
		}
		text = fixed
		warnings = append(warnings, &ConfigError{Pos: Pos{File: file, Line: line, Column: col},
			Msg: fmt.Sprintf(`an expression containing ": " must be quoted in YAML; read as %s (write it so, and other YAML tools will read this file too)`, quoted)})
	}
}

// mappingValueErrorLine returns the line of a "mapping value is not
// allowed" error.
func mappingValueErrorLine(err error) (int, bool) {
	var ye yaml.Error
	if !errors.As(err, &ye) || ye.GetToken() == nil || !strings.Contains(ye.GetMessage(), "mapping value is not allowed") {
		return 0, false
	}
	return ye.GetToken().Position.Line, true
}

// quoteExpressionLine rewrites line n (1-based) of text, `key: a ? b : c`,
// as `key: 'a ? b : c'` when the value is an unquoted ternary expression.
// It returns the new text, the value's column and its quoted form.
func quoteExpressionLine(text string, n int) (string, int, string, bool) {
	lines := strings.SplitAfter(text, "\n")
	if n < 1 || n > len(lines) {
		return "", 0, "", false
	}
	l := lines[n-1]
	body := strings.TrimRight(l, "\r\n")
	eol := l[len(body):]
	// The key: everything up to the first ": " after the indentation (and
	// a sequence dash), itself free of quotes and flow syntax.
	indent := len(body) - len(strings.TrimLeft(body, " "))
	rest := body[indent:]
	if strings.HasPrefix(rest, "- ") {
		indent += 2 + len(rest[2:]) - len(strings.TrimLeft(rest[2:], " "))
	}
	k := strings.Index(body[indent:], ": ")
	if k <= 0 || strings.ContainsAny(body[indent:indent+k], `'"{}[]#&*!|>%@`+"`") {
		return "", 0, "", false
	}
	start := indent + k + 2
	for start < len(body) && body[start] == ' ' {
		start++
	}
	value := body[start:]
	comment := ""
	if i := strings.Index(value, " #"); i >= 0 {
		value, comment = value[:i], value[i:]
	}
	value = strings.TrimRight(value, " \t")
	if value == "" || strings.ContainsAny(value[:1], `'"{[|>&*!%@`+"`") ||
		!strings.Contains(value, " ? ") || !strings.Contains(value, " : ") {
		return "", 0, "", false
	}
	if _, err := exprparser.Parse(value); err != nil {
		return "", 0, "", false
	}
	quoted := "'" + strings.ReplaceAll(value, "'", "''") + "'"
	lines[n-1] = body[:start] + quoted + comment + eol
	return strings.Join(lines, ""), start + 1, quoted, true
}

// flowTernaries warns about each unquoted ternary in a flow mapping or
// list: a plain scalar holding ": " (which block style cannot have).
func flowTernaries(file string, f *ast.File) []*ConfigError {
	w := &ternaryWalker{file: file}
	for _, d := range f.Docs {
		if d.Body != nil {
			ast.Walk(w, d.Body)
		}
	}
	return w.warns
}

type ternaryWalker struct {
	file  string
	warns []*ConfigError
}

func (w *ternaryWalker) Visit(n ast.Node) ast.Visitor {
	s, ok := n.(*ast.StringNode)
	if !ok || s.GetToken() == nil || s.GetToken().Type != token.StringType {
		return w
	}
	v := s.Value
	if !strings.Contains(v, " ? ") || !strings.Contains(v, " : ") {
		return w
	}
	if _, err := exprparser.Parse(v); err != nil {
		return w
	}
	p := s.GetToken().Position
	quoted := "'" + strings.ReplaceAll(v, "'", "''") + "'"
	w.warns = append(w.warns, &ConfigError{Pos: Pos{File: w.file, Line: p.Line, Column: p.Column},
		Msg: fmt.Sprintf(`an expression containing ": " must be quoted in YAML; read as %s (write it so, and other YAML tools will read this file too)`, quoted)})
	return w
}

// quotedExpressionError explains a YAML error just after a closing quote
// followed by an expression operator: a value such as "http://x" + path
// is a quoted string and then text YAML cannot place. It returns nil for
// any other error.
func quotedExpressionError(file, text string, err error) *ConfigError {
	var ye yaml.Error
	if !errors.As(err, &ye) || ye.GetToken() == nil {
		return nil
	}
	p := ye.GetToken().Position
	lines := strings.Split(text, "\n")
	if p.Line < 1 || p.Line > len(lines) {
		return nil
	}
	line := []rune(strings.TrimRight(lines[p.Line-1], "\r"))
	// The closing quote: the last non-blank rune before the error.
	end := min(p.Column-1, len(line))
	for end > 0 && line[end-1] == ' ' {
		end--
	}
	if end == 0 || line[end-1] != '"' && line[end-1] != '\'' {
		return nil
	}
	after := strings.TrimLeft(string(line[end:]), " ")
	if !startsWithOperator(after) {
		return nil
	}
	q := line[end-1]
	start := end - 2
	for start >= 0 && (line[start] != q || q == '"' && start > 0 && line[start-1] == '\\') {
		start--
	}
	if start < 0 {
		return nil
	}
	// The expression runs to the end of the line (block style) or to the
	// next , or } outside quotes and brackets (flow style).
	flow := strings.Contains(string(line[:start]), "{")
	stop, depth := len(line), 0
	var inQuote rune
	for i := start; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote != 0:
			if c == inQuote && (c != '"' || line[i-1] != '\\') {
				inQuote = 0
			}
		case c == '"' || c == '\'':
			inQuote = c
		case c == '(' || c == '[':
			depth++
		case c == ')' || c == ']':
			depth--
		case c == '#' && i > 0 && line[i-1] == ' ' && !flow:
			stop = i
		case flow && depth == 0 && (c == ',' || c == '}'):
			stop = i
		}
		if stop != len(line) {
			break
		}
	}
	src := strings.TrimSpace(string(line[start:stop]))
	key := strings.TrimSpace(string(line[:start]))
	key = strings.TrimSpace(key[strings.LastIndexAny(key, "{,")+1:])
	key = strings.TrimSuffix(strings.TrimPrefix(key, "- "), ":")
	quoted := "'" + strings.ReplaceAll(src, "'", "''") + "'"
	return &ConfigError{Pos: Pos{File: file, Line: p.Line, Column: start + 1},
		Msg: fmt.Sprintf("an expression that starts with a quoted string must be quoted as a whole in YAML (the value ends at the closing quote, and what follows is not YAML): write %s: %s", key, quoted)}
}

// startsWithOperator reports whether s starts with an expr-lang binary
// operator or a member access.
func startsWithOperator(s string) bool {
	for _, op := range []string{"+", "-", "*", "/", "%", "==", "!=", "<", ">", "&&", "||", "??", "?", "|", ".", "[", "and ", "or ", "in ", "not ", "matches ", "contains ", "startsWith ", "endsWith "} {
		if strings.HasPrefix(s, op) {
			return true
		}
	}
	return false
}
