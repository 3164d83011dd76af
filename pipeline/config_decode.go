package pipeline

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// decodeComponent decodes a component's YAML value into a new
// configuration from e, with weir's rules on top of the YAML library's:
//
//   - one string where a list is expected is a list of one (paths: x.log);
//   - an error names the option by its YAML key, not the Go field, and
//     says what was expected: "poll_interval: want a duration such as 5s
//     or 250ms, got the number 5";
//   - an unknown key lists the valid keys at that level, and the nearest;
//   - an unmarshaler that returns ConfigErrors (window) has all of them
//     reported.
func (l *loader) decodeComponent(value ast.Node, e *Entry) (any, ConfigErrors) {
	for range 100 { // each retry turns one more string into a list
		cfg := e.NewConfig()
		err := DecodeNode(value, cfg)
		if err == nil {
			return cfg, nil
		}
		var ces ConfigErrors
		if errors.As(err, &ces) {
			for _, ce := range ces {
				if ce.Pos.File == "" {
					ce.Pos.File = l.file
				}
			}
			return nil, ces
		}
		var ye yaml.Error
		if !errors.As(err, &ye) || ye.GetToken() == nil {
			return nil, ConfigErrors{toConfigError(l.file, err, l.pos(value))}
		}
		path, at := keyPath(value, ye.GetToken())
		var ute *yaml.UnexpectedNodeTypeError
		if errors.As(err, &ute) && ute.Expected == ast.SequenceType && at != nil && listOfOne(at) {
			continue
		}
		ce := toConfigError(l.file, err, l.pos(value))
		var te *yaml.TypeError
		var ufe *yaml.UnknownFieldError
		switch {
		case errors.As(err, &te) && len(path) > 0:
			ce.Msg = fmt.Sprintf("%s: want %s, got %s", strings.Join(path, "."), describeType(te.DstType), describeValue(ye.GetToken()))
		case errors.As(err, &ute) && len(path) > 0:
			ce.Msg = fmt.Sprintf("%s: want %s, got %s", strings.Join(path, "."), nodeTypeName(ute.Expected), nodeTypeName(ute.Actual))
		case errors.As(err, &ufe) && len(path) > 0:
			if keys := yamlKeys(reflect.TypeOf(cfg), path[:len(path)-1]); len(keys) > 0 {
				where := e.Name
				if len(path) > 1 {
					where += " " + strings.Join(path[:len(path)-1], ".")
				}
				ce.Msg += fmt.Sprintf(" (%s takes %s)", where, strings.Join(keys, ", "))
				if near := nearest(path[len(path)-1], keys); near != "" {
					ce.Msg += fmt.Sprintf("; did you mean %s?", near)
				}
			}
		}
		return nil, ConfigErrors{ce}
	}
	return nil, ConfigErrors{{Pos: l.pos(value), Msg: "too many values to read as lists"}}
}

// keyPath finds, under root, the value (or key) whose token is tk, and
// returns the mapping keys that lead to it (list items are skipped) and
// the mapping value it is, if it is one.
func keyPath(root ast.Node, tk *token.Token) ([]string, *ast.MappingValueNode) {
	var path []string
	var found *ast.MappingValueNode
	var walk func(n ast.Node) bool
	walk = func(n ast.Node) bool {
		switch x := Unwrap(n).(type) {
		case *ast.MappingNode:
			for _, v := range x.Values {
				if walk(v) {
					return true
				}
			}
		case *ast.MappingValueNode:
			path = append(path, x.Key.GetToken().Value)
			if x.Key.GetToken() == tk || x.Value != nil && x.Value.GetToken() == tk {
				found = x
				return true
			}
			if walk(x.Value) {
				return true
			}
			path = path[:len(path)-1]
		case *ast.SequenceNode:
			for _, v := range x.Values {
				if walk(v) {
					return true
				}
			}
		}
		return false
	}
	walk(root)
	return path, found
}

// listOfOne makes the scalar value of mv a list holding it, and reports
// whether it did.
func listOfOne(mv *ast.MappingValueNode) bool {
	v := Unwrap(mv.Value)
	if _, ok := v.(ast.ScalarNode); !ok || v == nil {
		return false
	}
	if _, null := v.(*ast.NullNode); null {
		return false
	}
	seq := ast.Sequence(token.New("[", "[", v.GetToken().Position), true)
	seq.Values = []ast.Node{v}
	mv.Value = seq
	return true
}

// yamlKeys lists the YAML keys of the struct reached from t by the keys
// of path, or nil when it is not a struct.
func yamlKeys(t reflect.Type, path []string) []string {
	t = structOf(t)
	for _, k := range path {
		if t == nil {
			return nil
		}
		f, ok := yamlField(t, k)
		if !ok {
			return nil
		}
		t = structOf(f.Type)
	}
	if t == nil {
		return nil
	}
	var keys []string
	eachYAMLField(t, func(name string, _ reflect.StructField) { keys = append(keys, name) })
	return keys
}

// structOf returns the struct type behind pointers, slices and maps, or nil.
func structOf(t reflect.Type) reflect.Type {
	for t != nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			return t
		default:
			return nil
		}
	}
	return nil
}

// eachYAMLField calls fn for each field of struct t by its YAML key, with
// the fields of inline and embedded structs in their place, as the YAML
// library reads them.
func eachYAMLField(t reflect.Type, fn func(name string, f reflect.StructField)) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" {
			tag = f.Tag.Get("json")
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") || f.Anonymous && name == "" {
			if st := structOf(f.Type); st != nil {
				eachYAMLField(st, fn)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fn(name, f)
	}
}

func yamlField(t reflect.Type, key string) (reflect.StructField, bool) {
	var out reflect.StructField
	found := false
	eachYAMLField(t, func(name string, f reflect.StructField) {
		if !found && name == key {
			out, found = f, true
		}
	})
	return out, found
}

// nearest returns the key closest to k when it is close enough to be a
// typo of it.
func nearest(k string, keys []string) string {
	best, bestD := "", max(2, len(k)/3)+1
	for _, c := range keys {
		if d := editDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// describeType says what a value of Go type t is written as in YAML.
func describeType(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 5s or 250ms"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Pointer:
		return describeType(t.Elem())
	}
	return t.String()
}

// describeValue says what the YAML value at tk is.
func describeValue(tk *token.Token) string {
	switch tk.Type {
	case token.IntegerType, token.FloatType, token.BinaryIntegerType, token.OctetIntegerType, token.HexIntegerType, token.InfinityType, token.NanType:
		return "the number " + tk.Value
	case token.BoolType:
		return "the boolean " + tk.Value
	case token.NullType:
		return "nothing (null)"
	case token.SequenceStartType, token.SequenceEntryType:
		return "a list"
	case token.MappingStartType, token.MappingValueType:
		return "a mapping"
	}
	return fmt.Sprintf("%q", tk.Value)
}

func nodeTypeName(t ast.NodeType) string {
	switch t {
	case ast.SequenceType:
		return "a list"
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.StringType, ast.LiteralType:
		return "a string"
	case ast.IntegerType, ast.FloatType:
		return "a number"
	case ast.BoolType:
		return "true or false"
	case ast.NullType:
		return "nothing (null)"
	}
	return t.YAMLName()
}
