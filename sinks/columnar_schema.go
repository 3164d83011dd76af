package sinks

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

// ColumnarKind is the kind of a column in a columnar (Parquet, Arrow IPC)
// schema.
type ColumnarKind uint8

// The column kinds. Their names in YAML are given with each.
const (
	KindString      ColumnarKind = iota + 1 // string: UTF-8 text
	KindInt64                               // int64
	KindFloat64                             // float64
	KindBool                                // bool
	KindTimestampMS                         // timestamp(ms): UTC instant, millisecond unit
	KindTimestampUS                         // timestamp(us): UTC instant, microsecond unit
	KindDate                                // date: calendar day, days since 1970-01-01
	KindList                                // list<T>
	KindStruct                              // struct<name: T, ...>, or a YAML mapping
)

var kindNames = map[ColumnarKind]string{
	KindString: "string", KindInt64: "int64", KindFloat64: "float64", KindBool: "bool",
	KindTimestampMS: "timestamp(ms)", KindTimestampUS: "timestamp(us)", KindDate: "date",
	KindList: "list", KindStruct: "struct",
}

func (k ColumnarKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("ColumnarKind(%d)", k)
}

// ColumnarType is the type of a column or of a list element.
//
// Types are written as strings in YAML:
//
//	string | int64 | float64 | bool | timestamp(ms) | timestamp(us) | date
//	list<T>                      a list whose elements have type T
//	struct<a: T, b: U, ...>      a nested record with ordered fields
//
// and any of them may end in `!` to say "not null": `int64!`,
// `list<string!>!`. Everything is nullable by default. A YAML mapping in
// place of a type string is a nullable struct whose fields keep the
// mapping's order.
//
// A ColumnarType is immutable once built; it is safe for concurrent use.
type ColumnarType struct {
	Kind     ColumnarKind
	Nullable bool
	Elem     *ColumnarType   // element type of a list
	Fields   []ColumnarField // fields of a struct, in order
}

// ColumnarField is one named column (or nested struct field) with its type
// and, when it came from YAML, its position.
type ColumnarField struct {
	Name string
	Type *ColumnarType
	Pos  pipeline.Pos
}

// ColumnarSchema is the ordered list of columns of a columnar sink, declared
// in YAML under `schema:` or inferred from the first record.
//
// It decodes from a YAML mapping of column name to type, in the order
// written:
//
//	schema:
//	  ts: "timestamp(ms)!"     # not null
//	  level: string
//	  tags: "list<string>"
//	  http: { status: int64, path: string }   # nested struct
type ColumnarSchema struct {
	Fields []ColumnarField
	// Inferred is true when the schema was inferred from a record rather
	// than declared.
	Inferred bool
}

// String renders the schema as one struct type string, in the syntax
// ParseColumnarType reads ("struct<ts: timestamp(ms)!, level: string>").
func (s *ColumnarSchema) String() string {
	return (&ColumnarType{Kind: KindStruct, Nullable: true, Fields: s.Fields}).String()
}

// String renders t in the YAML type syntax, so that
// ParseColumnarType(t.String()) gives back an equal type. Field names that
// the syntax cannot hold unquoted are written as JSON strings.
func (t *ColumnarType) String() string {
	var b strings.Builder
	t.appendTo(&b)
	return b.String()
}

func (t *ColumnarType) appendTo(b *strings.Builder) {
	switch t.Kind {
	case KindList:
		b.WriteString("list<")
		t.Elem.appendTo(b)
		b.WriteByte('>')
	case KindStruct:
		b.WriteString("struct<")
		for i, f := range t.Fields {
			if i > 0 {
				b.WriteString(", ")
			}
			if plainFieldName(f.Name) {
				b.WriteString(f.Name)
			} else {
				b.Write(pipeline.AppendJSONString(nil, f.Name))
			}
			b.WriteString(": ")
			f.Type.appendTo(b)
		}
		b.WriteByte('>')
	default:
		b.WriteString(t.Kind.String())
	}
	if !t.Nullable {
		b.WriteByte('!')
	}
}

func plainFieldName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// Equal reports whether two types are the same, field names included.
func (t *ColumnarType) Equal(u *ColumnarType) bool {
	if t.Kind != u.Kind || t.Nullable != u.Nullable || len(t.Fields) != len(u.Fields) {
		return false
	}
	if t.Kind == KindList && !t.Elem.Equal(u.Elem) {
		return false
	}
	for i := range t.Fields {
		if t.Fields[i].Name != u.Fields[i].Name || !t.Fields[i].Type.Equal(u.Fields[i].Type) {
			return false
		}
	}
	return true
}

// ParseColumnarType parses a type string (see ColumnarType). The error,
// when not nil, says at which byte offset of s the problem is.
func ParseColumnarType(s string) (*ColumnarType, error) {
	p := &typeParser{src: s}
	t, err := p.parse()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.src) {
		return nil, p.errorf("unexpected %q after the type", p.src[p.i:])
	}
	return t, nil
}

// TypeSyntaxError is a type string that does not parse; Offset is the byte
// offset in the string where the problem is.
type TypeSyntaxError struct {
	Type   string
	Offset int
	Msg    string
}

