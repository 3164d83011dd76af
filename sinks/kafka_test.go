package sinks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkatest"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/sinks"
	_ "github.com/weirhq/weir/sources"
)

type kafkaSinkOpts struct {
	topic, key string
	headers    map[string]string
	guarantee  pipeline.Guarantee
	dir        string
}

func newKafkaSink(t *testing.T, c *kafkatest.Cluster, o kafkaSinkOpts) *sinks.KafkaSink {
	t.Helper()
	cfg := sinks.NewKafkaConfig()
	cfg.Brokers = c.Brokers
	var err error
	if cfg.Topic, err = pipeline.CompileTemplate(o.topic, pipeline.Pos{}); err != nil {
		t.Fatal(err)
	}
	if o.key != "" {
		cfg.Key = pipeline.MustCompileExpr(o.key)
	}
	if len(o.headers) > 0 {
		cfg.Headers = map[string]*pipeline.Expr{}
		for k, v := range o.headers {
			cfg.Headers[k] = pipeline.MustCompileExpr(v)
		}
	}
	if o.guarantee == "" {
		o.guarantee = pipeline.ExactlyOnce
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	sk, err := cfg.NewSink(pipeline.Build{Pipeline: "t", Component: "t/sinks[0]/kafka", Guarantee: o.guarantee, Dir: o.dir})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { sk.Close(context.Background()) })
	return sk.(*sinks.KafkaSink)
}

// batchOf makes parsed records {"i": from..from+n-1, "service": "svc<i%3>"}.
func batchOf(t *testing.T, from, n int) *pipeline.Batch {
	t.Helper()
	b := &pipeline.Batch{}
	for i := from; i < from+n; i++ {
		r := &pipeline.Record{Value: fmt.Appendf(nil, `{"i":%d,"service":"svc%d"}`, i, i%3)}
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			t.Fatal(err)
		}
		b.Records = append(b.Records, r)
	}
	return b
}

// exactlyOnce checks recs hold {"i": 0..n-1} each exactly once.
func exactlyOnce(t *testing.T, recs []*kgo.Record, n int) {
	t.Helper()
	seen := make([]int, n)
	for _, r := range recs {
		var v struct{ I int }
		if err := json.Unmarshal(r.Value, &v); err != nil || v.I < 0 || v.I >= n {
			t.Fatalf("unexpected record %s (%v)", r.Value, err)
		}
		seen[v.I]++
	}
	lost, dup := 0, 0
	for _, c := range seen {
		switch {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	if lost != 0 || dup != 0 {
		t.Fatalf("%d records: %d lost, %d duplicated (want 0 and 0)", len(recs), lost, dup)
	}
}

func TestKafkaSinkTwoPhaseCommit(t *testing.T) {
	ctx := context.Background()
	c := kafkatest.New(t)
	topic := c.Topic(t, 3)
	sk := newKafkaSink(t, c, kafkaSinkOpts{topic: topic, key: "service"})
	if err := sk.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	out := c.NewReader(t, topic)
	if err := sk.Write(ctx, batchOf(t, 0, 500)); err != nil {
		t.Fatal(err)
	}
	tok, err := sk.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(out.Settle(300 * time.Millisecond)); n != 0 {
		t.Fatalf("%d records visible before Commit, want 0", n)
	}
	if err := sk.Commit(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := sk.Commit(ctx, tok); err != nil { // a second commit changes nothing
		t.Fatal(err)
	}
	recs := out.WaitFor(t, 500, 10*time.Second)
	exactlyOnce(t, recs, 500)
	for _, r := range recs {
		var v struct{ Service string }
		json.Unmarshal(r.Value, &v)
		if string(r.Key) != v.Service {
			t.Fatalf("key %q, want the service %q", r.Key, v.Service)
		}
	}
	// An empty checkpoint commits nothing and fails nothing.
	tok2, err := sk.PreCommit(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := sk.Commit(ctx, tok2); err != nil {
		t.Fatal(err)
	}
}

// The process dies after PreCommit (the checkpoint is durable) and before
// Commit; a new process recovers the token: the records appear once. A
// second recovery of the same token (a crash right after the first) adds
// nothing. Records written after the last PreCommit never appear.
func TestKafkaSinkRecover(t *testing.T) {
	ctx := context.Background()
	c := kafkatest.New(t)
	topic := c.Topic(t, 2)
	dir := t.TempDir()
	out := c.NewReader(t, topic)

	sk := newKafkaSink(t, c, kafkaSinkOpts{topic: topic, dir: dir})
	if err := sk.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	sk.Write(ctx, batchOf(t, 0, 300))
	tok1, err := sk.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	sk.Write(ctx, batchOf(t, 1000, 50)) // after the last PreCommit: must never be visible
	sk.Close(ctx)                       // crash: Commit never ran

	for restart := range 2 {
		sk2 := newKafkaSink(t, c, kafkaSinkOpts{topic: topic, dir: dir})
		if err := sk2.Recover(ctx, tok1); err != nil {
			t.Fatalf("restart %d: Recover: %v", restart, err)
		}
		sk2.Close(ctx)
	}
	recs := out.WaitFor(t, 300, 10*time.Second)
	exactlyOnce(t, recs, 300)

	// The staging directory holds nothing once recovered.
	left, _ := filepath.Glob(filepath.Join(dir, "staging", "*"))
	if len(left) != 0 {
		t.Fatalf("staging files left after recovery: %v", left)
	}
}

// Commit landed, then the process died before the checkpoint after it:
// recovery re-commits the same token, and the marker makes it a no-op.
func TestKafkaSinkRecoverAfterCommit(t *testing.T) {
	ctx := context.Background()
	c := kafkatest.New(t)
	topic := c.Topic(t, 1)
	dir := t.TempDir()
	sk := newKafkaSink(t, c, kafkaSinkOpts{topic: topic, dir: dir})
	if err := sk.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	sk.Write(ctx, batchOf(t, 0, 100))
	tok, _ := sk.PreCommit(ctx, 7)
	// Keep a copy of the staging file, as if the crash came before the
	// committed file was deleted.
	stage := stagingFiles(t, dir)
	if err := sk.Commit(ctx, tok); err != nil {
		t.Fatal(err)
	}
	sk.Close(ctx)
	restoreFiles(t, stage)

	sk2 := newKafkaSink(t, c, kafkaSinkOpts{topic: topic, dir: dir})
	if err := sk2.Recover(ctx, tok); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, c.ReadCommitted(t, topic, 100), 100)
}

func stagingFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "staging", "*.stage"))
	if len(files) == 0 {
		t.Fatal("no staging file after PreCommit")
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = data
	}
	return out
}

