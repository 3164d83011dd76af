package pipeline

import "github.com/goccy/go-yaml/ast"

// The one way weir reads YAML nodes by hand. Component configs decode as
// typed structs (config_decode.go); the loader, shapes that a struct cannot
// say (`tumbling: 1m` or `hopping: {...}`, a schema's column map) and the
// supervisor's fingerprints walk nodes, all with these two functions, so
// that comments, anchors, tags and nulls read the same everywhere.

// Unwrap strips the anchors and tags around a node. A comment group (what
// a key followed by nothing but a comment holds) reads as nil. An explicit
// null stays a *ast.NullNode, so that an error about it keeps its position;
// IsNull tells no value from a value.
func Unwrap(n ast.Node) ast.Node {
	for {
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
		case *ast.TagNode:
			n = x.Value
		case *ast.CommentGroupNode:
			return nil
		default:
			return n
		}
	}
}

// IsNull reports whether a node holds no value: nothing, a comment or null.
func IsNull(n ast.Node) bool {
	switch Unwrap(n).(type) {
	case nil, *ast.NullNode:
		return true
	}
	return false
}

// UnwrapValue is Unwrap with null read as nil: a value's node, or nil for
// no value.
func UnwrapValue(n ast.Node) ast.Node {
	n = Unwrap(n)
	if _, null := n.(*ast.NullNode); null {
		return nil
	}
	return n
}

// KeyValue is one entry of a YAML mapping.
type KeyValue struct {
	Key     string
	KeyNode ast.Node // for the entry's position: NodePos(kv.KeyNode)
	// Value is the unwrapped value; nil for `key:` with nothing after it,
	// and for null.
	Value ast.Node
}

// Pos is where the entry's key stands.
func (kv KeyValue) Pos() Pos { return NodePos(kv.KeyNode) }

// Mapping returns the entries of a mapping node, in order. No value (nil,
// a comment or null) is an empty mapping. ok is false when n is something
// else; the caller reports that at NodePos(n), in its own words.
func Mapping(n ast.Node) (kvs []KeyValue, ok bool) {
	var values []*ast.MappingValueNode
	switch x := Unwrap(n).(type) {
	case *ast.MappingNode:
		values = x.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{x}
	case nil, *ast.NullNode:
		return nil, true
	default:
		return nil, false
	}
	kvs = make([]KeyValue, 0, len(values))
	for _, v := range values {
		kvs = append(kvs, KeyValue{Key: v.Key.GetToken().Value, KeyNode: v.Key, Value: UnwrapValue(v.Value)})
	}
	return kvs, true
}