func (e *TypeSyntaxError) Error() string {
	return fmt.Sprintf("type %q: %s (at offset %d)", e.Type, e.Msg, e.Offset)
}

type typeParser struct {
	src   string
	i     int
	depth int
}

const maxTypeDepth = 32 // nesting limit, so hostile input cannot exhaust the stack

func (p *typeParser) errorf(format string, args ...any) error {
	return &TypeSyntaxError{Type: p.src, Offset: p.i, Msg: fmt.Sprintf(format, args...)}
}

func (p *typeParser) space() {
	for p.i < len(p.src) && (p.src[p.i] == ' ' || p.src[p.i] == '\t' || p.src[p.i] == '\n' || p.src[p.i] == '\r') {
		p.i++
	}
}

func (p *typeParser) eat(c byte) bool {
	p.space()
	if p.i < len(p.src) && p.src[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *typeParser) word() string {
	p.space()
	start := p.i
	for p.i < len(p.src) {
		c := p.src[p.i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			p.i++
			continue
		}
		break
	}
	return p.src[start:p.i]
}

var scalarKinds = map[string]ColumnarKind{
	"string": KindString, "int64": KindInt64, "float64": KindFloat64, "bool": KindBool, "date": KindDate,
}

func (p *typeParser) parse() (*ColumnarType, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxTypeDepth {
		return nil, p.errorf("nested more than %d deep", maxTypeDepth)
	}
	start := p.i
	name := p.word()
	t := &ColumnarType{Nullable: true}
	switch name {
	case "string", "int64", "float64", "bool", "date":
		t.Kind = scalarKinds[name]
	case "timestamp":
		if !p.eat('(') {
			return nil, p.errorf("want timestamp(ms) or timestamp(us)")
		}
		switch unit := p.word(); unit {
		case "ms":
			t.Kind = KindTimestampMS
		case "us":
			t.Kind = KindTimestampUS
		default:
			return nil, p.errorf("timestamp unit %q: want ms or us", unit)
		}
		if !p.eat(')') {
			return nil, p.errorf("want ) after the timestamp unit")
		}
	case "list":
		if !p.eat('<') {
			return nil, p.errorf("want list<element type>")
		}
		elem, err := p.parse()
		if err != nil {
			return nil, err
		}
		if !p.eat('>') {
			return nil, p.errorf("want > to close list<")
		}
		t.Kind, t.Elem = KindList, elem
	case "struct":
		if !p.eat('<') {
			return nil, p.errorf("want struct<name: type, ...>")
		}
		t.Kind = KindStruct
		seen := map[string]bool{}
		for {
			fname, err := p.fieldName()
			if err != nil {
				return nil, err
			}
			if seen[fname] {
				return nil, p.errorf("duplicate field %q", fname)
			}
			seen[fname] = true
			if !p.eat(':') {
				return nil, p.errorf("want : after field name %q", fname)
			}
			ft, err := p.parse()
			if err != nil {
				return nil, err
			}
			t.Fields = append(t.Fields, ColumnarField{Name: fname, Type: ft})
			if p.eat(',') {
				continue
			}
			if p.eat('>') {
				break
			}
			return nil, p.errorf("want , or > in struct<")
		}
	case "":
		p.i = start
		return nil, p.errorf("want a type (%s)", typeNames)
	default:
		p.i = start
		return nil, p.errorf("unknown type %q (want %s)", name, typeNames)
	}
	if p.eat('!') {
		t.Nullable = false
	}
	return t, nil
}

const typeNames = "string, int64, float64, bool, timestamp(ms), timestamp(us), date, list<T>, struct<...>"

func (p *typeParser) fieldName() (string, error) {
	p.space()
	if p.i < len(p.src) && p.src[p.i] == '"' {
		end := p.i + 1
		for end < len(p.src) && p.src[end] != '"' {
			if p.src[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(p.src) {
			return "", p.errorf("unclosed quoted field name")
		}
		var name string
		if err := jsonUnquote(p.src[p.i:end+1], &name); err != nil {
			return "", p.errorf("bad quoted field name: %v", err)
		}
		p.i = end + 1
		return name, nil
	}
	start := p.i
	for p.i < len(p.src) && plainFieldName(p.src[p.i:p.i+1]) {
		p.i++
	}
	if start == p.i {
		return "", p.errorf("want a field name")
	}
	return p.src[start:p.i], nil
}

// UnmarshalYAML decodes the schema from a YAML mapping, keeping the order
// of its keys and the position of each type for error messages.
func (s *ColumnarSchema) UnmarshalYAML(n ast.Node) error {
	fields, err := decodeStructNode(n, 0)
	if err != nil {
		return err
	}
	if len(fields) == 0 {
		return &pipeline.ConfigError{Pos: pipeline.NodePos(n), Msg: "schema: want a mapping of column name to type, got an empty one"}
	}
	s.Fields, s.Inferred = fields, false
	return nil
}

func decodeStructNode(n ast.Node, depth int) ([]ColumnarField, error) {
	kvs, ok := pipeline.Mapping(n)
	if !ok || pipeline.IsNull(n) {
		return nil, &pipeline.ConfigError{Pos: pipeline.NodePos(n), Msg: "schema: want a mapping of column name to type (such as `{ts: \"timestamp(ms)\", level: string}`)"}
	}
	if depth > maxTypeDepth {
		return nil, &pipeline.ConfigError{Pos: pipeline.NodePos(n), Msg: fmt.Sprintf("schema: nested more than %d deep", maxTypeDepth)}
	}
	var out []ColumnarField
	seen := map[string]bool{}
	for _, kv := range kvs {
		name := kv.Key
		kpos := kv.Pos()
		if seen[name] {
			return nil, &pipeline.ConfigError{Pos: kpos, Msg: fmt.Sprintf("schema: duplicate column %q", name)}
		}
		seen[name] = true
		if name == "" {
			return nil, &pipeline.ConfigError{Pos: kpos, Msg: "schema: empty column name"}
		}
		val := kv.Value
		vpos := pipeline.NodePos(val)
		f := ColumnarField{Name: name, Pos: vpos}
		switch x := val.(type) {
		case *ast.MappingNode, *ast.MappingValueNode:
			sub, err := decodeStructNode(x, depth+1)
			if err != nil {
				return nil, err
			}
			f.Type = &ColumnarType{Kind: KindStruct, Nullable: true, Fields: sub}
		case *ast.StringNode:
			t, err := ParseColumnarType(x.Value)
			if err != nil {
				return nil, typeConfigError(name, vpos, x, err)
			}
			f.Type = t
		default:
			what := "nothing"
			if val != nil {
				what = fmt.Sprintf("%q", val.GetToken().Value)
			}
			return nil, &pipeline.ConfigError{Pos: orPos(vpos, kpos), Msg: fmt.Sprintf("schema: column %q: want a type (%s) or a mapping, got %s", name, typeNames, what)}
		}
		out = append(out, f)
	}
	return out, nil
}

// typeConfigError positions a type syntax error on its character when the
// string is written plain or quoted on one line.
func typeConfigError(name string, pos pipeline.Pos, n *ast.StringNode, err error) error {
	msg := fmt.Sprintf("schema: column %q: %v", name, err)
	if se, ok := err.(*TypeSyntaxError); ok {
		msg = fmt.Sprintf("schema: column %q: type %q: %s", name, se.Type, se.Msg)
		tok := n.GetToken()
		quoted := tok != nil && len(tok.Origin) > 0 && strings.ContainsAny(strings.TrimSpace(tok.Origin)[:1], `"'`)
		if quoted {
			pos = pos.Add(1)
		}
		pos = pos.Add(se.Offset)
	}
	return &pipeline.ConfigError{Pos: pos, Msg: msg}
}

func orPos(a, b pipeline.Pos) pipeline.Pos {
	if a.Line > 0 {
		return a
	}
	return b
}

// inferSchema builds a schema from one record: every top-level field with a
// non-null value becomes a nullable column, in the record's field order.
// Fields whose type cannot be told (null, an empty list, a list of nulls,
// bytes) are left out and named in skipped.
func inferSchema(r *pipeline.Record) (s *ColumnarSchema, skipped []string) {
	fs := r.Fields()
	s = &ColumnarSchema{Inferred: true}
	for i := 0; i < fs.Len(); i++ {
		name := fs.Name(i)
		t := inferType(fs.Value(i), 0)
		if t == nil {
			skipped = append(skipped, name)
			continue
		}
		s.Fields = append(s.Fields, ColumnarField{Name: name, Type: t})
	}
	return s, skipped
}

func inferType(v any, depth int) *ColumnarType {
	if depth > maxTypeDepth {
		return nil
	}
	t := &ColumnarType{Nullable: true}
	switch x := v.(type) {
	case string:
		t.Kind = KindString
	case int64, int, int32, int16, int8, uint8, uint16, uint32:
		t.Kind = KindInt64
	case float64, float32:
		t.Kind = KindFloat64
	case bool:
		t.Kind = KindBool
	case time.Time:
		// Microseconds: a microsecond column also holds millisecond
		// values exactly, the reverse is not true.
		t.Kind = KindTimestampUS
	case []any:
		for _, e := range x {
			if e == nil {
				continue
			}
			elem := inferType(e, depth+1)
			if elem == nil {
				return nil
			}
			t.Kind, t.Elem = KindList, elem
			return t
		}
		return nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if ft := inferType(x[k], depth+1); ft != nil {
				t.Fields = append(t.Fields, ColumnarField{Name: k, Type: ft})
			}
		}
		if len(t.Fields) == 0 {
			return nil
		}
		t.Kind = KindStruct
	case *pipeline.Fields:
		for i := 0; i < x.Len(); i++ {
			if ft := inferType(x.Value(i), depth+1); ft != nil {
				t.Fields = append(t.Fields, ColumnarField{Name: x.Name(i), Type: ft})
			}
		}
		if len(t.Fields) == 0 {
			return nil
		}
		t.Kind = KindStruct
	default:
		return nil
	}
	return t
}
