package pipeline

import (
	"strings"
	"testing"
	"time"
)

type tTLS struct {
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
}

type TConnOptions struct {
	Timeout time.Duration `yaml:"connect_timeout"`
	TLS     *tTLS         `yaml:"tls"`
}

type tNetSourceConfig struct {
	URL          string   `yaml:"url"`
	Topics       []string `yaml:"topics"`
	QoS          int      `yaml:"qos"`
	Durable      bool     `yaml:"durable"`
	TConnOptions `yaml:",inline"`
}

func (c *tNetSourceConfig) NewSource(Build) (Source, error) { return nil, nil }

func decodeRegistry() *Registry {
	r := testRegistry()
	r.Register(Entry{Kind: KindSource, Name: "net", NewConfig: func() any { return &tNetSourceConfig{} }})
	return r
}

func netYAML(opts string) string {
	return "pipelines:\n  - name: a\n    sinks: [{commit: {path: o}}]\n    sources:\n      - net:\n" + opts
}

// Option values of the wrong type are named by their YAML key, with what
// was expected and what was written, at the value.
func TestDecodeErrorsNameTheOption(t *testing.T) {
	cases := []struct{ opts, want string }{
		{"          connect_timeout: 5\n", "p.yaml:6:28: connect_timeout: want a duration such as 5s or 250ms, got the number 5"},
		{"          connect_timeout: 2.5\n", "p.yaml:6:28: connect_timeout: want a duration such as 5s or 250ms, got the number 2.5"},
		{"          qos: high\n", `p.yaml:6:16: qos: want a whole number, got "high"`},
		{"          durable: sometimes\n", `p.yaml:6:20: durable: want true or false, got "sometimes"`},
		{"          topics: {a: 1}\n", "p.yaml:6:19: topics: want a list, got a mapping"},
		{"          tls: {server_name: [a]}\n", "p.yaml:6:30: tls.server_name: want a string, got a list"},
		{"          pathz: [a]\n", `p.yaml:6:11: unknown field "pathz" (net takes url, topics, qos, durable, connect_timeout, tls)`},
		{"          topicz: [a]\n", `unknown field "topicz" (net takes url, topics, qos, durable, connect_timeout, tls); did you mean topics?`},
		{"          tls: {ca_fil: x}\n", `p.yaml:6:17: unknown field "ca_fil" (net tls takes ca_file, server_name); did you mean ca_file?`},
	}
	for _, c := range cases {
		_, err := decodeRegistry().Load("p.yaml", []byte(netYAML(c.opts)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s  got  %v\n  want %s", c.opts, err, c.want)
		}
	}
}

// One string where a list is expected is a list of one.
func TestDecodeStringAsListOfOne(t *testing.T) {
	cfg, err := decodeRegistry().Load("p.yaml", []byte(netYAML("          topics: \"logs.>\"\n          url: x\n"+
		"    operators: []\n  - name: b\n    sinks: [{commit: {path: o2}}]\n    sources: [{src: {paths: a.log}}]\n")))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Pipelines[0].Sources[0].Config.(*tNetSourceConfig).Topics; len(got) != 1 || got[0] != "logs.>" {
		t.Errorf("topics = %q", got)
	}
	if got := cfg.Pipelines[1].Sources[0].Config.(*tSourceConfig).Paths; len(got) != 1 || got[0] != "a.log" {
		t.Errorf("paths = %q", got)
	}
}
