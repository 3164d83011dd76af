package main

import (
	"encoding/json"
	"io"

	"github.com/weirhq/weir/pipeline"
)

// cmdSchema prints the JSON Schema (draft 2020-12) of the YAML language,
// generated from the registered components, for editors:
//
//	weir schema > weir.schema.json
//
// then start pipelines.yaml with
//
//	# yaml-language-server: $schema=./weir.schema.json
func cmdSchema(args []string, stdout io.Writer) error {
	fs := newFlags("schema")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(pipeline.Default.JSONSchema())
}
