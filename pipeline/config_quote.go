package pipeline

import (
	"errors"
	"fmt"
	"strings"

	exprparser "github.com/expr-lang/expr/parser"
	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
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
// instead. Anything else is an error, as before.
func ParseYAML(file, text string) (*ast.File, []*ConfigError, error) {
	var warnings []*ConfigError
	for {
		f, err := parser.ParseBytes([]byte(text), 0)
		if err == nil {
			return f, warnings, nil
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
