package pipeline

import (
	"errors"
	"strings"
	"testing"
	"time"

	yamlast "github.com/goccy/go-yaml/ast"
)

type tSourceConfig struct {
	Paths []string      `yaml:"paths"`
	Every time.Duration `yaml:"every"`
}

func (c *tSourceConfig) NewSource(Build) (Source, error) { return nil, nil }
func (c *tSourceConfig) Validate() error {
	if len(c.Paths) == 0 {
		return errors.New("paths: at least one path is required")
	}
	return nil
}

type tSinkConfig struct {
	Path *Template `yaml:"path"`
}

func (c *tSinkConfig) NewSink(Build) (Sink, error) { return nil, nil }

type tFilterConfig struct{ E Expr }

func (c *tFilterConfig) UnmarshalYAML(n yamlast.Node) error  { return c.E.UnmarshalYAML(n) }
func (c *tFilterConfig) NewOperator(Build) (Operator, error) { return nil, nil }

func testRegistry() *Registry {
	r := NewRegistry()
	r.Register(Entry{Kind: KindSource, Name: "src", NewConfig: func() any { return &tSourceConfig{} }})
	r.Register(Entry{Kind: KindSink, Name: "commit", ExactlyOnce: true, NewConfig: func() any { return &tSinkConfig{} }})
	r.Register(Entry{Kind: KindSink, Name: "print", NewConfig: func() any { return &tSinkConfig{} }})
	r.Register(Entry{Kind: KindOperator, Name: "filter", NewConfig: func() any { return &tFilterConfig{} }})
	return r
}

const validConfig = `data_dir: /tmp/x
pipelines:
  - name: app
    checkpoint_interval: 250ms
    sources:
      - src: { paths: [a.log], every: 2s }
    operators:
      - filter: 'level == "error"'
    sinks:
      - commit: { path: "out/{{ date(ts) }}.jsonl" }
`

func TestLoadValid(t *testing.T) {
	cfg, err := testRegistry().Load("p.yaml", []byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pipelines[0]
	if cfg.DataDir != "/tmp/x" || p.Name != "app" || p.Guarantee != ExactlyOnce || p.CheckpointInterval != 250*time.Millisecond {
		t.Fatalf("got %+v / %+v", cfg, p)
	}
	src := p.Sources[0].Config.(*tSourceConfig)
	if src.Paths[0] != "a.log" || src.Every != 2*time.Second {
		t.Fatalf("source config = %+v", src)
	}
	if p.Sources[0].ID != "sources[0]/src" || p.Sources[0].Pos.String() != "p.yaml:6:9" {
		t.Fatalf("source id/pos = %s %s", p.Sources[0].ID, p.Sources[0].Pos)
	}
	f := p.Operators[0].Config.(*tFilterConfig)
	if f.E.Source != `level == "error"` || len(f.E.Vars()) != 1 || f.E.Vars()[0] != "level" {
		t.Fatalf("filter = %q vars %v", f.E.Source, f.E.Vars())
	}
}

// Every config error names file:line:column and what was expected.
func TestLoadErrorsHavePositions(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // substrings, in order, one per expected error
	}{
		{"unknown top key", "pipelinez: []\n", []string{"p.yaml:1:1: unknown key \"pipelinez\""}},
		{"unknown pipeline key", `pipelines:
  - name: a
    sorces: []
    sources: [{src: {paths: [x]}}]
    sinks: [{commit: {path: o}}]
`, []string{`p.yaml:3:5: pipeline: unknown key "sorces"`}},
		{"unknown component", `pipelines:
  - name: a
    sources: [{flie: {paths: [x]}}]
    sinks: [{commit: {path: o}}]
`, []string{`p.yaml:3:16: sources[0]: unknown source "flie" (known: src)`}},
		{"unknown option", `pipelines:
  - name: a
    sources:
      - src:
          paths: [x]
          folow: true
    sinks: [{commit: {path: o}}]
`, []string{`p.yaml:6:11: unknown field "folow"`}},
		{"wrong type", `pipelines:
  - name: a
    sources:
      - src: { paths: [x], every: soon }
    sinks: [{commit: {path: o}}]
`, []string{`p.yaml:4:`, `soon`}},
		{"validate error", `pipelines:
  - name: a
    sources:
      - src: { every: 1s }
    sinks: [{commit: {path: o}}]
`, []string{`p.yaml:4:9: src: paths: at least one path is required`}},
		{"bad expression", `pipelines:
  - name: a
    sources: [{src: {paths: [x]}}]
    operators:
      - filter: 'level ==== 1'
    sinks: [{commit: {path: o}}]
`, []string{`p.yaml:5:`, `expression "level ==== 1"`}},
		{"bad template", `pipelines:
  - name: a
    sources: [{src: {paths: [x]}}]
    sinks: [{commit: {path: "out/{{ ts"}}]
`, []string{`p.yaml:4:`, `unclosed {{`}},
		{"duplicate pipeline", `pipelines:
  - name: a
    sources: [{src: {paths: [x]}}]
    sinks: [{commit: {path: o}}]
  - name: a
    sources: [{src: {paths: [x]}}]
    sinks: [{commit: {path: o}}]
`, []string{`p.yaml:5:11: duplicate pipeline name "a" (first at p.yaml:2:11)`}},
		{"bad name and guarantee, all listed", `pipelines:
  - name: App
    guarantee: twice
    sources: [{src: {paths: [x]}}]
    sinks: [{commit: {path: o}}]
`, []string{`p.yaml:3:16: guarantee: "twice" is not one of`, `p.yaml:2:11: pipeline name "App"`}},
		{"missing name, sources and sinks", `pipelines:
  - guarantee: at_least_once
`, []string{`missing ` + "`name:`", `needs at least one source`, `needs at least one sink`}},
		{"exactly once into a sink that cannot commit", `pipelines:
  - name: a
    sources: [{src: {paths: [x]}}]
    sinks:
      - print: {path: o}
`, []string{`p.yaml:5:9: pipeline "a": sink "print" cannot commit idempotently`, "guarantee: at_least_once"}},
		{"yaml syntax", "pipelines:\n  - name: a\n   bad: [\n", []string{"p.yaml:"}},
		{"nested mapping on one line", "pipelines:\n  - name: a\n    operators:\n      - filter: level: 1\n", []string{"p.yaml:4:", "must be quoted"}},
		{"unquoted ternary that is no expression", "pipelines:\n  - name: a\n    operators:\n      - filter: x ? 1 : 0)\n", []string{"p.yaml:4:", "must be quoted"}},
		{"unset variable", "data_dir: ${WEIR_TEST_SURELY_UNSET}\npipelines: []\n", []string{"p.yaml:1:11: environment variable WEIR_TEST_SURELY_UNSET is not set"}},
		{"empty", "", []string{"p.yaml:1:1: empty configuration"}},
		{"two components in one item", `pipelines:
  - name: a
    sources:
      - src: {paths: [x]}
        commit: {path: o}
    sinks: [{commit: {path: o}}]
`, []string{"p.yaml:4:9: sources[0]: expected one source"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testRegistry().Load("p.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("loaded without error")
			}
			var ce ConfigErrors
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not ConfigErrors: %v", err, err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
		})
	}
}

