package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchema(t *testing.T, text string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		t.Fatalf("weir schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("weir.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("weir.schema.json")
	if err != nil {
		t.Fatalf("weir schema is not a valid draft 2020-12 schema: %v", err)
	}
	return s
}

// The schema of the built-in components accepts the project's own
// configurations and refuses a misspelt option.
func TestSchemaValidatesShippedConfigurations(t *testing.T) {
	code, out, errOut := runCLI(t, "schema")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	s := compileSchema(t, out)
	for _, f := range []string{"pipelines.yaml", "examples/pipeline-tests/pipeline.yaml"} {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			text  string
			valid bool
		}{
			{string(text), true},
			{strings.Replace(string(text), "paths:", "pathz:", 1), false},
		} {
			j, err := yaml.YAMLToJSON([]byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(doc); (err == nil) != tc.valid {
				t.Errorf("%s (valid=%v): %v", f, tc.valid, err)
			}
		}
	}
}
