package sinks_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkatest"
	"github.com/weirhq/weir/runtime"
)

// Throughput of Kafka → parse → filter → Kafka on a kfake cluster over
// loopback, and of plain franz-go producing and consuming on the same
// cluster (is kfake the ceiling?). Each reports events/s; use a fixed
// count so every run does the same work:
//
//	go test -run '^$' -bench Kafka -benchtime 200000x -count 5 ./sinks/
//
// The pipeline figures include start-up (joining the group), which a
// large count amortizes.

// benchEvents produces n events (two of three pass the filter) quickly.
func benchEvents(b *testing.B, c *kafkatest.Cluster, topic string, n int) (passing int) {
	b.Helper()
	recs, passing := benchRecords(topic, n)
	benchProduce(b, c, recs)
	return passing
}

// benchRecords makes the n events benchEvents produces.
func benchRecords(topic string, n int) (recs []*kgo.Record, passing int) {
	recs = make([]*kgo.Record, n)
	for i := range n {
		level := "info"
		if i%3 != 0 {
			level = "error"
			passing++
		}
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "%d", i),
			Value: fmt.Appendf(nil, `{"i":%d,"o":%d,"level":%q,"service":"svc%d","latency_ms":%d,"path":"/api/v1/items/%d"}`, i, passing, level, i%5, i%1000, i%97)}
	}
	return recs, passing
}

func benchProduce(b *testing.B, c *kafkatest.Cluster, recs []*kgo.Record) {
	cl := c.Client(b, kgo.ProducerLinger(5*time.Millisecond))
	ctx := context.Background()
	errs := make(chan error, 1)
	for _, r := range recs {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

func BenchmarkKafkaPipeline(b *testing.B) {
	for _, g := range []string{"at_least_once", "exactly_once"} {
		b.Run(g, func(b *testing.B) {
			c := kafkatest.New(b)
			in, out := c.Topic(b, 6), c.Topic(b, 6)
			want := benchEvents(b, c, in, b.N)
			reader := c.NewReader(b, out)
			cfg := loadYAML(b, kafkaPipelineYAML(filepath.Join(b.TempDir(), "data"), g, c, in, kafkatest.Name("g"), out, "1s"))
			stop := make(chan struct{})
			done := make(chan error, 1)
			b.ResetTimer()
			start := time.Now()
			go func() { done <- runtime.Run(context.Background(), cfg, nil, stop, runtime.Options{}) }()
			for reader.Len() < want {
				select {
				case err := <-done:
					b.Fatalf("pipeline ended: %v", err)
				case <-time.After(time.Millisecond):
				}
			}
			el := time.Since(start)
			b.StopTimer()
			close(stop)
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
		})
	}
}

// BenchmarkKafkaProduce is franz-go producing the same events (idempotent,
// snappy, as the at_least_once sink does), to the same cluster.
func BenchmarkKafkaProduce(b *testing.B) {
	c := kafkatest.New(b)
	topic := c.Topic(b, 6)
	recs, _ := benchRecords(topic, b.N) // made before the clock starts, as the pipelines' input is
	b.ResetTimer()
	start := time.Now()
	benchProduce(b, c, recs)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkKafkaConsume is a franz-go group consumer reading the same
// events, read_committed, as the source does.
func BenchmarkKafkaConsume(b *testing.B) {
	c := kafkatest.New(b)
	topic := c.Topic(b, 6)
	benchEvents(b, c, topic, b.N)
	b.ResetTimer()
	start := time.Now()
	cl := c.Client(b, kgo.ConsumerGroup(kafkatest.Name("g")), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for n := 0; n < b.N; {
		fs := cl.PollRecords(context.Background(), 1024)
		n += fs.NumRecords()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkKafkaConsumeProduce is the least a Kafka → Kafka pipeline can
// do on the same cluster: a franz-go group consumer producing every record
// it reads (idempotent, snappy) to another topic, with no parsing, no
// checkpoints and no guarantee beyond at-least-once. It is the ceiling the
// pipeline figures compare with; BenchmarkKafkaProduce alone leaves out
// the fetching, which on kfake costs as much CPU as the producing.
func BenchmarkKafkaConsumeProduce(b *testing.B) {
	c := kafkatest.New(b)
	in, out := c.Topic(b, 6), c.Topic(b, 6)
	benchEvents(b, c, in, b.N)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	cl := c.Client(b, kgo.ConsumerGroup(kafkatest.Name("g")), kgo.ConsumeTopics(in),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	errs := make(chan error, 1)
	for n := 0; n < b.N; {
		fs := cl.PollRecords(ctx, 1024)
		fs.EachRecord(func(r *kgo.Record) {
			cl.Produce(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			})
		})
		n += fs.NumRecords()
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
