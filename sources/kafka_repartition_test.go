package sources_test

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkatest"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// A backlog keyed by service in 6 partitions, re-keyed by user through a
// repartition topic and counted per user and minute, gives exactly the
// windows a GROUP BY over the records gives: the upstream pipeline reads
// the partitions one after another (franz-go returns each partition's
// backlog in turn), so the records of one user arrive in the repartition
// topic far out of event-time order, and only the watermarks carried
// across the topic (per upstream partition, with its announcements and
// catch-ups) keep them from being late. A dead letter upstream reaches
// the one dead-letter output with its reason.
func TestKafkaRepartitionBacklogWindowsMatchGroupBy(t *testing.T) {
	c := kafkatest.New(t)
	const partitions, n = 6, 60000
	base := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(3, 4))
	want := map[windowKey]int{}
	topic := c.Topic(t, partitions)
	cl := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	part := func(svc string) int32 {
		h := fnv.New32a()
		h.Write([]byte(svc))
		return int32(h.Sum32() % partitions)
	}
	var recs []*kgo.Record
	var last time.Time
	for i := range n {
		ts := base.Add(time.Duration(i)*10*time.Millisecond - time.Duration(rng.IntN(3000))*time.Millisecond)
		svc, user := fmt.Sprintf("svc%02d", rng.IntN(12)), fmt.Sprintf("u%02d", rng.IntN(20))
		want[windowKey{ts.Truncate(time.Minute).Format("2006-01-02T15:04:05.000Z"), user}]++
		recs = append(recs, &kgo.Record{Topic: topic, Partition: part(svc), Key: []byte(svc),
			Value: fmt.Appendf(nil, `{"ts":%q,"service":%q,"user":%q}`, ts.Format(time.RFC3339Nano), svc, user)})
		last = ts
	}
	// One malformed line, dead-lettered by the upstream parse.
	recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(`{"ts": broken`)})
	for p := range int32(partitions) {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p,
			Value: fmt.Appendf(nil, `{"ts":%q,"service":"flush","user":"flush"}`, last.Add(2*time.Hour).Format(time.RFC3339Nano))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(recs) > 0 {
		k := min(len(recs), 10000)
		if err := cl.ProduceSync(ctx, recs[:k]...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		recs = recs[k:]
	}

	dir := t.TempDir()
	out, dead := filepath.Join(dir, "out", "windows.jsonl"), filepath.Join(dir, "out", "dead.jsonl")
	cfg, err := pipeline.Default.Load("repartition.yaml", fmt.Appendf(nil, `
data_dir: %s
pipelines:
  - name: per-user
    checkpoint_interval: 100ms
    sources:
      - kafka: { brokers: %s, topics: [%s], group: %s, heartbeat_interval: 100ms, session_timeout: 10s, rebalance_timeout: 10s }
    operators:
      - parse: { format: json }
      - repartition: { topic: %s, key: user, partitions: 4 }
      - window:
          tumbling: 1m
          event_time: ts
          watermark: 5s
          group_by: [user]
          aggregate: { n: count() }
      - filter: 'user != "flush"'
      - map: { service: user }
    sinks:
      - file: { path: %s }
    dead_letter:
      file: { path: %s }
`, filepath.Join(dir, "data"), c.BrokerList(), topic, kafkatest.Name("rp-up"), kafkatest.Name("by-user"), out, dead))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pipelines) != 2 {
		t.Fatalf("the repartition made %d pipelines, want 2", len(cfg.Pipelines))
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runtime.Run(context.Background(), cfg, nil, stop, runtime.Options{}) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, lines := readWindows(t, out)
		if lines >= len(want) || time.Now().After(deadline) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("pipelines ended early: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	time.Sleep(500 * time.Millisecond) // a window fired twice would show now
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, _ := readWindows(t, out)
	b, _ := os.ReadFile(dead)
	deadLines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(b) == 0 || len(deadLines) != 1 || !bytes.Contains(deadLines[0], []byte(`"reason":"parse"`)) || !bytes.Contains(deadLines[0], []byte(`broken`)) {
		t.Errorf("dead letters: want exactly the malformed line, with reason parse; got %d: %s", len(deadLines), b)
	}
	checkWindows(t, want, got)
}