func restoreFiles(t *testing.T, files map[string][]byte) {
	t.Helper()
	for f, data := range files {
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A damaged staging file is refused, never produced from.
func TestKafkaSinkDamagedStaging(t *testing.T) {
	ctx := context.Background()
	c := kafkatest.New(t)
	topic := c.Topic(t, 1)
	dir := t.TempDir()
	sk := newKafkaSink(t, c, kafkaSinkOpts{topic: topic, dir: dir})
	sk.Recover(ctx, nil)
	sk.Write(ctx, batchOf(t, 0, 20))
	tok, _ := sk.PreCommit(ctx, 1)
	sk.Close(ctx)
	for f, data := range stagingFiles(t, dir) {
		data[len(data)-3] ^= 0xff
		os.WriteFile(f, data, 0o644)
	}
	sk2 := newKafkaSink(t, c, kafkaSinkOpts{topic: topic, dir: dir})
	err := sk2.Recover(ctx, tok)
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Recover of a damaged staging file: %v, want a 'damaged' error", err)
	}
	out := c.NewReader(t, topic)
	if n := len(out.Settle(300 * time.Millisecond)); n != 0 {
		t.Fatalf("%d records visible from a damaged staging file", n)
	}
}

func TestKafkaSinkTemplatesAndHeaders(t *testing.T) {
	ctx := context.Background()
	c := kafkatest.New(t)
	prefix := kafkatest.Name("weir-tpl")
	for i := range 3 {
		if _, err := c.Admin.CreateTopic(ctx, 1, -1, nil, fmt.Sprintf("%s-svc%d", prefix, i)); err != nil {
			t.Fatal(err)
		}
	}
	sk := newKafkaSink(t, c, kafkaSinkOpts{topic: prefix + "-{{ service }}", key: "i",
		headers: map[string]string{"origin": `"weir"`, "svc": "service"}})
	sk.Recover(ctx, nil)
	b := batchOf(t, 0, 30)
	for _, r := range b.Records {
		if err := sk.Check(r); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	sk.Write(ctx, b)
	tok, _ := sk.PreCommit(ctx, 1)
	if err := sk.Commit(ctx, tok); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		recs := c.ReadCommitted(t, fmt.Sprintf("%s-svc%d", prefix, i), 10)
		if len(recs) != 10 {
			t.Fatalf("svc%d: %d records, want 10", i, len(recs))
		}
		for _, r := range recs {
			h := map[string]string{}
			for _, kv := range r.Headers {
				h[kv.Key] = string(kv.Value)
			}
			if h["origin"] != "weir" || h["svc"] != fmt.Sprintf("svc%d", i) {
				t.Fatalf("headers %v", h)
			}
			var v struct{ I int }
			json.Unmarshal(r.Value, &v)
			if string(r.Key) != fmt.Sprint(v.I) {
				t.Fatalf("key %q, want %d", r.Key, v.I)
			}
		}
	}
	// A record whose topic does not exist (here: no service, so the topic
	// renders to "<prefix>-") is refused by Check (the runtime
	// dead-letters it) instead of failing the pipeline.
	bad := &pipeline.Record{Value: []byte(`{"i":1}`)}
	bad.SetFields().ParseJSONObject(bad.Value)
	if err := sk.Check(bad); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Check of a record without service: %v, want: topic does not exist", err)
	}
}