func TestInterpolate(t *testing.T) {
	env := map[string]string{"IN": "logs.jsonl", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cases := []struct{ in, want string }{
		{"path: ${IN}", "path: logs.jsonl"},
		{"g: ${G:-exactly_once}", "g: exactly_once"},
		{"g: ${EMPTY:-dflt}", "g: dflt"},
		{"g: ${EMPTY}", "g: "},
		{"cost: $$5 ${IN}", "cost: $5 logs.jsonl"},
		{"no vars $ here", "no vars $ here"},
	}
	for _, c := range cases {
		got, err := Interpolate("f", c.in, lookup)
		if err != nil || got != c.want {
			t.Errorf("Interpolate(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	_, err := Interpolate("f", "a: 1\nb: x ${NOPE}\nc: ${bad-name}", lookup)
	if err == nil || !strings.Contains(err.Error(), "f:2:6: environment variable NOPE is not set") ||
		!strings.Contains(err.Error(), "f:3:4:") {
		t.Fatalf("errors = %v", err)
	}
}

// FuzzLoad: no input makes the loader panic; it either loads or returns
// positioned ConfigErrors.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(validConfig))
	f.Add([]byte("pipelines:\n  - name: a\n    sources: [{src: {paths: [x]}}]\n    sinks: [{commit: {path: o}}]\n"))
	f.Add([]byte("pipelines: [{name: a, sources: [{src: }], sinks: {}}]"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("${"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := testRegistry().Load("f.yaml", data)
		if err == nil {
			return
		}
		var ce ConfigErrors
		if !errors.As(err, &ce) || len(ce) == 0 {
			t.Fatalf("error is not ConfigErrors: %T %v", err, err)
		}
	})
}

// An unquoted ternary is not YAML, but what it means is plain: weir reads
// it as the quoted expression and warns with the line and the fix.
func TestLoadReadsUnquotedTernaryAsExpression(t *testing.T) {
	yaml := `pipelines:
  - name: a
    sources: [{src: {paths: [x]}}]
    operators:
      - filter: status >= 500 ? true : false   # errors only
      - filter: name == 'x' ? true : false
    sinks: [{commit: {path: o}}]
`
	cfg, err := testRegistry().Load("p.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ops := cfg.Pipelines[0].Operators
	for i, want := range []string{"status >= 500 ? true : false", "name == 'x' ? true : false"} {
		if got := ops[i].Config.(*tFilterConfig).E.Source; got != want {
			t.Errorf("operator %d reads %q, want %q", i, got, want)
		}
	}
	if len(cfg.Warnings) != 2 {
		t.Fatalf("warnings = %v, want 2", cfg.Warnings)
	}
	for i, want := range []string{"p.yaml:5:17: ", "p.yaml:6:17: "} {
		if got := cfg.Warnings[i].Error(); !strings.HasPrefix(got, want) || !strings.Contains(got, "must be quoted") {
			t.Errorf("warning %d = %q, want it at %s", i, got, want)
		}
	}
	if !strings.Contains(cfg.Warnings[1].Msg, `'name == ''x'' ? true : false'`) {
		t.Errorf("warning does not name the quoted form: %s", cfg.Warnings[1].Msg)
	}
	if _, err := testRegistry().Load("p.yaml", []byte(validConfig)); err != nil {
		t.Fatal(err)
	}
}
