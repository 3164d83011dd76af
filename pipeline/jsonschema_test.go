package pipeline_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/weirhq/weir/pipeline"
)

// schemaSource is a source config exercising the reflected types.
type schemaSource struct {
	Paths    []string             `yaml:"paths"`
	Follow   bool                 `yaml:"follow"`
	Interval time.Duration        `yaml:"interval"`
	Rate     float64              `yaml:"rate"`
	Count    *int64               `yaml:"count"`
	Key      *pipeline.Expr       `yaml:"key"`
	TLS      *pipeline.TLSOptions `yaml:"tls"`
	Headers  map[string]string    `yaml:"headers"`
	internal int
}

func (*schemaSource) NewSource(pipeline.Build) (pipeline.Source, error) { return nil, nil }

func (*schemaSource) DescribeOptions() map[string]string {
	return map[string]string{"paths": "globs of the files to read"}
}

// exprOp decodes itself from a bare string and says so.
type exprOp struct{}

func (*exprOp) UnmarshalYAML([]byte) error { return nil }
func (*exprOp) NewOperator(pipeline.Build) (pipeline.Operator, error) {
	return nil, nil
}
func (*exprOp) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "description": "an expression"}
}

type nopSink struct{}

func (*nopSink) NewSink(pipeline.Build) (pipeline.Sink, error) { return nil, nil }

func schemaRegistry() *pipeline.Registry {
	r := pipeline.NewRegistry()
	r.Register(pipeline.Entry{Kind: pipeline.KindSource, Name: "src", Doc: "a test source",
		NewConfig: func() any { return &schemaSource{Interval: time.Second, Paths: []string{"*.log"}} }})
	r.Register(pipeline.Entry{Kind: pipeline.KindOperator, Name: "check", NewConfig: func() any { return &exprOp{} }})
	r.Register(pipeline.Entry{Kind: pipeline.KindSink, Name: "out", ExactlyOnce: true, NewConfig: func() any { return &nopSink{} }})
	return r
}

func compile(t *testing.T, r *pipeline.Registry) *jsonschema.Schema {
	t.Helper()
	raw, err := json.Marshal(r.JSONSchema())
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("weir.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("weir.schema.json")
	if err != nil {
		t.Fatalf("the generated schema is not valid draft 2020-12: %v", err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, yamlText string) error {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(doc)
}

const good = `
data_dir: ./.weir
http: 127.0.0.1:8686
pipelines:
  - name: p-1
    guarantee: at_least_once
    checkpoint_interval: 500ms
    batch_size: ${BATCH:-512}
    sources:
      - src: { paths: ["a/*.log"], follow: true, interval: 1m30s, rate: 2.5, count: 10,
               key: 'user.id', tls: { ca_file: ca.pem }, headers: { a: b } }
      - src:
    operators:
      - check: 'level == "error"'
    sinks:
      - out: {}
    tests:
      - name: t
        operator: 0
        input: [{level: error}, 'raw line']
        expect: [{level: error}]
        expect_dead: [parse, {reason: late, value: x}]
`

func TestSchemaAcceptsValidConfigAndMatchesTheLoader(t *testing.T) {
	r := schemaRegistry()
	s := compile(t, r)
	if err := validate(t, s, good); err != nil {
		t.Fatalf("valid configuration refused: %v", err)
	}
	t.Setenv("BATCH", "512")
	if _, err := r.Load("good.yaml", []byte(good)); err != nil {
		t.Fatalf("the loader refuses the configuration the schema accepts: %v", err)
	}
}

func TestSchemaRefusesMistakes(t *testing.T) {
	s := compile(t, schemaRegistry())
	for name, bad := range map[string][2]string{
		"unknown option":      {"follow: true", "folow: true"},
		"wrong type":          {"follow: true", "follow: [1]"},
		"bad duration":        {"interval: 1m30s", "interval: soon"},
		"unknown component":   {"- check: 'level", "- chek: 'level"},
		"bad guarantee":       {"guarantee: at_least_once", "guarantee: maybe"},
		"two kinds in one":    {"- out: {}", "- out: {}\n        src: {}"},
		"unknown top key":     {"data_dir:", "datadir:"},
		"bad pipeline name":   {"name: p-1", "name: P 1"},
		"test without expect": {"        expect: [{level: error}]\n", ""},
	} {
		text := strings.Replace(good, bad[0], bad[1], 1)
		if text == good {
			t.Fatalf("%s: replacement %q not found", name, bad[0])
		}
		if err := validate(t, s, text); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSchemaDescriptionsAndDefaults(t *testing.T) {
	defs := schemaRegistry().JSONSchema()["$defs"].(map[string]any)
	src := defs["source.src"].(map[string]any)
	if src["description"] != "a test source" {
		t.Errorf("component description = %v", src["description"])
	}
	props := src["properties"].(map[string]any)
	paths := props["paths"].(map[string]any)
	if paths["description"] != "globs of the files to read" {
		t.Errorf("paths description = %v", paths["description"])
	}
	if got, _ := json.Marshal(paths["default"]); string(got) != `["*.log"]` {
		t.Errorf("paths default = %s", got)
	}
	if got := props["interval"].(map[string]any)["default"]; got != "1s" {
		t.Errorf("interval default = %v", got)
	}
	if _, ok := props["internal"]; ok {
		t.Error("unexported field in the schema")
	}
	ca := props["tls"].(map[string]any)["properties"].(map[string]any)["ca_file"].(map[string]any)
	if !strings.Contains(ca["description"].(string), "CAs") {
		t.Errorf("tls.ca_file description = %v", ca["description"])
	}
	if got := defs["operator.check"].(map[string]any)["type"]; got != "string" {
		t.Errorf("SchemaProvider ignored: operator.check type %v", got)
	}
}
