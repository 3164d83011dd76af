package operators

import (
	"errors"
	"regexp"

	"github.com/weirhq/weir/pipeline"
)

// regexParser turns the named groups of a pattern's first match into
// fields, in the order the groups appear in the pattern. Unnamed groups are
// ignored; a named group that took no part in the match is nil.
type regexParser struct {
	re    *regexp.Regexp // safe for concurrent use, shared between instances
	names []string       // SubexpNames: "" for the whole match and unnamed groups
}

var errRegexNoMatch = errors.New("line does not match pattern")

func newRegexParser(re *regexp.Regexp) *regexParser {
	return &regexParser{re: re, names: re.SubexpNames()}
}

func (p *regexParser) parse(_ *pipeline.Record, line string, out []parsedField) ([]parsedField, error) {
	line = parseTrimEOL(line)
	loc := p.re.FindStringSubmatchIndex(line)
	if loc == nil {
		return out, errRegexNoMatch
	}
	for i := 1; i < len(p.names); i++ {
		if p.names[i] == "" {
			continue
		}
		start, end := loc[2*i], loc[2*i+1]
		if start < 0 {
			out = append(out, parsedField{name: p.names[i]})
			continue
		}
		out = append(out, parsedField{name: p.names[i], val: line[start:end], text: true})
	}
	return out, nil
}