func TestKafkaSinkAtLeastOnce(t *testing.T) {
	ctx := context.Background()
	c := kafkatest.New(t)
	topic := c.Topic(t, 2)
	sk := newKafkaSink(t, c, kafkaSinkOpts{topic: topic, guarantee: pipeline.AtLeastOnce})
	if err := sk.Write(ctx, batchOf(t, 0, 200)); err != nil {
		t.Fatal(err)
	}
	if err := sk.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, c.ReadCommitted(t, topic, 200), 200)
}

func TestKafkaSinkConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`{brokers: ["x:1"]}`, "topic is required"},
		{`{brokers: ["x:1"], topic: "a b"}`, "not a valid topic name"},
		{`{brokers: ["x:1"], topic: t, compression: brotli}`, "compression"},
		{`{brokers: ["x:1"], topic: "{{ a +"}`, "template"},
		{`{brokers: ["x:1"], topic: "{{ a + }}"}`, "expression"},
		{`{topic: t}`, "brokers is required"},
		{`{brokers: ["x:1"], topic: t, sasl: {mechanism: scram-sha-256, username: u}}`, "password"},
	} {
		_, err := pipeline.Default.Load("t.yaml", []byte("pipelines:\n  - name: p\n    sources:\n      - file: {paths: [x]}\n    sinks:\n      - kafka: "+tc.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// The Kafka examples load and validate (they need no broker to load).
func TestKafkaExamplesLoad(t *testing.T) {
	for _, f := range []string{"../examples/kafka-scaleout/pipelines.yaml", "../examples/kafka-repartition/pipelines.yaml"} {
		if _, err := pipeline.Default.LoadFile(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// `partition` places records explicitly (under both guarantees; the
// exactly_once staging file carries it), records whose expression gives
// null go by key, a partition the topic lacks is refused by Check (a dead
// letter), no internal header reaches the topic, and `create_topic`
// creates a missing topic with its partition count and refuses an
// existing one whose count differs.
func TestKafkaSinkPartitionAndCreateTopic(t *testing.T) {
	ctx := context.Background()
	c := kafkatest.New(t)
	for _, g := range []pipeline.Guarantee{pipeline.ExactlyOnce, pipeline.AtLeastOnce} {
		t.Run(string(g), func(t *testing.T) {
			topic := kafkatest.Name("weir-part")
			cfg := sinks.NewKafkaConfig()
			cfg.Brokers = c.Brokers
			cfg.Topic, _ = pipeline.CompileTemplate(topic, pipeline.Pos{})
			cfg.Partition = pipeline.MustCompileExpr(`i < 20 ? i % 4 : nil`)
			cfg.CreateTopic = &sinks.KafkaCreateTopic{Partitions: 4}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			sk, err := cfg.NewSink(pipeline.Build{Pipeline: "t", Component: "t/sinks[0]/kafka", Guarantee: g, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer sk.Close(ctx)
			s := sk.(*sinks.KafkaSink)
			if g == pipeline.ExactlyOnce {
				if err := s.Recover(ctx, nil); err != nil {
					t.Fatal(err)
				}
			}
			b := batchOf(t, 0, 30)
			for _, r := range b.Records {
				if err := s.Check(r); err != nil {
					t.Fatalf("Check: %v", err)
				}
			}
			if err := s.Write(ctx, b); err != nil {
				t.Fatal(err)
			}
			if g == pipeline.ExactlyOnce {
				tok, err := s.PreCommit(ctx, 1)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Commit(ctx, tok); err != nil {
					t.Fatal(err)
				}
			} else if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			recs := c.ReadCommitted(t, topic, 30)
			exactlyOnce(t, recs, 30)
			for _, r := range recs {
				var v struct{ I int32 }
				json.Unmarshal(r.Value, &v)
				if v.I < 20 && r.Partition != v.I%4 {
					t.Errorf("record %d in partition %d, want %d", v.I, r.Partition, v.I%4)
				}
				for _, h := range r.Headers {
					if strings.HasPrefix(h.Key, "weir-") {
						t.Errorf("record %d carries the internal header %s", v.I, h.Key)
					}
				}
			}
			bad := &pipeline.Record{Value: []byte(`{"i":9}`)}
			bad.SetFields().ParseJSONObject(bad.Value)
			cfg.Partition = pipeline.MustCompileExpr(`i`)
			s2, err := cfg.NewSink(pipeline.Build{Pipeline: "t", Component: "t/sinks[1]/kafka", Guarantee: g, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close(ctx)
			if err := s2.(*sinks.KafkaSink).Check(bad); err == nil || !strings.Contains(err.Error(), "has 4 partitions") {
				t.Errorf("Check of partition 9 of 4: %v", err)
			}
			cfg.CreateTopic = &sinks.KafkaCreateTopic{Partitions: 8}
			if _, err := cfg.NewSink(pipeline.Build{Pipeline: "t", Component: "t/sinks[2]/kafka", Guarantee: g, Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "has 4 partitions, but create_topic says 8") {
				t.Errorf("create_topic with another partition count: %v", err)
			}
		})
	}
}
