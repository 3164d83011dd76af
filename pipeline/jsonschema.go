package pipeline

// The JSON Schema (draft 2020-12) of the YAML language, generated from a
// Registry for `weir schema`, so that editors with the YAML language
// server complete and check pipelines.yaml.
//
// Each component's options come from its configuration struct by
// reflection: `yaml:` tags name the options, Go types give JSON types,
// the values NewConfig sets are the defaults. Doc comments are not
// available at run time, so a component describes its options through an
// optional interface, OptionDescriber; a configuration that decodes
// itself (an UnmarshalYAML method: `filter: 'expr'`) and so cannot be
// reflected gives its whole schema through SchemaProvider.

import (
	"reflect"
	"strings"
	"time"
)

// OptionDescriber is implemented by component configurations that
// describe their options for `weir schema`: a map from the option's YAML
// path ("paths", "tls.ca_file") to one or two sentences. The Entry's Doc
// describes the component itself.
type OptionDescriber interface {
	DescribeOptions() map[string]string
}

// SchemaProvider is implemented by component configurations whose YAML
// form is not their struct (they implement UnmarshalYAML): JSONSchema
// returns the JSON Schema of the component's value, as JSON-ready maps,
// e.g. {"type": "string", "description": "an expr-lang expression"}.
type SchemaProvider interface {
	JSONSchema() map[string]any
}

// JSONSchemaDialect is the $schema of the generated schema.
const JSONSchemaDialect = "https://json-schema.org/draft/2020-12/schema"

const (
	durationPattern = `^(\$\{.*\}|([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+)$`
	// envPattern lets any scalar be a ${VAR} reference, interpolated before
	// the YAML is parsed.
	envPattern = `\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}`
)

// JSONSchema returns the JSON Schema of a configuration file using the
// components registered in r, ready for encoding/json.
func (r *Registry) JSONSchema() map[string]any {
	defs := map[string]any{}
	kinds := []struct {
		kind Kind
		def  string
	}{{KindSource, "source"}, {KindOperator, "operator"}, {KindSink, "sink"}}
	for _, k := range kinds {
		props := map[string]any{}
		for _, name := range r.Names(k.kind) {
			e, _ := r.Lookup(k.kind, name)
			s := componentSchema(e)
			if e.Doc != "" {
				s["description"] = e.Doc
			}
			ref := k.def + "." + name
			defs[ref] = s
			props[name] = map[string]any{"$ref": "#/$defs/" + ref}
		}
		defs[k.def] = map[string]any{
			"description":          "one " + string(k.kind) + ", as a mapping with a single key: its kind",
			"type":                 "object",
			"minProperties":        1,
			"maxProperties":        1,
			"properties":           props,
			"additionalProperties": false,
		}
	}
	defs["duration"] = map[string]any{"type": "string", "pattern": durationPattern,
		"description": "a Go duration: 500ms, 1s, 1m30s, 2h"}
	defs["test"] = testSchema()
	defs["pipeline"] = map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"required":             []string{"name", "sources", "sinks"},
		"properties": map[string]any{
			"name": map[string]any{"type": "string", "pattern": `^[a-z0-9_-]+$`,
				"description": "unique name of the pipeline; its state lives in data_dir/NAME"},
			"guarantee": map[string]any{"enum": []string{"exactly_once", "at_least_once", "at_most_once"}, "default": "exactly_once",
				"description": "delivery guarantee; exactly_once needs sinks that commit idempotently"},
			"checkpoint_interval": map[string]any{"$ref": "#/$defs/duration", "default": "1s",
				"description": "how often a checkpoint is taken (and exactly-once output becomes visible)"},
			"batch_size": scalarOrEnv(map[string]any{"type": "integer", "minimum": 1, "maximum": 1 << 20, "default": DefaultBatchSize,
				"description": "the most records a source reads into one batch"}),
			"wal_sync": map[string]any{"enum": []string{"always", "interval", "none"}, "default": "always",
				"description": "fsync policy of the ingest write-ahead log of sources that cannot replay"},
			"restart": map[string]any{"type": "object", "additionalProperties": false,
				"description": "what happens when the pipeline fails: it starts again from its last checkpoint after a backoff, while the others keep running",
				"properties": map[string]any{
					"max_retries": scalarOrEnv(map[string]any{"type": "integer", "minimum": -1, "default": DefaultRestart.MaxRetries,
						"description": "failures in a row before the pipeline stops for good; 0 never retries, -1 retries without end"}),
					"backoff":     map[string]any{"$ref": "#/$defs/duration", "default": "1s", "description": "the first wait, doubled after each failure"},
					"max_backoff": map[string]any{"$ref": "#/$defs/duration", "default": "1m", "description": "the longest wait"},
				}},
			"timezone": map[string]any{"type": "string",
				"description": "IANA time zone (Europe/Paris) of date, hour and format_time called without one; default UTC"},
			"sources": map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"$ref": "#/$defs/source"},
				"description": "one or more sources, merged"},
			"operators": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/$defs/operator"},
				"description": "operators, applied in order"},
			"sinks": map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"$ref": "#/$defs/sink"},
				"description": "one or more sinks; each gets every record"},
			"dead_letter": map[string]any{"$ref": "#/$defs/sink",
				"description": "where records that cannot be processed go, with the reason and their source position"},
			"tests": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/$defs/test"},
				"description": "unit tests of the operators, run by `weir test`"},
		},
	}
	return map[string]any{
		"$schema":              JSONSchemaDialect,
		"title":                "weir pipelines",
		"description":          "A weir configuration: pipelines of sources, operators and sinks.",
		"type":                 "object",
		"additionalProperties": false,
		"required":             []string{"pipelines"},
		"properties": map[string]any{
			"data_dir": map[string]any{"type": "string", "default": "./.weir",
				"description": "where WALs, checkpoints and staging files are kept"},
			"http": map[string]any{"type": "string",
				"description": "address of the admin endpoints (/metrics, /healthz, /readyz), e.g. 127.0.0.1:8686; a bare :port listens on 127.0.0.1 only; off when absent"},
			"pipelines": map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"$ref": "#/$defs/pipeline"}},
		},
		"$defs": defs,
	}
}

