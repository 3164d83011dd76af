package operators

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("parse",
		"parse each record's raw line (or a field) as json, logfmt, regex, csv, syslog, combined or common into fields",
		NewParseConfig)
}

// The formats `parse` understands.
const (
	FormatJSON     = "json"
	FormatLogfmt   = "logfmt"
	FormatRegex    = "regex"
	FormatCSV      = "csv"
	FormatSyslog   = "syslog"
	FormatCombined = "combined"
	FormatCommon   = "common"
)

var parseFormats = []string{FormatJSON, FormatLogfmt, FormatRegex, FormatCSV, FormatSyslog, FormatCombined, FormatCommon}

// ParseConfig is the `parse` operator's configuration:
//
//	operators:
//	  - parse: { format: json }
//	  - parse: { format: logfmt, field: msg, types: { ts: time } }
//	  - parse: { format: regex, pattern: '^(?P<level>\w+): (?P<msg>.*)$' }
//	  - parse: { format: csv, columns: [ts, host, bytes], delimiter: ";" }
//	  - parse: { format: csv, header: true }
//	  - parse: { format: syslog, rfc: 3164, timezone: Europe/Paris }
//	  - parse: { format: combined }
//
// A record that parses gets the parsed fields, in the order the input gives
// them; one that does not goes to the dead-letter output with reason "parse"
// and an error saying what was wrong and where, and is removed from the
// batch. Field values are of the types pipeline.Fields documents.
//
// The YAML options (defaults in parentheses):
//
//	format       json | logfmt | regex | csv | syslog | combined | common (required)
//	field        parse the string in this field instead of the raw record
//	             bytes; the parsed fields are then merged into the record
//	             (a parsed field replaces a field of the same name), and a
//	             record whose field is missing or not a string is dead-lettered
//	             (default: parse the raw Value and replace the record's fields)
//	pattern      regex: an RE2 pattern with named groups (?P<name>...); each
//	             named group becomes a field, nil when the group did not take
//	             part in the match; unanchored unless the pattern says ^ / $
//	columns      csv: the column names, in order
//	header       csv: the first record of each input is the header (the
//	             column names) and is consumed, not emitted; an input is a
//	             source index plus the record's origin name, so every file of
//	             a glob has its own header; a record the source numbers line 1
//	             is always a header (a rotated file starts over). With columns
//	             also set, the header line is skipped and columns name the
//	             fields. Headers read are kept in checkpoints. (false)
//	delimiter    csv: the field delimiter, one character (",")
//	rfc          syslog: 5424, 3164 or auto, which detects each line's RFC (auto)
//	timezone     syslog: the IANA zone of RFC 3164 timestamps, which carry
//	             none; their year, also absent, is the latest that does not
//	             put the timestamp over a week after the record's Time (or
//	             the clock, for a record without one) (UTC)
//	infer_types  logfmt, csv, regex, combined: turn text that is a JSON number
//	             into int64 (integers that fit) or float64, and true/false
//	             (also True, TRUE, False, FALSE) into bool; combined converts
//	             only status and bytes; false keeps every value a string (true)
//	types        {field: int|float|bool|string|time|"time:<Go layout>"}: convert
//	             these fields explicitly (from the text, before inference);
//	             time without a layout reads RFC 3339 text or unix seconds/ms;
//	             a failed conversion dead-letters the record; an absent or
//	             null field is left alone
//
// The fields each format gives, in order:
//
//	json      the object's members (a repeated key: first place, last
//	          value), decoded only when read; objects and arrays nest as
//	          map[string]any and []any
//	logfmt    each key in line order; a key with no value (`k` or `k=`)
//	          gets ""; a line needs at least one `=`
//	regex     each named group in pattern order
//	csv       the columns
//	syslog    RFC 5424: priority, facility, severity, version, timestamp,
//	          hostname, appname, procid, msgid, structured_data, message;
//	          RFC 3164: the same but version, msgid and structured_data
//	          (nil where the line has `-` or no such part)
//	combined  remote_addr, ident, user, time, method, path, protocol,
//	          status, bytes, referer, user_agent (`-` is nil; bytes `-` is 0)
//	common    the same without referer and user_agent
//
// Every line format ignores one trailing line break (\n or \r\n).
//
// A ParseConfig is read-only once decoded: NewOperator may be called for
// several instances, concurrently.
type ParseConfig struct {
	Format     string      // format: one of the Format constants
	Field      string      // field: parse this field's string; "" parses the raw Value
	Pattern    string      // pattern: regex only
	Columns    []string    // columns: csv only
	Header     bool        // header: csv only
	Delimiter  string      // delimiter: csv only; one character
	RFC        string      // rfc: syslog only; "5424", "3164", "auto" or ""
	Timezone   string      // timezone: syslog only; an IANA name, "" is UTC
	InferTypes bool        // infer_types: text formats only
	Types      []ParseType // types:, in the order written
}

