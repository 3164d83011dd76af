package sinks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkatest"
	_ "github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// kafkaInput produces n JSON events to topic; every third one has level
// "info" and is filtered out by kafkaPipelineYAML. It returns how many
// pass the filter: those are numbered o = 0..want-1 in the "o" field.
func kafkaInput(t testing.TB, c *kafkatest.Cluster, topic string, n int) (want int) {
	t.Helper()
	recs := make([]*kgo.Record, 0, n)
	for i := range n {
		level, o := "info", -1
		if i%3 != 0 {
			level, o = "error", want
			want++
		}
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "%d", i),
			Value: fmt.Appendf(nil, `{"i":%d,"o":%d,"level":%q,"service":"svc%d"}`, i, o, level, i%5)})
	}
	for len(recs) > 0 {
		k := min(len(recs), 5000)
		c.Produce(t, topic, recs[:k]...)
		recs = recs[k:]
	}
	return want
}

// kafkaPipelineYAML is Kafka → parse → filter → Kafka.
func kafkaPipelineYAML(dataDir, guarantee string, c *kafkatest.Cluster, in, group, out, interval string) string {
	return fmt.Sprintf(`
data_dir: %s
pipelines:
  - name: k2k
    guarantee: %s
    checkpoint_interval: %s
    sources:
      - kafka: { brokers: %s, topics: [%s], group: %s, heartbeat_interval: 100ms, session_timeout: 10s, rebalance_timeout: 10s }
    operators:
      - parse: { format: json }
      - filter: 'level == "error"'
      - map: { i: null, level: null }
    sinks:
      - kafka: { brokers: %s, topic: %s, key: service }
`, dataDir, guarantee, interval, c.BrokerList(), in, group, c.BrokerList(), out)
}

// exactlyOnceField checks that recs hold field o = 0..n-1 each once.
func exactlyOnceField(t *testing.T, recs []*kgo.Record, n int) {
	t.Helper()
	exactlyOnce(t, renameO(recs), n)
}

// renameO rewrites {"o":k,...} values to {"i":k} for exactlyOnce.
func renameO(recs []*kgo.Record) []*kgo.Record {
	out := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		var v struct{ O *int }
		o := -1
		if json.Unmarshal(r.Value, &v) == nil && v.O != nil {
			o = *v.O
		}
		out[i] = &kgo.Record{Value: fmt.Appendf(nil, `{"i":%d}`, o)}
	}
	return out
}

func loadYAML(t testing.TB, text string) *pipeline.Config {
	t.Helper()
	cfg, err := pipeline.Default.Load("kafka-test.yaml", []byte(text))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return cfg
}

// runUntil runs cfg until the reader has seen n records, then stops it
// gracefully (final checkpoint) and returns Run's error.
func runUntil(t *testing.T, cfg *pipeline.Config, r *kafkatest.Reader, n int) {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runtime.Run(context.Background(), cfg, nil, stop, runtime.Options{}) }()
	deadline := time.Now().Add(40 * time.Second)
	for r.Len() < n {
		select {
		case err := <-done:
			t.Fatalf("pipeline ended early: %v (output %d of %d)", err, r.Len(), n)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			close(stop)
			<-done
			t.Fatalf("output %d of %d records after 40s", r.Len(), n)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// Kafka → parse → filter → Kafka under exactly_once, with hard stops
// (context cancelled: no final checkpoint, like a crash of the pipeline
// goroutines) while it runs: the output holds every event once.
func TestKafkaPipelineExactlyOnce(t *testing.T) {
	c := kafkatest.New(t)
	in, out := c.Topic(t, 4), c.Topic(t, 3)
	want := kafkaInput(t, c, in, 15000)
	reader := c.NewReader(t, out)
	dir := t.TempDir()
	cfg := loadYAML(t, kafkaPipelineYAML(dir, "exactly_once", c, in, kafkatest.Name("g"), out, "50ms"))

	for round := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runtime.Run(ctx, cfg, nil, nil, runtime.Options{}) }()
		time.Sleep(time.Duration(400+rand.IntN(600)) * time.Millisecond)
		t.Logf("round %d: output %d of %d", round, reader.Len(), want)
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	runUntil(t, cfg, reader, want)
	exactlyOnceField(t, reader.Settle(500*time.Millisecond), want)
}

// Two weir "processes" (two runtimes, two data dirs, one group): the
// second joins while the first is running; partitions move through the
// revoke callback's checkpoint and commit, and nothing is lost or doubled.
func TestKafkaPipelineRebalance(t *testing.T) {
	c := kafkatest.New(t)
	in, out := c.Topic(t, 6), c.Topic(t, 2)
	group := kafkatest.Name("g")
	want := kafkaInput(t, c, in, 3000)
	reader := c.NewReader(t, out)
	root := t.TempDir()
	start := func(name string) (stop func()) {
		cfg := loadYAML(t, kafkaPipelineYAML(filepath.Join(root, name), "exactly_once", c, in, group, out, "200ms"))
		ch := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- runtime.Run(context.Background(), cfg, nil, ch, runtime.Options{Logger: testLogger(t)})
		}()
		var once sync.Once
		return func() {
			once.Do(func() {
				close(ch)
				if err := <-done; err != nil {
					t.Errorf("%s: %v", name, err)
				}
			})
		}
	}
	// Input keeps arriving while the second process joins.
	const chunks, per = 30, 200
	fed := make(chan int, 1)
	go func() {
		total := want
		for k := range chunks {
			total += kafkaInputFrom(t, c, in, 3000+k*per, total, per)
			time.Sleep(30 * time.Millisecond)
		}
		fed <- total
	}()
	stopA := start("a")
	defer stopA()
	time.Sleep(300 * time.Millisecond)
	stopB := start("b")
	defer stopB()
	want = <-fed
	got := reader.WaitFor(t, want, 40*time.Second)
	stopA()
	stopB()
	exactlyOnceField(t, got, want)
}

// kafkaInputFrom is kafkaInput for events from..from+n-1 whose passing
// events are numbered from o0. It may run on a goroutine other than the
// test's: a failure is reported with t.Error and counts nothing.
func kafkaInputFrom(t testing.TB, c *kafkatest.Cluster, topic string, from, o0, n int) (passed int) {
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		level, o := "info", -1
		if i%3 != 0 {
			level, o = "error", o0+passed
			passed++
		}
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "%d", i),
			Value: fmt.Appendf(nil, `{"i":%d,"o":%d,"level":%q,"service":"svc%d"}`, i, o, level, i%5)})
	}
	if err := c.TryProduce(topic, recs...); err != nil {
		t.Error(err)
		return 0
	}
	return passed
}

// testLogger logs to t under -v, and nowhere otherwise.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
