package sources_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkatest"
	_ "github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
	_ "github.com/weirhq/weir/sinks"
)

// windowKey is one (window, service) of a per-minute count.
type windowKey struct {
	Start   string
	Service string
}

// backlogEvent is one input log line: its event time and service.
type backlogEvent struct {
	ts      time.Time
	service string
}

// backlogEvents makes n events over 12 services, 10 ms apart in event
// time with up to 3 s of jitter (within the pipeline's 5 s watermark), and
// the per-minute counts a GROUP BY over them gives.
func backlogEvents(n int) ([]backlogEvent, map[windowKey]int) {
	base := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(7, 12))
	evs := make([]backlogEvent, n)
	want := map[windowKey]int{}
	for i := range evs {
		ts := base.Add(time.Duration(i)*10*time.Millisecond - time.Duration(rng.IntN(3000))*time.Millisecond)
		svc := fmt.Sprintf("svc%02d", rng.IntN(12))
		evs[i] = backlogEvent{ts, svc}
		want[windowKey{ts.Truncate(time.Minute).Format("2006-01-02T15:04:05.000Z"), svc}]++
	}
	return evs, want
}

// produceBacklog writes the events to topic, each service to one partition
// (as a producer keying by service does), in event order, then one flush
// event per partition two hours later, so that every real window fires on
// time.
func produceBacklog(t *testing.T, c *kafkatest.Cluster, topic string, partitions int32, evs []backlogEvent) {
	t.Helper()
	cl := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	part := func(svc string) int32 {
		h := fnv.New32a()
		h.Write([]byte(svc))
		return int32(h.Sum32() % uint32(partitions))
	}
	recs := make([]*kgo.Record, 0, len(evs)+int(partitions))
	for _, e := range evs {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: part(e.service), Key: []byte(e.service),
			Value: fmt.Appendf(nil, `{"ts":%q,"service":%q,"msg":"request served"}`, e.ts.Format(time.RFC3339Nano), e.service)})
	}
	flush := evs[len(evs)-1].ts.Add(2 * time.Hour)
	for p := range partitions {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p,
			Value: fmt.Appendf(nil, `{"ts":%q,"service":"flush"}`, flush.Format(time.RFC3339Nano))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(recs) > 0 {
		k := min(len(recs), 10000)
		if err := cl.ProduceSync(ctx, recs[:k]...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		recs = recs[k:]
	}
}

// readWindows reads the window results the file sink has committed.
func readWindows(t *testing.T, path string) (map[windowKey]int, int) {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[windowKey]int{}
	lines := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var w struct {
			WindowStart string `json:"window_start"`
			Service     string `json:"service"`
			N           int    `json:"n"`
			Firing      string `json:"firing"`
		}
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		if w.Firing != "on_time" {
			t.Errorf("window %s/%s fired %q, want on_time", w.WindowStart, w.Service, w.Firing)
		}
		got[windowKey{w.WindowStart, w.Service}] += w.N
		lines++
	}
	return got, lines
}

// A Kafka backlog read by one process with event-time windows gives
// exactly the windows a GROUP BY over the records gives, whatever the
// partition count: a partition fetched ahead of the others (franz-go
// returns each partition's whole backlog in turn) never makes the others'
// records late. Before watermarks were kept per partition, most records of
// the 6-partition topic went to the dead-letter output as late.
func TestKafkaBacklogWindowsMatchGroupBy(t *testing.T) {
	c := kafkatest.New(t)
	evs, want := backlogEvents(60000)
	for _, partitions := range []int32{6, 1} {
		t.Run(fmt.Sprintf("partitions=%d", partitions), func(t *testing.T) {
			topic := c.Topic(t, partitions)
			produceBacklog(t, c, topic, partitions, evs)
			dir := t.TempDir()
			out, dead := filepath.Join(dir, "out", "windows.jsonl"), filepath.Join(dir, "out", "dead.jsonl")
			cfg, err := pipeline.Default.Load("backlog.yaml", fmt.Appendf(nil, `
data_dir: %s
pipelines:
  - name: backlog
    checkpoint_interval: 100ms
    sources:
      - kafka: { brokers: %s, topics: [%s], group: %s, heartbeat_interval: 100ms, session_timeout: 10s, rebalance_timeout: 10s }
    operators:
      - parse: { format: json }
      - window:
          tumbling: 1m
          event_time: ts
          watermark: 5s
          group_by: [service]
          aggregate: { n: count() }
      - filter: 'service != "flush"'
    sinks:
      - file: { path: %s }
    dead_letter:
      file: { path: %s }
`, filepath.Join(dir, "data"), c.BrokerList(), topic, kafkatest.Name("backlog"), out, dead))
			if err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() { done <- runtime.Run(context.Background(), cfg, nil, stop, runtime.Options{}) }()
			deadline := time.Now().Add(60 * time.Second)
			var got map[windowKey]int
			for {
				var lines int
				got, lines = readWindows(t, out)
				if lines >= len(want) {
					break
				}
				select {
				case err := <-done:
					t.Fatalf("pipeline ended early: %v", err)
				case <-time.After(100 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					break
				}
			}
			close(stop)
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			got, _ = readWindows(t, out)
			if b, err := os.ReadFile(dead); err == nil && len(b) > 0 {
				lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
				t.Errorf("%d dead letters written, the first: %s", len(lines), lines[0])
			}
			checkWindows(t, want, got)
		})
	}
}

// checkWindows compares the windows a pipeline wrote with a GROUP BY's.
func checkWindows(t *testing.T, want, got map[windowKey]int) {
	t.Helper()
	missing, wrong := 0, 0
	for k, n := range want {
		switch g, ok := got[k]; {
		case !ok:
			missing++
		case g != n:
			wrong++
			if wrong <= 3 {
				t.Errorf("window %s %s: count %d, GROUP BY gives %d", k.Start, k.Service, g, n)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("window %s %s is not in the GROUP BY", k.Start, k.Service)
		}
	}
	if missing > 0 || wrong > 0 {
		t.Errorf("%d of %d windows missing, %d with a wrong count", missing, len(want), wrong)
	}
}
