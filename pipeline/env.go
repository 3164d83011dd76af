package pipeline

import (
	"fmt"
	"strings"
)

// Interpolate replaces ${VAR} and ${VAR:-default} in a configuration's text
// with values from lookup (os.LookupEnv). `$$` stands for a literal `$`. A
// variable that is unset and has no default is an error at its position.
//
// Interpolation works on the text before YAML parsing, as Vector and
// docker-compose do, so a variable can supply any scalar (a number, a
// boolean); it never spans lines, so line numbers in later errors stay right.
func Interpolate(file, text string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(text, "$") {
		return text, nil
	}
	var b strings.Builder
	var errs ConfigErrors
	line, col := 1, 1
	for i := 0; i < len(text); {
		c := text[i]
		if c == '$' && i+1 < len(text) && text[i+1] == '$' {
			b.WriteByte('$')
			i += 2
			col += 2
			continue
		}
		if c == '$' && i+1 < len(text) && text[i+1] == '{' {
			end := strings.IndexAny(text[i:], "}\n")
			if end < 0 || text[i+end] != '}' {
				errs = append(errs, &ConfigError{Pos: Pos{file, line, col}, Msg: "unclosed ${ (want ${VAR} or ${VAR:-default})"})
				b.WriteByte(c)
				i++
				col++
				continue
			}
			body := text[i+2 : i+end]
			name, def, hasDef := strings.Cut(body, ":-")
			if !validEnvName(name) {
				errs = append(errs, &ConfigError{Pos: Pos{file, line, col}, Msg: fmt.Sprintf("${%s}: %q is not a variable name", body, name)})
			} else if v, ok := lookup(name); ok && (v != "" || !hasDef) {
				b.WriteString(v)
			} else if hasDef {
				b.WriteString(def)
			} else {
				errs = append(errs, &ConfigError{Pos: Pos{file, line, col}, Msg: fmt.Sprintf("environment variable %s is not set (use ${%s:-default} for a default)", name, name)})
			}
			i += end + 1
			col += end + 1
			continue
		}
		b.WriteByte(c)
		i++
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	if len(errs) > 0 {
		return "", errs
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}