// parsePlan is a checked ParseConfig in the form the operator runs. Each
// NewOperator compiles its own, so instances share nothing mutable and a
// config is never written after it is decoded.
type parsePlan struct {
	regex *regexp.Regexp
	loc   *time.Location
	conv  []parseConversion
	delim rune
}

// ParseType is one `types:` entry: convert Field to Type.
type ParseType struct {
	Field string
	Type  string
}

// NewParseConfig returns a ParseConfig with its defaults set (infer_types
// true, delimiter ",", rfc auto, timezone UTC).
func NewParseConfig() *ParseConfig {
	return &ParseConfig{InferTypes: true, Delimiter: ",", RFC: "auto", Timezone: "UTC"}
}

// DeclaredFields implements pipeline.FieldDeclarer for the formats whose
// field names the configuration gives: regex (the named groups) and csv
// with columns. Parsing the raw line replaces the record's fields; a
// `field:` parse adds to them.
func (c *ParseConfig) DeclaredFields() ([]string, bool) {
	var names []string
	switch {
	case c.Format == FormatRegex:
		re, err := regexp.Compile(c.Pattern)
		if err != nil {
			return nil, false
		}
		for _, n := range re.SubexpNames() {
			if n != "" {
				names = append(names, n)
			}
		}
	case c.Format == FormatCSV && !c.Header:
		names = c.Columns
	default:
		return nil, false
	}
	return names, c.Field == ""
}

// parseOptions are the keys of a parse mapping.
var parseOptions = []string{"format", "field", "pattern", "columns", "header", "delimiter", "rfc", "timezone", "infer_types", "types"}

// parseOptionFormats lists, for options that only some formats take, which.
var parseOptionFormats = map[string][]string{
	"pattern":     {FormatRegex},
	"columns":     {FormatCSV},
	"header":      {FormatCSV},
	"delimiter":   {FormatCSV},
	"rfc":         {FormatSyslog},
	"timezone":    {FormatSyslog},
	"infer_types": {FormatLogfmt, FormatCSV, FormatRegex, FormatCombined, FormatCommon},
}

// parseOptionError is a problem with one option; key locates it ("pattern",
// "types.status").
type parseOptionError struct {
	key string
	msg string
}

func (e *parseOptionError) Error() string { return e.key + ": " + e.msg }

// UnmarshalYAML decodes the option mapping and checks it, reporting every
// problem at the position of the option at fault.
func (c *ParseConfig) UnmarshalYAML(n ast.Node) error {
	kvs, ok := pipeline.Mapping(n)
	if !ok || pipeline.IsNull(n) {
		return parseConfigError(n, "expected a mapping of options, such as {format: json}")
	}
	nodes := map[string]ast.Node{}
	seen := map[string]bool{}
	var values []pipeline.KeyValue // the options set: null is the default, as if left out
	for _, kv := range kvs {
		key := kv.Key
		if seen[key] {
			return parseConfigError(kv.KeyNode, "duplicate option %q", key)
		}
		seen[key] = true
		if !slices.Contains(parseOptions, key) {
			return parseConfigError(kv.KeyNode, "unknown option %q (want %s)", key, strings.Join(parseOptions, ", "))
		}
		val := kv.Value
		if val == nil {
			continue
		}
		values = append(values, kv)
		nodes[key] = val
		var err error
		switch key {
		case "format":
			c.Format, err = parseYAMLScalar(val, key)
		case "field":
			c.Field, err = parseYAMLScalar(val, key)
		case "pattern":
			c.Pattern, err = parseYAMLScalar(val, key)
		case "delimiter":
			c.Delimiter, err = parseYAMLScalar(val, key)
		case "rfc":
			c.RFC, err = parseYAMLScalar(val, key)
		case "timezone":
			c.Timezone, err = parseYAMLScalar(val, key)
		case "columns":
			c.Columns = nil
			err = pipeline.DecodeNode(val, &c.Columns)
		case "header":
			err = pipeline.DecodeNode(val, &c.Header)
		case "infer_types":
			err = pipeline.DecodeNode(val, &c.InferTypes)
		case "types":
			c.Types, err = decodeParseTypes(val, nodes)
		}
		if err != nil {
			return err
		}
	}
	if _, ok := nodes["format"]; !ok {
		return parseConfigError(n, "format: missing (want one of %s)", strings.Join(parseFormats, ", "))
	}
	for _, kv := range values {
		key := kv.Key
		if formats, ok := parseOptionFormats[key]; ok && isParseFormat(c.Format) && !slices.Contains(formats, c.Format) {
			return parseConfigError(kv.KeyNode, "%s: not an option of format %s (it is for %s)", key, c.Format, strings.Join(formats, ", "))
		}
	}
	if _, err := c.compile(); err != nil {
		var oe *parseOptionError
		if errors.As(err, &oe) {
			at := nodes[oe.key]
			if at == nil {
				at = n
			}
			return parseConfigError(at, "%s", oe.Error())
		}
		return err
	}
	return nil
}