func testSchema() map[string]any {
	record := map[string]any{"anyOf": []any{
		map[string]any{"type": "object", "description": "a JSON object"},
		map[string]any{"type": "string", "description": "a raw line"},
	}}
	return map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"required":             []string{"input", "expect"},
		"properties": map[string]any{
			"name":     map[string]any{"type": "string"},
			"operator": map[string]any{"type": "integer", "minimum": 0, "description": "test only operators[N] (0-based); absent: the whole operator chain"},
			"input":    map[string]any{"type": "array", "items": record, "description": "input records: a mapping is a JSON object, a string a raw line"},
			"expect":   map[string]any{"type": "array", "items": record, "description": "expected output records, in order"},
			"expect_dead": map[string]any{"type": "array", "description": "expected dead letters, in order; absent: none",
				"items": map[string]any{"anyOf": []any{
					map[string]any{"type": "string", "description": "the reason"},
					map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{
						"reason": map[string]any{"type": "string"}, "value": map[string]any{"type": "string"}}},
				}}},
		},
	}
}

// componentSchema reflects a component's configuration.
func componentSchema(e *Entry) map[string]any {
	cfg := e.NewConfig()
	if p, ok := cfg.(SchemaProvider); ok {
		return p.JSONSchema()
	}
	var desc map[string]string
	if d, ok := cfg.(OptionDescriber); ok {
		desc = d.DescribeOptions()
	}
	v := reflect.ValueOf(cfg)
	s := valueSchema(v.Type(), v, desc, "", 0)
	if s["type"] == "object" {
		s["type"] = []string{"object", "null"} // `stdout:` with no options
	}
	return s
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	exprType     = reflect.TypeFor[Expr]()
	templateType = reflect.TypeFor[Template]()
	exprMapType  = reflect.TypeFor[ExprMap]()
	tlsType      = reflect.TypeFor[TLSOptions]()
	dedupeType   = reflect.TypeFor[DedupeWindow]()
)

