package sources

import (
	"context"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// queueCase is one broker in the queue-source scenarios every broker must
// pass alike (TestQueueSourcesRedeliverUnacked, benchmarkQueueSource).
type queueCase struct {
	name string
	// setup prepares a fresh queue (stream, topic) on the real broker.
	setup func(t *testing.T) queueUnderTest
	// settle, when set, runs after the first source acked and before it
	// closes (MQTT sends acknowledgements every few milliseconds).
	settle func()
}

// queueUnderTest is one prepared queue.
type queueUnderTest struct {
	open    func(batch int) pipeline.Source // a source on the queue
	publish func(n int)                     // messages 0..n-1
	// drained checks that nothing is left once src2 acked everything,
	// and closes src2.
	drained func(t *testing.T, src2 pipeline.Source)
}

func queueCases() []queueCase {
	return []queueCase{
		{name: "amqp", setup: func(t *testing.T) queueUnderTest {
			url := testservices.AMQP(t)
			queue := amqpTestQueue(t, url)
			cfg := NewAMQPConfig()
			cfg.URL, cfg.Queue, cfg.Prefetch = url, queue, 100
			return queueUnderTest{
				open: func(batch int) pipeline.Source {
					src, _ := newAMQPTestSource(t, cfg, batch, pipeline.ExactlyOnce)
					return src
				},
				publish: func(n int) { amqpTestPublish(t, amqpTestChannel(t, url), "", queue, 0, n) },
				drained: func(t *testing.T, src2 pipeline.Source) {
					testservices.Close(t, src2)
					time.Sleep(100 * time.Millisecond)
					if n := amqpTestReady(t, url, queue); n != 0 {
						t.Fatalf("%d messages left, want 0", n)
					}
				},
			}
		}},
		{name: "mqtt", settle: func() { time.Sleep(50 * time.Millisecond) }, setup: func(t *testing.T) queueUnderTest {
			mqttURL := testservices.MQTT(t)
			topic := "weir/test/" + testservices.Name("t")
			cfg := NewMQTTConfig()
			cfg.URL, cfg.Topics, cfg.IDProperty, cfg.QoS = mqttURL, []string{topic}, "id", 2
			return queueUnderTest{
				open: func(batch int) pipeline.Source {
					src, _ := newMQTTTestSource(t, cfg, batch, pipeline.ExactlyOnce)
					return src
				},
				publish: func(n int) { mqttTestPublish(t, mqttURL, topic, "m", 0, n, 1) },
				drained: noMoreWithin(300 * time.Millisecond),
			}
		}},
		{name: "nats", setup: func(t *testing.T) queueUnderTest {
			url := testservices.NATS(t)
			js, stream := natsTestStream(t, url)
			cfg := NewNATSConfig()
			cfg.URL, cfg.Stream, cfg.Durable, cfg.AckWait = url, stream, "weir_redeliver", time.Second
			return queueUnderTest{
				open: func(batch int) pipeline.Source {
					src, _ := newNATSTestSource(t, cfg, batch)
					return src
				},
				publish: func(n int) { natsTestPublish(t, js, stream+".a", "m", 0, n) },
				drained: noMoreWithin(1500 * time.Millisecond), // past ack_wait
			}
		}},
	}
}

// noMoreWithin is a queueCase.drained that waits d for a message that
// should not come.
func noMoreWithin(d time.Duration) func(*testing.T, pipeline.Source) {
	return func(t *testing.T, src2 pipeline.Source) {
		if more, _ := testservices.Read(t, src2, 1, d); len(more) != 0 {
			t.Fatalf("%d more messages after acking everything, want none", len(more))
		}
		testservices.Close(t, src2)
	}
}

// TestQueueSourcesRedeliverUnacked: a source that acknowledged only its
// first batch and closed leaves the rest on the broker; the next source on
// the same queue gets exactly those again, with the same message ids (so
// the WAL's seen ids drop them), and nothing once it acked them.
func TestQueueSourcesRedeliverUnacked(t *testing.T) {
	const n = 20
	for _, qc := range queueCases() {
		t.Run(qc.name, func(t *testing.T) {
			q := qc.setup(t)
			src := q.open(10)
			q.publish(n)
			// Ack the first batch only (its size depends on timing), read the rest.
			first, ack := testservices.ReadBatch(t, src, 5*time.Second)
			k := len(first.Records)
			rest, _ := testservices.Read(t, src, n-k, 5*time.Second)
			recs := append(first.Records, rest...)
			if len(recs) != n || k == n {
				t.Fatalf("got %d records, the first batch %d; want %d in more than one batch", len(recs), k, n)
			}
			testservices.Ack(t, []pipeline.AckFunc{ack})
			if qc.settle != nil {
				qc.settle()
			}
			testservices.Close(t, src)

			src2 := q.open(100)
			again := readAcking(t, src2, n-k, 10*time.Second)
			if len(again) != n-k {
				t.Fatalf("redelivered %d, want the %d unacknowledged", len(again), n-k)
			}
			for i, r := range again {
				if want := recs[k+i].Origin.ID; r.Origin.ID != want {
					t.Fatalf("redelivery %d: id %q, want %q", i, r.Origin.ID, want)
				}
			}
			q.drained(t, src2)
		})
	}
}

// benchmarkQueueSource reads n messages from src in batches, acking each,
// for at most a minute, and reports events/s, records per batch and the
// share of the time spent in Read and in the acks. begin, when set, runs
// once the timer has started (to publish while the source reads); without
// it the messages are on the broker already.
func benchmarkQueueSource(b *testing.B, src pipeline.Source, n int, begin func()) {
	b.ResetTimer()
	start := time.Now()
	if begin != nil {
		begin()
	}
	got, batches := 0, 0
	var inRead, inAck time.Duration
	deadline := start.Add(60 * time.Second)
	for got < n && time.Now().Before(deadline) {
		var bt pipeline.Batch
		t0 := time.Now()
		ack, err := src.Read(context.Background(), &bt)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		got += len(bt.Records)
		if ack != nil {
			batches++
			if err := ack(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		inRead, inAck = inRead+t1.Sub(t0), inAck+time.Since(t1)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(got)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(got)/float64(max(batches, 1)), "records/batch")
	b.ReportMetric(100*inAck.Seconds()/elapsed.Seconds(), "%ack")
	b.ReportMetric(100*inRead.Seconds()/elapsed.Seconds(), "%read")
}
