package operators_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
	_ "github.com/weirhq/weir/sinks"
	"github.com/weirhq/weir/sources"
)

const repartitionConfig = `pipelines:
  - name: per-user
    sources:
      - kafka: { brokers: ["10.0.0.1:9092"], topics: [logs], group: ingest, session_timeout: 12s }
    operators:
      - parse: { format: json }
      - repartition: { topic: logs-by-user, key: user, partitions: 8 }
      - window: { tumbling: 1m, event_time: ts, group_by: [user], aggregate: { n: count() } }
      - repartition: { topic: by-region, key: region, group: regions }
      - window: { tumbling: 1h, event_time: window_start, group_by: [region], aggregate: { n: sum(n) } }
    sinks:
      - kafka: { brokers: ["10.0.0.2:9092"], topic: out, key: region }
    dead_letter:
      file: { path: out/dead.jsonl }
`

// The loader splits a pipeline at each repartition: the stages before one
// end in a kafka sink to its topic (and their dead letters go there too),
// the stage after it reads the topic in its own group with the key as
// partitioned_by, taking the connection of the first kafka source; the
// last stage keeps the name, the sinks and the dead-letter output.
func TestRepartitionSplitsThePipeline(t *testing.T) {
	cfg, err := pipeline.Default.Load("p.yaml", []byte(repartitionConfig))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range cfg.Pipelines {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "per-user.repartition0 per-user.repartition1 per-user" {
		t.Fatalf("pipelines %q", got)
	}
	first, second, last := cfg.Pipelines[0], cfg.Pipelines[1], cfg.Pipelines[2]
	if len(first.Operators) != 2 || first.Operators[1].Name != "repartition" || len(first.Sinks) != 1 || first.Sinks[0].Name != "kafka" {
		t.Fatalf("first stage: %d operators, sinks %v", len(first.Operators), first.Sinks)
	}
	if first.DeadLetter == nil || first.DeadLetter.Name != "kafka" || last.DeadLetter == nil || last.DeadLetter.Name != "file" {
		t.Fatalf("dead letters: first %v, last %v", first.DeadLetter, last.DeadLetter)
	}
	src := second.Sources[0].Config.(*sources.KafkaConfig)
	if src.Topics[0] != "logs-by-user" || src.Group != "weir-per-user-logs-by-user" || src.PartitionedBy() != "user" ||
		!src.Repartitioned || src.Brokers[0] != "10.0.0.1:9092" || src.SessionTimeout.Seconds() != 12 || src.StartAt != "earliest" {
		t.Fatalf("second stage's source: %+v", src)
	}
	if ops := second.Operators; len(ops) != 3 || ops[0].Name != "parse" || ops[1].Name != "window" || ops[2].Name != "repartition" {
		t.Fatalf("second stage's operators: %v", ops)
	}
	if src := last.Sources[0].Config.(*sources.KafkaConfig); src.Group != "regions" || src.PartitionedBy() != "region" {
		t.Fatalf("last stage's source: %+v", src)
	}
	if len(last.Sinks) != 1 || last.Sinks[0].ID != "sinks[0]/kafka" {
		t.Fatalf("last stage's sinks: %v", last.Sinks)
	}
	for i, want := range []string{"ts", "window_start"} {
		rc := cfg.Pipelines[i].Operators[len(cfg.Pipelines[i].Operators)-1].Config.(*operators.RepartitionConfig)
		if rc.EventTime == nil || rc.EventTime.Source != want {
			t.Errorf("repartition %d reports progress in %v, want the event_time of the window after it, %s", i, rc.EventTime, want)
		}
	}
	if w := last.AsWritten(); len(w.Operators) != 5 || len(w.Sources) != 1 || w.Sources[0].Name != "kafka" {
		t.Fatalf("as written: %d operators", len(w.Operators))
	}
}

// What a repartition cannot work with is refused at load, with its
// position.
func TestRepartitionConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, config, want string }{
		{"no brokers", `pipelines:
  - name: p
    sources:
      - stdin: {}
    operators:
      - parse: { format: json }
      - repartition: { topic: t, key: user }
    sinks:
      - stdout: {}
    guarantee: at_least_once
`, "p.yaml:7:9: pipeline \"p\": operators[1]/repartition: brokers is required"},
		{"no key", `pipelines:
  - name: p
    sources:
      - stdin: {}
    operators:
      - repartition: { topic: t, brokers: ["h:1"] }
    sinks:
      - stdout: {}
`, "p.yaml:6:9: repartition: key is required"},
		{"not aligned after it", `pipelines:
  - name: p
    sources:
      - kafka: { brokers: ["h:1"], topics: [logs], group: g }
    operators:
      - parse: { format: json }
      - repartition: { topic: t, key: user }
      - window: { tumbling: 1m, event_time: ts, group_by: [host], aggregate: { n: count() } }
    sinks:
      - kafka: { brokers: ["h:1"], topic: out }
`, "not aligned with the partitions (partitioned_by: user)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pipeline.Default.Load("p.yaml", []byte(tc.config))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// The operator at the end of a first stage tags every record with its
// upstream split, and writes each split's announcement and progress (its
// largest event time so far) to every partition.
func TestRepartitionOperator(t *testing.T) {
	c, err := pipeline.Default.Load("p.yaml", []byte(`pipelines:
  - name: p
    sources:
      - kafka: { brokers: ["h:1"], topics: [logs], group: g }
    operators:
      - repartition: { topic: t, key: user, partitions: 3, event_time: ts }
    sinks:
      - stdout: {}
    guarantee: at_least_once
`))
	if err != nil {
		t.Fatal(err)
	}
	rc := c.Pipelines[0].Operators[0]
	op, err := rc.Config.(pipeline.OperatorConfig).NewOperator(pipeline.Build{Component: rc.ID})
	if err != nil {
		t.Fatal(err)
	}
	b := &pipeline.Batch{Records: []*pipeline.Record{
		{Source: 0, Split: "logs/1", Value: []byte(`{"ts":"2026-12-03T10:00:05Z"}`)},
		{Source: 0, Split: "logs/2", Value: []byte(`{"ts":"2026-12-03T10:00:09Z"}`), Headers: []pipeline.Header{{Key: "trace", Value: []byte("x")}}},
		{Source: 0, Split: "logs/1", Value: []byte(`{"ts":"2026-12-03T10:00:01Z"}`)},
	}}
	for _, r := range b.Records {
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := op.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"0:logs/1", "0:logs/2", "0:logs/1"} {
		hs := b.Records[i].Headers
		if h := hs[len(hs)-1]; h.Key != pipeline.RepartitionSplitHeader || string(h.Value) != want {
			t.Errorf("record %d: last header %s=%s, want %s=%s", i, h.Key, h.Value, pipeline.RepartitionSplitHeader, want)
		}
	}
	if len(b.Records[1].Headers) != 2 || b.Records[1].Headers[0].Key != "trace" {
		t.Errorf("a record's own headers are kept: %v", b.Records[1].Headers)
	}
	out := &pipeline.Batch{}
	if _, err := op.(pipeline.SplitHandler).OnSplits(context.Background(), 0, pipeline.SplitChange{Added: []string{"logs/0"}}, out); err != nil {
		t.Fatal(err)
	}
	if err := op.(pipeline.Ticker).Tick(context.Background(), time.Now(), out); err != nil {
		t.Fatal(err)
	}
	if err := op.(pipeline.Ticker).Tick(context.Background(), time.Now(), out); err != nil {
		t.Fatal(err)
	}
	// 3 announcements of logs/0, then the progress of logs/1 (ts 10:00:05)
	// and logs/2 (10:00:09) to each partition; the second tick has nothing
	// new to say.
	want := []struct{ event, split, at string }{}
	for range 3 {
		want = append(want, struct{ event, split, at string }{pipeline.RepartitionAdded, "0:logs/0", ""})
	}
	for _, sp := range []struct{ split, at string }{{"0:logs/1", "10:00:05"}, {"0:logs/2", "10:00:09"}} {
		for range 3 {
			want = append(want, struct{ event, split, at string }{pipeline.RepartitionProgress, sp.split, sp.at})
		}
	}
	if len(out.Records) != len(want) {
		t.Fatalf("%d control records, want %d", len(out.Records), len(want))
	}
	for i, r := range out.Records {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		at := ""
		if ns, err := strconv.ParseInt(h[pipeline.RepartitionTimeHeader], 10, 64); err == nil {
			at = time.Unix(0, ns).UTC().Format(time.TimeOnly)
		}
		w := want[i]
		if r.Get(pipeline.RepartitionPartitionField) != int64(i%3) || h[pipeline.RepartitionControlHeader] != w.event || h[pipeline.RepartitionSplitHeader] != w.split || at != w.at {
			t.Errorf("control record %d: partition %v, headers %v; want partition %d, %s of %s at %q", i, r.Get(pipeline.RepartitionPartitionField), h, i%3, w.event, w.split, w.at)
		}
	}
}
