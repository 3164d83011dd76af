package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Fingerprints returns a hash of each pipeline's YAML, by name: two
// revisions of a pipeline run the same way when their fingerprints are
// equal. The hash covers the interpolated values, not comments, quoting
// or indentation, and leaves out the pipeline's `tests:`.
func Fingerprints(file string, data []byte) (map[string]string, error) {
	text, err := Interpolate(file, string(data), os.LookupEnv)
	if err != nil {
		return nil, err
	}
	f, _, err := ParseYAML(file, text)
	if err != nil {
		return nil, fmt.Errorf("pipeline: parse config: %w", err)
	}
	out := map[string]string{}
	if len(f.Docs) == 0 {
		return out, nil
	}
	tops, _ := Mapping(f.Docs[0].Body)
	for _, top := range tops {
		if top.Key != "pipelines" {
			continue
		}
		seq, ok := top.Value.(*ast.SequenceNode)
		if !ok {
			continue
		}
		for _, p := range seq.Values {
			var name string
			var b strings.Builder
			kvs, _ := Mapping(p)
			for _, kv := range kvs {
				k := kv.Key
				switch k {
				case "tests":
					continue
				case "name":
					if v := kv.Value; v != nil && v.GetToken() != nil {
						name = v.GetToken().Value
					}
				}
				b.WriteString(strconv.Quote(k))
				b.WriteByte(':')
				canonical(&b, kv.Value)
				b.WriteByte(';')
			}
			sum := sha256.Sum256([]byte(b.String()))
			out[name] = hex.EncodeToString(sum[:])
		}
	}
	return out, nil
}

// canonical writes a layout-independent rendering of a YAML node.
func canonical(b *strings.Builder, n ast.Node) {
	n = Unwrap(n)
	switch x := n.(type) {
	case nil, *ast.NullNode:
		b.WriteString("null")
	case *ast.MappingNode, *ast.MappingValueNode:
		b.WriteByte('{')
		kvs, _ := Mapping(x)
		for _, kv := range kvs {
			b.WriteString(strconv.Quote(kv.Key))
			b.WriteByte(':')
			canonical(b, kv.Value)
			b.WriteByte(',')
		}
		b.WriteByte('}')
	case *ast.SequenceNode:
		b.WriteByte('[')
		for _, v := range x.Values {
			canonical(b, v)
			b.WriteByte(',')
		}
		b.WriteByte(']')
	case *ast.StringNode:
		b.WriteString(strconv.Quote(x.Value))
	case *ast.LiteralNode:
		b.WriteString(strconv.Quote(x.Value.Value))
	default:
		if t := n.GetToken(); t != nil {
			b.WriteString(fmt.Sprintf("%T:%s", n, t.Value))
		}
	}
}