// Validate implements pipeline.Validator. It compiles the pattern, the
// time zone and the type conversions; its errors name the option at fault
// ("parse: pattern: ...").
func (c *ParseConfig) Validate() error {
	if _, err := c.compile(); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	return nil
}

// compile checks c and builds what the operator needs.
func (c *ParseConfig) compile() (*parsePlan, error) {
	bad := func(key, format string, args ...any) (*parsePlan, error) {
		return nil, &parseOptionError{key: key, msg: fmt.Sprintf(format, args...)}
	}
	plan := &parsePlan{}
	switch c.Format {
	case "":
		return bad("format", "missing (want one of %s)", strings.Join(parseFormats, ", "))
	case FormatRegex:
		if c.Pattern == "" {
			return bad("pattern", "format regex needs a pattern with named groups, such as '(?P<level>\\w+): (?P<msg>.*)'")
		}
		re, err := regexp.Compile(c.Pattern)
		if err != nil {
			return bad("pattern", "%v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
		named := 0
		for _, name := range re.SubexpNames() {
			if name != "" {
				named++
			}
		}
		if named == 0 {
			return bad("pattern", "%q has no named group; name the parts to keep, as in (?P<name>...)", c.Pattern)
		}
		plan.regex = re
	case FormatCSV:
		if len(c.Columns) == 0 && !c.Header {
			return bad("format", "csv needs `columns: [a, b, ...]` or `header: true`")
		}
		seen := map[string]bool{}
		for i, col := range c.Columns {
			if col == "" {
				return bad("columns", "column %d has an empty name", i+1)
			}
			if seen[col] {
				return bad("columns", "column %q appears twice", col)
			}
			seen[col] = true
		}
		d, err := csvDelimiter(c.Delimiter)
		if err != nil {
			return bad("delimiter", "%v", err)
		}
		plan.delim = d
	case FormatSyslog:
		switch c.RFC {
		case "", "auto", "5424", "3164":
		default:
			return bad("rfc", "%q is not one of 5424, 3164, auto", c.RFC)
		}
		tz := c.Timezone
		if tz == "" {
			tz = "UTC"
		}
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return bad("timezone", "%q is not a known IANA time zone (such as UTC or Europe/Paris)", c.Timezone)
		}
		plan.loc = loc
	case FormatJSON, FormatLogfmt, FormatCombined, FormatCommon:
	default:
		return bad("format", "%q is not one of %s", c.Format, strings.Join(parseFormats, ", "))
	}
	seen := map[string]bool{}
	for _, t := range c.Types {
		key := "types." + t.Field
		if t.Field == "" {
			return bad("types", "empty field name")
		}
		if seen[t.Field] {
			return bad(key, "field %q appears twice", t.Field)
		}
		seen[t.Field] = true
		cv, err := newParseConversion(t.Field, t.Type)
		if err != nil {
			return bad(key, "%v", err)
		}
		plan.conv = append(plan.conv, cv)
	}
	return plan, nil
}

// NewOperator implements pipeline.OperatorConfig.
func (c *ParseConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
	plan, err := c.compile()
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	now := b.Now
	if now == nil {
		now = time.Now
	}
	p := &parseOp{id: b.Component, format: c.Format, field: c.Field, infer: c.InferTypes, conv: plan.conv}
	switch c.Format {
	case FormatJSON:
		p.json = true
	case FormatLogfmt:
		p.lines = newLogfmtParser()
	case FormatRegex:
		p.lines = newRegexParser(plan.regex)
	case FormatCSV:
		cp := newCSVParser(c.Columns, c.Header, plan.delim)
		p.lines = cp
		if c.Header {
			return &csvHeaderOp{parseOp: p, csv: cp}, nil
		}
	case FormatSyslog:
		p.lines = newSyslogParser(c.RFC, plan.loc, now)
	case FormatCombined:
		p.lines = &accessLogParser{combined: true, infer: c.InferTypes}
	case FormatCommon:
		p.lines = &accessLogParser{infer: c.InferTypes}
	}
	return p, nil
}

// parsedField is one parsed field before it is set on the record. text marks a
// value taken verbatim from untyped input, which infer_types may turn into
// a number or a boolean.
type parsedField struct {
	name string
	val  any
	text bool
}

// formatParser parses one line of a text format.
type formatParser interface {
	// parse appends the fields of line to out, in input order. line is
	// immutable and may be aliased by the values. r is the record being
	// parsed (for its source, origin and time); parse must not change it.
	parse(r *pipeline.Record, line string, out []parsedField) ([]parsedField, error)
}

// errParseSkip is returned by a formatParser for a line that is consumed
// without output (a CSV header).
var errParseSkip = errors.New("record consumed")

// parseOp is the running parse operator. It is used by one goroutine.
type parseOp struct {
	id     string
	format string
	field  string
	infer  bool
	conv   []parseConversion
	json   bool
	lines  formatParser

	kvs     []parsedField   // scratch for text formats
	scratch pipeline.Fields // scratch for JSON from a field
}

// Stateless implements pipeline.Stateless: each line parses on its own.
func (p *parseOp) Stateless() bool { return true }

// Process implements pipeline.Operator: records that parse stay, with their
// fields; the others go to b.Dead with reason "parse".
func (p *parseOp) Process(_ context.Context, b *pipeline.Batch) error {
	if p.json && p.field == "" {
		pipeline.ReserveFields(b.Records, 8)
	}
	out := b.Records[:0]
	for _, r := range b.Records {
		err := p.parseRecord(r)
		switch {
		case err == nil:
			out = append(out, r)
		case err == errParseSkip:
		default:
			b.Reject(r, p.id, "parse", err)
		}
	}
	clear(b.Records[len(out):])
	b.Records = out
	return nil
}

// parseRecord parses r in place. On error r's fields are left as they were,
// except that a raw JSON parse leaves them empty.
func (p *parseOp) parseRecord(r *pipeline.Record) error {
	var line string
	if p.field == "" {
		line = parseAlias(r.Value)
	} else {
		v := r.Fields().Get(p.field)
		s, ok := v.(string)
		if !ok {
			if v == nil && !r.Fields().Has(p.field) {
				return fmt.Errorf("parse: field %q is missing", p.field)
			}
			return fmt.Errorf("parse: field %q holds %s, not a string", p.field, parseValueKind(v))
		}
		line = s
	}
	if p.json {
		return p.parseJSON(r, line)
	}
	kvs, err := p.lines.parse(r, line, p.kvs[:0])
	p.kvs = kvs[:0]
	if err != nil {
		clear(kvs)
		if err == errParseSkip {
			return err
		}
		return p.wrap(err)
	}
	for i := range kvs {
		f := &kvs[i]
		if f.val == nil {
			continue
		}
		if c := p.conversionFor(f.name); c != nil {
			v, err := c.apply(f.val)
			if err != nil {
				clear(kvs)
				return fmt.Errorf("parse: types: %w", err)
			}
			f.val = v
		} else if f.text && p.infer {
			// Only a value whose type changes is boxed anew.
			if s, ok := f.val.(string); ok {
				if v, typed := parseInferValue(s); typed {
					f.val = v
				}
			}
		}
	}
	var fs *pipeline.Fields
	if p.field == "" {
		fs = r.SetFields()
	} else {
		fs = r.Fields()
	}
	for _, f := range kvs {
		fs.Set(f.name, f.val)
	}
	clear(kvs)
	return nil
}

func (p *parseOp) parseJSON(r *pipeline.Record, line string) error {
	if p.field == "" {
		if len(r.Value) == 0 {
			return p.wrap(errParseEmptyLine)
		}
		fs := r.SetFields()
		if err := fs.ParseJSONObject(r.Value); err != nil {
			return p.wrap(describeJSONError(r.Value))
		}
		return p.convertFields(fs)
	}
	data := parseBytesOf(line)
	if len(data) == 0 {
		return p.wrap(errParseEmptyLine)
	}
	if err := p.scratch.ParseJSONObject(data); err != nil {
		return p.wrap(describeJSONError(data))
	}
	if err := p.convertFields(&p.scratch); err != nil {
		p.scratch.Reset()
		return err
	}
	r.Fields().Merge(&p.scratch)
	p.scratch.Reset()
	return nil
}

// convertFields applies the `types:` conversions to already typed fields.
func (p *parseOp) convertFields(fs *pipeline.Fields) error {
	for i := range p.conv {
		c := &p.conv[i]
		v := fs.Get(c.field)
		if v == nil {
			continue
		}
		nv, err := c.apply(v)
		if err != nil {
			return fmt.Errorf("parse: types: %w", err)
		}
		fs.Set(c.field, nv)
	}
	return nil
}

func (p *parseOp) conversionFor(name string) *parseConversion {
	for i := range p.conv {
		if p.conv[i].field == name {
			return &p.conv[i]
		}
	}
	return nil
}

// wrap prefixes a format error with the operator and format names, and
// the field when one is parsed: `parse: json: field "msg": ...`.
func (p *parseOp) wrap(err error) error {
	if p.field != "" {
		return fmt.Errorf("parse: %s: field %q: %w", p.format, p.field, err)
	}
	return fmt.Errorf("parse: %s: %w", p.format, err)
}

var errParseEmptyLine = errors.New("empty line")

// parseTrimEOL removes one trailing line break (\n or \r\n).
func parseTrimEOL(s string) string {
	if n := len(s); n > 0 && s[n-1] == '\n' {
		s = s[:n-1]
		if n := len(s); n > 0 && s[n-1] == '\r' {
			s = s[:n-1]
		}
	}
	return s
}

// parseAlias returns a string sharing b's memory. It is used on record
// Values, which are immutable by contract (pipeline.Record), so parsed
// string fields can alias them as the JSON path does.
func parseAlias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// parseBytesOf returns the bytes of s without copying; they must not be
// written.
func parseBytesOf(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

func parseValueKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case int64, int, float64:
		return "a number"
	case time.Time:
		return "a time"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

func isParseFormat(f string) bool { return slices.Contains(parseFormats, f) }

// parseYAMLScalar returns the text of a scalar option value.
func parseYAMLScalar(n ast.Node, key string) (string, error) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, nil
	case *ast.LiteralNode:
		return v.Value.Value, nil
	case *ast.NullNode:
	case ast.ScalarNode:
		return v.GetToken().Value, nil
	}
	return "", parseConfigError(n, "%s: expected a string", key)
}

// decodeParseTypes decodes `types:`, noting each entry's node in nodes
// under "types.<field>".
func decodeParseTypes(n ast.Node, nodes map[string]ast.Node) ([]ParseType, error) {
	kvs, ok := pipeline.Mapping(n)
	if !ok {
		return nil, parseConfigError(n, "types: expected a mapping of field: type, such as {status: int}")
	}
	var out []ParseType
	for _, kv := range kvs {
		name := kv.Key
		if kv.Value == nil {
			return nil, parseConfigError(kv.KeyNode, "types.%s: expected a type (int, float, bool, string, time)", name)
		}
		typ, err := parseYAMLScalar(kv.Value, "types."+name)
		if err != nil {
			return nil, err
		}
		nodes["types."+name] = kv.Value
		out = append(out, ParseType{Field: name, Type: typ})
	}
	return out, nil
}

func parseConfigError(n ast.Node, format string, args ...any) error {
	return &pipeline.ConfigError{Pos: pipeline.NodePos(n), Msg: "parse: " + fmt.Sprintf(format, args...)}
}
