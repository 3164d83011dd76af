package sources

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// dedupe_window decodes on every source with message ids, with its
// default when absent, and validate refuses a bad value at its line and
// column, saying what is wanted.
func TestDedupeWindowFromYAML(t *testing.T) {
	reg := pipeline.Default.Clone()
	reg.Register(pipeline.Entry{Kind: pipeline.KindSink, Name: "amqp_test_null", ExactlyOnce: true, NewConfig: func() any { return &amqpTestNullSink{} }})
	load := func(source string) (*pipeline.Config, error) {
		return reg.Load("p.yaml", []byte("pipelines:\n  - name: p\n    sources:\n      - "+source+"\n    sinks: [ { amqp_test_null: {} } ]\n"))
	}
	srcs := map[string]string{
		"mqtt": `mqtt: { url: "tcp://h:1883", topics: [a], id_property: id%s }`,
		"amqp": `amqp: { url: "amqp://h/", queue: q%s }`,
		"nats": `nats: { url: "nats://h:4222", stream: S, subject: "s.>", durable: d%s }`,
	}
	for kind, src := range srcs {
		cfg, err := load(strings.Replace(src, "%s", "", 1))
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		w := cfg.Pipelines[0].Sources[0].Config.(pipeline.DedupeWindower).SeenIDWindow()
		if w != (pipeline.DedupeWindow{Count: 131072}) {
			t.Errorf("%s: default window %+v, want count 131072 and no age", kind, w)
		}
		cfg, err = load(strings.Replace(src, "%s", ", dedupe_window: {count: 5000, age: 10m}", 1))
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		w = cfg.Pipelines[0].Sources[0].Config.(pipeline.DedupeWindower).SeenIDWindow()
		if w != (pipeline.DedupeWindow{Count: 5000, Age: 10 * time.Minute}) {
			t.Errorf("%s: window %+v, want count 5000, age 10m", kind, w)
		}
		for _, bad := range []struct{ option, where, want string }{
			{"{count: 0}", "count: 0", "count: want a whole number of message ids from 1 to 16777216"},
			{"{count: many}", "count: many", "count: want a whole number"},
			{"{count: 99999999999}", "count: 99999999999", "count: want a whole number"},
			{"{age: -1m}", "age: -1m", "age: want a duration such as 10m"},
			{"{age: soon}", "age: soon", "age: want a duration"},
			{"{size: 10}", "size: 10", `unknown key "size" (want count, age)`},
			{"10m", "10m", "expected a mapping"},
		} {
			line := strings.Replace(src, "%s", ", dedupe_window: "+bad.option, 1)
			_, err := load(line)
			// The problem's column: the value's, or the key's for an unknown key.
			col := strings.Index(line, bad.where) + len("      - ") + 1
			if !strings.HasPrefix(bad.where, "size") && bad.where != "10m" {
				col += strings.Index(bad.where, ": ") + 2
			}
			at := "p.yaml:4:" + strconv.Itoa(col) + ": "
			if err == nil || !strings.Contains(err.Error(), at) || !strings.Contains(err.Error(), "dedupe_window: "+bad.want) {
				t.Errorf("%s with dedupe_window: %s: got %v, want %q at %s", kind, bad.option, err, bad.want, at)
			}
		}
	}
}
