package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/weirhq/weir/pipeline"
)

// pipelineYAML wraps one sink (written at column 9 of line 7) in a whole
// configuration.
func pipelineYAML(sink string) string {
	return `pipelines:
  - name: p
    guarantee: exactly_once
    sources:
      - columnar_test_source: {}
    sinks:
      - ` + sink + "\n"
}

func TestColumnarConfigLoads(t *testing.T) {
	yaml := pipelineYAML(`parquet:
          path: out/lake
          schema:
            ts: "timestamp(ms)!"
            level: string
            latency_ms: float64
            status: int64
            tags: list<string>
            http: { method: string, headers: "list<string!>" }
          partition_by: "dt={{ date(ts) }}/hour={{ hour(ts) }}"
          compression: zstd
          row_group_size: 50_000
          dictionary: [level, tags]
          max_open_files: 20
          max_file_bytes: 64MiB
          max_file_age: 10m
          max_buffer_bytes: 32MiB
          max_value_bytes: 64KiB
          unknown_fields: reject
          prefix: events
      - arrow: { path: out/events.arrow, compression: lz4, batch_rows: 1000 }`)
	cfg, err := pipeline.Default.Load("p.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	sinks := cfg.Pipelines[0].Sinks
	pq := sinks[0].Config.(*ParquetConfig)
	if got := pq.Schema.String(); got != "struct<ts: timestamp(ms)!, level: string, latency_ms: float64, status: int64, tags: list<string>, http: struct<method: string, headers: list<string!>>>" {
		t.Errorf("schema (declared order) = %s", got)
	}
	if p := pq.Schema.Fields[1].Pos; p.Line != 11 || p.Column != 20 {
		t.Errorf("position of level's type: %v, want line 11 column 20", p)
	}
	if pq.PartitionBy == nil || pq.PartitionBy.Source != "dt={{ date(ts) }}/hour={{ hour(ts) }}" {
		t.Errorf("partition_by = %v", pq.PartitionBy)
	}
	if pq.Compression != "zstd" || pq.RowGroupSize != 50000 || !pq.Dictionary || !reflect.DeepEqual(pq.DictionaryColumns, []string{"level", "tags"}) || pq.MaxOpenFiles != 20 ||
		pq.MaxFileBytes != 64<<20 || pq.MaxFileAge != 10*time.Minute || pq.MaxBufferBytes != 32<<20 ||
		pq.MaxValueBytes != 64<<10 || pq.UnknownFields != "reject" || pq.Prefix != "events" || pq.Path != "out/lake" {
		t.Errorf("parquet options: %+v", pq)
	}
	ar := sinks[1].Config.(*ArrowConfig)
	if ar.Path != "out/events.arrow" || ar.Compression != "lz4" || ar.BatchRows != 1000 || ar.Schema != nil || ar.MaxOpenFiles != 100 {
		t.Errorf("arrow options: %+v", ar)
	}
	if !sinks[0].Entry.ExactlyOnce || !sinks[1].Entry.ExactlyOnce {
		t.Error("parquet and arrow must be registered as exactly-once capable")
	}
}

func TestColumnarConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		sink string
		want string // the whole error, or its start
	}{
		{`parquet: {}`, `p.yaml:7:18: parquet: path is required`},
		{`parquet:`, `p.yaml:7:9: parquet: path is required`},
		{`parquet: { path: out, compression: lzo }`, `p.yaml:7:44: parquet: compression: "lzo" is not one of snappy, zstd, gzip, none`},
		{`parquet: { path: out, codec: zstd }`, `p.yaml:7:31: parquet: unknown key "codec" (want path, schema, partition_by, prefix, max_open_files, max_file_bytes, max_file_age, max_buffer_bytes, max_value_bytes, unknown_fields, compression, row_group_size, dictionary, page_buffer_size)`},
		{`parquet: { path: out, schema: { a: int } }`, `p.yaml:7:44: parquet: schema: column "a": type "int": unknown type "int"`},
		{`parquet: { path: out, schema: { a: "list<strin>" } }`, `p.yaml:7:50: parquet: schema: column "a": type "list<strin>": unknown type "strin"`},
		{`parquet: { path: out, schema: { a: 5 } }`, `p.yaml:7:44: parquet: schema: column "a": want a type`},
		{`parquet: { path: out, schema: [a, b] }`, `p.yaml:7:39: parquet: schema: want a mapping`},
		{`parquet: { path: out, schema: {} }`, `p.yaml:7:39: parquet: schema: want a mapping of column name to type, got an empty one`},
		{`parquet: { path: out, partition_by: "dt={{ date(ts }}" }`, `p.yaml:7:5`},
		{`parquet: { path: out, row_group_size: 0 }`, `p.yaml:7:47: parquet: row_group_size: want a whole number from 1 to`},
		{`parquet: { path: out, max_file_bytes: 12XB }`, `p.yaml:7:47: parquet: max_file_bytes: want a size such as`},
		{`parquet: { path: out, max_file_age: soon }`, `p.yaml:7:45: parquet: max_file_age: want a duration`},
		{`parquet: { path: out, dictionary: maybe }`, `p.yaml:7:43: parquet: dictionary: want true or false`},
		{`parquet: { path: out, dictionary: [a, [b]] }`, `p.yaml:7:47: parquet: dictionary: want true, false or a list of column names`},
		{`parquet: { path: out, schema: { a: string }, dictionary: [b] }`, `p.yaml:7:9: parquet: dictionary: "b" is not a column of the schema`},
		{`parquet: { path: out, unknown_fields: drop }`, `p.yaml:7:47: parquet: unknown_fields: "drop" is not one of ignore, reject`},
		{`parquet: { path: out, max_open_files: 0 }`, `p.yaml:7:47: parquet: max_open_files: want a whole number from 1 to 100000`},
		{`parquet: { path: "-" }`, `p.yaml:7:9: parquet: path "-" (standard output) is only for the arrow sink`},
		{`arrow: { path: out, compression: snappy }`, `p.yaml:7:42: arrow: compression: "snappy" is not one of none, lz4, zstd`},
		{`arrow: { path: "-", partition_by: "x={{ a }}" }`, `p.yaml:7:9: arrow: partition_by cannot be used with path "-"`},
		{`arrow: { path: out, prefix: "../x" }`, `p.yaml:7:9: arrow: prefix "../x": want a plain file name stem`},
	} {
		_, err := pipeline.Default.Load("p.yaml", []byte(pipelineYAML(tc.sink)))
		if err == nil {
			t.Errorf("%s: loaded, want %s", tc.sink, tc.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(tc.sink, "partition_by: \"dt") && !strings.Contains(err.Error(), `parquet: expression " date(ts ": unexpected token EOF`) {
			t.Errorf("%s:\n got %s\nwant %s", tc.sink, err, tc.want)
		}
	}
}

// The example pipeline of the issue, loaded from testdata and run through
// both sinks.
func TestColumnarExamplePipeline(t *testing.T) {
	yaml, err := os.ReadFile(filepath.Join("testdata", "columnar_pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pipeline.Default.Load("columnar_pipeline.yaml", yaml)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx := context.Background()
	spec := cfg.Pipelines[0]
	var all []string
	for i, c := range spec.Sinks {
		switch x := c.Config.(type) {
		case *ParquetConfig:
			x.Path = filepath.Join(dir, x.Path)
		case *ArrowConfig:
			x.Path = filepath.Join(dir, x.Path)
		}
		b := testBuild(filepath.Join(dir, ".weir", spec.Name, c.ID), spec.Guarantee)
		b.Component = spec.Name + "/" + c.ID
		b.Index = i
		sink, err := c.Config.(pipeline.SinkConfig).NewSink(b)
		if err != nil {
			t.Fatal(err)
		}
		s := sink.(*ColumnarSink)
		if err := s.Recover(ctx, nil); err != nil {
			t.Fatal(err)
		}
		good := jsonRec(t, `{"window_start":"2026-01-01T10:00:00.000Z","ts":"2026-01-01T10:00:00.250Z","level":"error","latency_ms":12.5,"status":503}`)
		if err := s.Check(good); err != nil {
			t.Fatalf("%s: %v", c.ID, err)
		}
		mustWrite(t, s, good)
		mustCommit(t, s, mustPreCommit(t, s, 1))
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	all = listFiles(t, filepath.Join(dir, "out"))
	if len(all) != 2 || !strings.HasPrefix(all[0], "events-0000000001-0000-") || !strings.HasPrefix(all[1], "lake/dt=2026-01-01/part-0000000001-0000-") {
		t.Errorf("output files %v", all)
	}
}

// `weir schema` describes both sinks: the example validates, and mistakes
// the loader refuses are refused by the schema too.
func TestColumnarJSONSchema(t *testing.T) {
	raw, err := json.Marshal(pipeline.Default.JSONSchema())
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
	schema, err := c.Compile("weir.schema.json")
	if err != nil {
		t.Fatalf("generated schema: %v", err)
	}
	validate := func(text string) error {
		j, err := yaml.YAMLToJSON([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		if err != nil {
			t.Fatal(err)
		}
		return schema.Validate(v)
	}
	example, err := os.ReadFile(filepath.Join("testdata", "columnar_pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(string(example)); err != nil {
		t.Errorf("the example is refused: %v", err)
	}
	full := pipelineYAML(`parquet: { path: out, schema: { a: "list<string>", b: { c: int64! } }, row_group_size: 10, dictionary: false,
                 max_file_bytes: 64MiB, max_file_age: 0, max_open_files: "${N:-5}", page_buffer_size: 1048576 }
      - arrow: { path: "-", compression: zstd, batch_rows: 10, unknown_fields: reject }`)
	if err := validate(full); err != nil {
		t.Errorf("a full configuration is refused: %v", err)
	}
	for _, bad := range []string{
		`parquet: { path: out, compression: lzo }`,
		`parquet: { path: out, codec: zstd }`,
		`parquet: { schema: { a: int64 } }`,
		`parquet: { path: out, schema: { a: 5 } }`,
		`arrow: { path: out, compression: snappy }`,
		`arrow: { path: out, unknown_fields: drop }`,
	} {
		if err := validate(pipelineYAML(bad)); err == nil {
			t.Errorf("schema accepts %s", bad)
		}
		if _, err := pipeline.Default.Load("p.yaml", []byte(pipelineYAML(bad))); err == nil {
			t.Errorf("loader accepts %s", bad)
		}
	}
}

// TestColumnarPathRefusesTemplates (issue 18, item 7): a {{ }} template in
// the path of a parquet or arrow sink used to make a directory named after
// the template's source. It is refused at its position, pointing to
// partition_by with the split that does what was meant; partition_by must
// stay inside the output directory.
func TestColumnarPathRefusesTemplates(t *testing.T) {
	const why = ` holds a {{ }} template, but path is the output directory, literal text: the sink names its part files itself (by checkpoint and task, so that commits are idempotent). Directories that vary per record go in partition_by`
	for _, tc := range []struct{ sink, want string }{
		{`parquet: { path: "out/s/{{ date(window_start) }}/p.parquet" }`,
			`p.yaml:7:26: parquet: path "out/s/{{ date(window_start) }}/p.parquet"` + why + `: path: out/s/p.parquet, partition_by: "{{ date(window_start) }}"`},
		{`arrow: { path: "out/{{ service }}/h={{ hour(ts) }}" }`,
			`p.yaml:7:24: arrow: path "out/{{ service }}/h={{ hour(ts) }}"` + why + `: path: out, partition_by: "{{ service }}/h={{ hour(ts) }}"`},
		{`parquet: { path: "/lake/{{ x }}/events.parquet" }`,
			`p.yaml:7:26: parquet: path "/lake/{{ x }}/events.parquet"` + why + `: path: /lake/events.parquet, partition_by: "{{ x }}"`},
		{`parquet: { path: "{{ x }}" }`, `p.yaml:7:26: parquet: path "{{ x }}"` + why + `: path: ., partition_by: "{{ x }}"`},
		{`parquet: { path: "out/{{ x }}.parquet" }`, `p.yaml:7:26: parquet: path "out/{{ x }}.parquet"` + why + `, such as partition_by: "dt={{ date(ts) }}"`},
		{`parquet: { path: out, partition_by: "../dt={{ date(ts) }}" }`,
			`p.yaml:7:45: parquet: partition_by: template "../dt={{ date(ts) }}": a path segment is ".."; the path must stay inside the output directory`},
		{`arrow: { path: out, partition_by: "/dt={{ date(ts) }}" }`,
			`p.yaml:7:43: arrow: partition_by: template "/dt={{ date(ts) }}": want a relative path, not one starting with "/"`},
		{`parquet: { path: out, partition_by: "dt={{ date(ts) }}//h={{ hour(ts) }}" }`,
			`p.yaml:7:45: parquet: partition_by: template "dt={{ date(ts) }}//h={{ hour(ts) }}": a path segment is empty ("//", or "/" at an end)`},
		{`parquet: { path: out, partition_by: ".dt={{ date(ts) }}" }`,
			`p.yaml:7:45: parquet: partition_by: template ".dt={{ date(ts) }}": the path segment ".dt={{ date(ts) }}" starts with a dot: hidden, so readers such as Spark, Hive and Trino skip it`},
	} {
		_, err := pipeline.Default.Load("p.yaml", []byte(pipelineYAML(tc.sink)))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.sink, err, tc.want)
		}
	}
	// The same checks hold for options built in Go.
	o := defaultColumnarOptions()
	o.Path = "out/{{ x }}"
	if err := o.validate(false); err == nil || !strings.Contains(err.Error(), `partition_by: "{{ x }}"`) {
		t.Errorf("validate of a templated path: %v", err)
	}
	o.Path, o.PartitionBy = "out", mustTemplate(t, "a/../../{{ x }}")
	if err := o.validate(false); err == nil || !strings.Contains(err.Error(), `a path segment is ".."`) {
		t.Errorf("validate of partition_by a/../../{{ x }}: %v", err)
	}
}