// valueSchema returns the schema of a value of type t; def is its default
// (the zero Value when unknown).
func valueSchema(t reflect.Type, def reflect.Value, desc map[string]string, path string, depth int) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		if def.IsValid() {
			if def.IsNil() {
				def = reflect.Value{}
			} else {
				def = def.Elem()
			}
		}
	}
	switch t {
	case durationType:
		return map[string]any{"$ref": "#/$defs/duration"}
	case exprType:
		return map[string]any{"type": "string", "description": "an expr-lang expression over the record's fields"}
	case templateType:
		return map[string]any{"type": "string", "description": "text with {{ expression }} templates"}
	case exprMapType:
		return map[string]any{"type": "object", "additionalProperties": map[string]any{"type": []string{"string", "null"}},
			"description": "field: expression"}
	case tlsType:
		desc = tlsDescriptions(desc, path)
	case dedupeType:
		return dedupeWindowSchema()
	}
	if depth > 8 {
		return map[string]any{}
	}
	if t.Kind() != reflect.Interface && customYAML(t) {
		return map[string]any{} // decodes itself; see SchemaProvider
	}
	switch t.Kind() {
	case reflect.Bool:
		return scalarOrEnv(map[string]any{"type": "boolean"})
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return scalarOrEnv(map[string]any{"type": "integer"})
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return scalarOrEnv(map[string]any{"type": "integer", "minimum": 0})
	case reflect.Float32, reflect.Float64:
		return scalarOrEnv(map[string]any{"type": "number"})
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string"}
		}
		return map[string]any{"type": "array", "items": valueSchema(t.Elem(), reflect.Value{}, desc, path+"[]", depth+1)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": valueSchema(t.Elem(), reflect.Value{}, desc, path+".*", depth+1)}
	case reflect.Struct:
		props := map[string]any{}
		structProps(t, def, desc, path, depth, props)
		return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	}
	return map[string]any{}
}

func structProps(t reflect.Type, def reflect.Value, desc map[string]string, path string, depth int, props map[string]any) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		var fdef reflect.Value
		if def.IsValid() {
			fdef = def.Field(i)
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
				if fdef.IsValid() {
					if fdef.IsNil() {
						fdef = reflect.Value{}
					} else {
						fdef = fdef.Elem()
					}
				}
			}
			if ft.Kind() == reflect.Struct {
				structProps(ft, fdef, desc, path, depth+1, props)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := name
		if path != "" {
			key = path + "." + name
		}
		s := valueSchema(f.Type, fdef, desc, key, depth+1)
		if d := desc[key]; d != "" {
			s["description"] = d
		}
		if fdef.IsValid() && !fdef.IsZero() {
			if dv, ok := defaultValue(fdef); ok {
				s["default"] = dv
			}
		}
		props[name] = s
	}
}

// defaultValue returns a JSON-ready default for simple values.
func defaultValue(v reflect.Value) (any, bool) {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String(), true
	}
	switch v.Kind() {
	case reflect.Bool:
		return v.Bool(), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint(), true
	case reflect.Float32, reflect.Float64:
		return v.Float(), true
	case reflect.String:
		return v.String(), true
	case reflect.Slice:
		out := make([]any, 0, v.Len())
		for i := range v.Len() {
			e, ok := defaultValue(v.Index(i))
			if !ok {
				return nil, false
			}
			out = append(out, e)
		}
		return out, true
	case reflect.Pointer:
		if !v.IsNil() {
			return defaultValue(v.Elem())
		}
	}
	return nil, false
}

// scalarOrEnv lets a non-string scalar also be written as ${VAR}.
func scalarOrEnv(s map[string]any) map[string]any {
	d, hasDesc := s["description"]
	def, hasDef := s["default"]
	delete(s, "description")
	delete(s, "default")
	out := map[string]any{"anyOf": []any{s, map[string]any{"type": "string", "pattern": envPattern}}}
	if hasDesc {
		out["description"] = d
	}
	if hasDef {
		out["default"] = def
	}
	return out
}

// customYAML reports whether t decodes itself from YAML.
func customYAML(t reflect.Type) bool {
	_, ok := reflect.PointerTo(t).MethodByName("UnmarshalYAML")
	return ok
}

func tlsDescriptions(desc map[string]string, path string) map[string]string {
	out := map[string]string{}
	for k, v := range desc {
		out[k] = v
	}
	for k, v := range map[string]string{
		"ca_file":              "PEM bundle of CAs to trust instead of the system pool",
		"cert_file":            "PEM client certificate, for mutual TLS (with key_file)",
		"key_file":             "PEM key of cert_file",
		"server_name":          "host name the server certificate is checked against (default: the URL's host)",
		"insecure_skip_verify": "accept any server certificate; for tests only",
	} {
		if _, ok := out[path+"."+k]; !ok {
			out[path+"."+k] = v
		}
	}
	return out
}
