package operators

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// accessLogParser reads the Apache/nginx access log formats:
//
//	common:   %h %l %u %t "%r" %>s %b
//	combined: %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"
//
// into remote_addr, ident, user, time, method, path, protocol, status,
// bytes and, for combined, referer and user_agent. time is a time.Time
// (with the line's UTC offset); status and bytes are int64 (bytes `-`,
// Apache's "no body", is 0) unless infer_types is false, which keeps their
// text. A `-` in ident, user, referer or user_agent is nil. The request
// line is split on spaces: METHOD PATH PROTOCOL, METHOD PATH (HTTP/0.9) or
// a lone token kept as path (junk sent to the port); a request of `-` is
// nil in all three. Within quotes \" and \\ are unescaped; other escapes
// (\xhh) are kept as written. Text after the last field is an error.
//
// The grammar is fixed and small, so it is scanned here directly: the
// Go libraries for it either wrap a regular expression (several times
// slower) or are no longer maintained.
type accessLogParser struct {
	combined bool
	infer    bool
}

const accessLogTimeLayout = "02/Jan/2006:15:04:05 -0700"

func (p *accessLogParser) parse(_ *pipeline.Record, line string, out []parsedField) ([]parsedField, error) {
	line = parseTrimEOL(line)
	if strings.TrimSpace(line) == "" {
		return out, errParseEmptyLine
	}
	s := accessLogScanner{line: line}
	addr := s.token("remote_addr")
	ident := s.token("ident")
	user := s.token("user")
	ts := s.bracketed("time")
	var t time.Time
	if s.err == nil {
		var err error
		if t, err = time.Parse(accessLogTimeLayout, ts); err != nil {
			s.fail("time %q is not like 10/Oct/2000:13:55:36 -0700", ts)
		}
	}
	request := s.quoted("request")
	status := s.token("status")
	bytes := s.token("bytes")
	var referer, agent string
	if p.combined {
		referer = s.quoted("referer")
		agent = s.quoted("user_agent")
	}
	s.end()
	if s.err != nil {
		return out, s.err
	}
	if !accessLogDigits(status) {
		return out, fmt.Errorf("status %q is not a number", status)
	}
	if bytes != "-" && !accessLogDigits(bytes) {
		return out, fmt.Errorf("bytes %q is neither a number nor -", bytes)
	}
	var statusV, bytesV any = status, bytes
	if p.infer {
		n, err := strconv.ParseInt(status, 10, 64)
		if err != nil {
			return out, fmt.Errorf("status %q is out of range", status)
		}
		statusV = n
		if bytes == "-" {
			bytesV = int64(0)
		} else if bytesV, err = strconv.ParseInt(bytes, 10, 64); err != nil {
			return out, fmt.Errorf("bytes %q is out of range", bytes)
		}
	}
	method, path, protocol := accessLogRequest(request)
	out = append(out,
		parsedField{name: "remote_addr", val: addr},
		parsedField{name: "ident", val: accessLogDash(ident)},
		parsedField{name: "user", val: accessLogDash(user)},
		parsedField{name: "time", val: t},
		parsedField{name: "method", val: method},
		parsedField{name: "path", val: path},
		parsedField{name: "protocol", val: protocol},
		parsedField{name: "status", val: statusV},
		parsedField{name: "bytes", val: bytesV},
	)
	if p.combined {
		out = append(out, parsedField{name: "referer", val: accessLogDash(referer)}, parsedField{name: "user_agent", val: accessLogDash(agent)})
	}
	return out, nil
}

// accessLogRequest splits `GET /path HTTP/1.1`.
func accessLogRequest(r string) (method, path, protocol any) {
	if r == "-" || r == "" {
		return nil, nil, nil
	}
	first := strings.IndexByte(r, ' ')
	if first < 0 {
		return nil, r, nil
	}
	method = r[:first]
	rest := r[first+1:]
	last := strings.LastIndexByte(rest, ' ')
	if last < 0 {
		return method, rest, nil
	}
	return method, rest[:last], rest[last+1:]
}

func accessLogDash(s string) any {
	if s == "-" {
		return nil
	}
	return s
}

func accessLogDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// accessLogScanner walks a line field by field; after the first error
// every call is a no-op and err says what and where.
type accessLogScanner struct {
	line string
	pos  int
	err  error
}

func (s *accessLogScanner) fail(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf(format, args...)
	}
}

// next skips the spaces before a field and reports whether one follows.
func (s *accessLogScanner) next(name string) bool {
	if s.err != nil {
		return false
	}
	start := s.pos
	for s.pos < len(s.line) && s.line[s.pos] == ' ' {
		s.pos++
	}
	if s.pos == len(s.line) {
		s.fail("missing %s at offset %d", name, s.pos)
		return false
	}
	if start > 0 && s.pos == start {
		s.fail("want a space before %s at offset %d", name, s.pos)
		return false
	}
	return true
}

func (s *accessLogScanner) token(name string) string {
	if !s.next(name) {
		return ""
	}
	start := s.pos
	for s.pos < len(s.line) && s.line[s.pos] != ' ' {
		s.pos++
	}
	return s.line[start:s.pos]
}

func (s *accessLogScanner) bracketed(name string) string {
	if !s.next(name) {
		return ""
	}
	if s.line[s.pos] != '[' {
		s.fail("want [ to open %s at offset %d", name, s.pos)
		return ""
	}
	end := strings.IndexByte(s.line[s.pos:], ']')
	if end < 0 {
		s.fail("unclosed [ of %s at offset %d", name, s.pos)
		return ""
	}
	v := s.line[s.pos+1 : s.pos+end]
	s.pos += end + 1
	return v
}

func (s *accessLogScanner) quoted(name string) string {
	if !s.next(name) {
		return ""
	}
	if s.line[s.pos] != '"' {
		s.fail("want \" to open %s at offset %d", name, s.pos)
		return ""
	}
	open := s.pos
	escaped := false
	for i := open + 1; i < len(s.line); i++ {
		switch s.line[i] {
		case '\\':
			escaped = true
			i++ // the escaped byte cannot close the string
		case '"':
			s.pos = i + 1
			v := s.line[open+1 : i]
			if escaped {
				v = unescapeAccessLog(v)
			}
			return v
		}
	}
	s.fail("unclosed \" of %s at offset %d", name, open)
	return ""
}

// end checks that nothing but spaces follows the last field.
func (s *accessLogScanner) end() {
	if s.err != nil {
		return
	}
	i := s.pos
	for i < len(s.line) && s.line[i] == ' ' {
		i++
	}
	if i < len(s.line) {
		s.fail("unexpected text after the last field at offset %d", i)
	}
}

// unescapeAccessLog undoes Apache's \" and \\; other escapes stay.
func unescapeAccessLog(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) && (v[i+1] == '"' || v[i+1] == '\\') {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}
