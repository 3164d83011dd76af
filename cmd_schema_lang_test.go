package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The schema knows the pipeline options restart and timezone, the new
// operators and the file sink's compression.
func TestSchemaKnowsRestartTimezoneAndCompression(t *testing.T) {
	_, out, _ := runCLI(t, "schema")
	s := compileSchema(t, out)
	const cfg = `pipelines:
  - name: a
    restart: {max_retries: 3, backoff: 2s}
    timezone: Europe/Paris
    sources: [{file: {paths: [x.log]}}]
    operators:
      - rename: {a: b}
      - sample: 0.5
      - unnest: items
      - throttle: {rate: 10}
      - flatten: {}
    sinks: [{file: {path: out.jsonl.gz, compression: gzip}}]
`
	for _, tc := range []struct {
		text  string
		valid bool
	}{
		{cfg, true},
		{strings.Replace(cfg, "max_retries", "max_retry", 1), false},
		{strings.Replace(cfg, "timezone:", "time_zone:", 1), false},
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
			t.Errorf("valid=%v: %v\n%s", tc.valid, err, tc.text)
		}
	}
}
