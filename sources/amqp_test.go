package sources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// amqpTestChannel opens a plain amqp091 connection (the independent client
// the tests publish and inspect with).
func amqpTestChannel(t testing.TB, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	return ch
}

// amqpTestQueue declares a durable queue with a unique name, deleted when
// the test ends.
func amqpTestQueue(t testing.TB, url string) string {
	t.Helper()
	ch := amqpTestChannel(t, url)
	q := testservices.Name("weir_src")
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatalf("declare queue: %v", err)
	}
	t.Cleanup(func() { amqpTestDelete(url, q, "") })
	return q
}

// amqpTestDelete removes a queue and an exchange on a fresh connection.
func amqpTestDelete(url, queue, exchange string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	if queue != "" {
		_, _ = ch.QueueDelete(queue, false, false, false)
	}
	if exchange != "" {
		_ = ch.ExchangeDelete(exchange, false, false)
	}
}

// amqpTestPublish publishes n messages "msg-<i>" with message id "id-<i>"
// to the default exchange (routing key = queue), with publisher confirms.
func amqpTestPublish(t testing.TB, ch *amqp.Channel, exchange, key string, from, n int) {
	t.Helper()
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm mode: %v", err)
	}
	var dcs []*amqp.DeferredConfirmation
	for i := from; i < from+n; i++ {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, key, false, false, amqp.Publishing{
			MessageId: fmt.Sprintf("id-%d", i),
			Body:      fmt.Appendf(nil, `{"n":%d}`, i),
			Headers:   amqp.Table{"h": "v", "num": int32(i)},
			Timestamp: time.Unix(1700000000+int64(i), 0),
		})
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		dcs = append(dcs, dc)
	}
	for _, dc := range dcs {
		if !dc.Wait() {
			t.Fatal("publish nacked")
		}
	}
}

// amqpTestReady returns the number of ready (not in flight) messages.
func amqpTestReady(t testing.TB, url, queue string) int {
	t.Helper()
	ch := amqpTestChannel(t, url)
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect queue: %v", err)
	}
	ch.Close()
	return q.Messages
}

func newAMQPTestSource(t testing.TB, cfg *AMQPConfig, batch int, g pipeline.Guarantee) (pipeline.Source, *testservices.Logs) {
	t.Helper()
	b, logs := testservices.Build(t, "test/sources[0]/amqp-"+testservices.Name("c"), batch, g)
	b.Index = 3
	src, err := cfg.NewSource(b)
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	return src, logs
}

func TestAMQPSourceRoundTrip(t *testing.T) {
	url := testservices.AMQP(t)
	queue := amqpTestQueue(t, url)
	amqpTestPublish(t, amqpTestChannel(t, url), "", queue, 0, 300)

	cfg := NewAMQPConfig()
	cfg.URL, cfg.Queue = url, queue
	src, _ := newAMQPTestSource(t, cfg, 64, pipeline.ExactlyOnce)
	// The prefetch window is 2 × 64: read and ack as the runtime does.
	var recs []*pipeline.Record
	var acks []pipeline.AckFunc
	for len(recs) < 300 {
		got, ack := testservices.Read(t, src, 1, 5*time.Second)
		if len(got) == 0 {
			break
		}
		testservices.Ack(t, ack)
		recs, acks = append(recs, got...), append(acks, ack...)
	}
	if len(recs) != 300 {
		t.Fatalf("got %d records, want 300", len(recs))
	}
	for i, r := range recs {
		if got, want := string(r.Value), fmt.Sprintf(`{"n":%d}`, i); got != want {
			t.Fatalf("record %d: value %s, want %s (order must be kept)", i, got, want)
		}
		if r.Origin.ID != fmt.Sprintf("id-%d", i) || r.Origin.Name != queue || string(r.Key) != queue || r.Source != 3 {
			t.Fatalf("record %d: origin %+v key %q source %d", i, r.Origin, r.Key, r.Source)
		}
		if !r.Time.Equal(time.Unix(1700000000+int64(i), 0)) {
			t.Fatalf("record %d: time %v, want the AMQP timestamp", i, r.Time)
		}
		if len(r.Headers) != 2 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != "v" ||
			r.Headers[1].Key != "num" || string(r.Headers[1].Value) != fmt.Sprint(i) {
			t.Fatalf("record %d: headers %v", i, r.Headers)
		}
	}
	if len(acks) < 300/64 {
		t.Fatalf("got %d batches for 300 records at batch size 64", len(acks))
	}

	// Idle: Read returns an empty batch within about 200ms.
	start := time.Now()
	var b pipeline.Batch
	ack, err := src.Read(context.Background(), &b)
	if err != nil || len(b.Records) != 0 || ack != nil {
		t.Fatalf("idle Read: %d records, ack %v, err %v", len(b.Records), ack != nil, err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("idle Read took %v, want about 200ms", d)
	}
	testservices.Close(t, src)
	// Everything acked: nothing comes back after the consumer is gone.
	time.Sleep(100 * time.Millisecond)
	if n := amqpTestReady(t, url, queue); n != 0 {
		t.Fatalf("%d messages back in the queue after ack and close, want 0", n)
	}
}

func TestAMQPSourceBind(t *testing.T) {
	url := testservices.AMQP(t)
	pub := amqpTestChannel(t, url)
	for _, tc := range []struct {
		typ, key    string
		headers     map[string]string
		match, miss amqp.Publishing
		matchKey    string
		missKey     string
	}{
		{typ: "topic", key: "app.*.error", matchKey: "app.web.error", missKey: "app.web.info"},
		{typ: "headers", headers: map[string]string{"level": "error"},
			match: amqp.Publishing{Headers: amqp.Table{"level": "error"}}, miss: amqp.Publishing{Headers: amqp.Table{"level": "info"}}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			exchange := testservices.Name("weir_x")
			cfg := NewAMQPConfig()
			cfg.URL = url
			cfg.Bind = &AMQPBind{Exchange: exchange, Type: tc.typ, RoutingKey: tc.key, Headers: tc.headers}
			b, _ := testservices.Build(t, "test/sources[0]/"+testservices.Name("amqp"), 10, pipeline.ExactlyOnce)
			src, err := cfg.NewSource(b)
			if err != nil {
				t.Fatal(err)
			}
			queue := ownQueueName(b)
			t.Cleanup(func() { amqpTestDelete(url, queue, exchange) })
			if !strings.HasPrefix(queue, "weir.test.sources.0.") {
				t.Fatalf("own queue name %q", queue)
			}
			tc.match.Body, tc.miss.Body = []byte("yes"), []byte("no")
			for _, m := range []struct {
				key string
				p   amqp.Publishing
			}{{tc.missKey, tc.miss}, {tc.matchKey, tc.match}} {
				if err := pub.PublishWithContext(context.Background(), exchange, m.key, false, false, m.p); err != nil {
					t.Fatal(err)
				}
			}
			recs, acks := testservices.Read(t, src, 1, 5*time.Second)
			more, _ := testservices.Read(t, src, 1, 300*time.Millisecond)
			if len(recs) != 1 || string(recs[0].Value) != "yes" || len(more) != 0 {
				t.Fatalf("got %d+%d records, want only the matching one", len(recs), len(more))
			}
			testservices.Ack(t, acks)
			testservices.Close(t, src)
			// The queue is durable: messages routed while weir is away wait.
			if err := pub.PublishWithContext(context.Background(), exchange, tc.matchKey, false, false, tc.match); err != nil {
				t.Fatal(err)
			}
			testservices.Eventually(t, 2*time.Second, "message waits in weir's queue", func() bool {
				return amqpTestReady(t, url, queue) == 1
			})
		})
	}
}

func TestAMQPSourceReconnects(t *testing.T) {
	url := testservices.AMQP(t)
	queue := amqpTestQueue(t, url)
	pub := amqpTestChannel(t, url)
	proxy := testservices.StartProxy(t, url)
	cfg := NewAMQPConfig()
	cfg.URL, cfg.Queue, cfg.MaxReconnectDelay = proxy.URL(url), queue, 200*time.Millisecond
	src, logs := newAMQPTestSource(t, cfg, 50, pipeline.ExactlyOnce)
	defer testservices.Close(t, src)

	amqpTestPublish(t, pub, "", queue, 0, 100)
	seen := map[string]int{}
	recs, acks := testservices.Read(t, src, 50, 5*time.Second)
	testservices.Ack(t, acks)
	for _, r := range recs {
		seen[r.Origin.ID]++
	}
	// Read a batch but lose the connection before acking it: the ack
	// fails and the broker redelivers the batch with the same ids.
	recs, acks = testservices.Read(t, src, 1, 5*time.Second)
	for _, r := range recs {
		seen[r.Origin.ID]++
	}
	proxy.SetDown(true)
	// basic.ack is not confirmed in AMQP 0-9-1: the client may not have
	// noticed the cut yet and "succeed". Either way the broker never got
	// it and redelivers; an error, when there is one, says so.
	for _, a := range acks {
		if err := a(context.Background()); err != nil && !strings.Contains(err.Error(), "redelivers") {
			t.Fatalf("ack error %q does not say what happens next", err)
		}
	}
	amqpTestPublish(t, pub, "", queue, 100, 100) // published while weir is away
	time.Sleep(300 * time.Millisecond)           // a few failed reconnects
	proxy.SetDown(false)
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < 200 && time.Now().Before(deadline) {
		recs, acks := testservices.Read(t, src, 1, time.Second)
		testservices.Ack(t, acks)
		for _, r := range recs {
			seen[r.Origin.ID]++
		}
	}
	if len(seen) != 200 {
		t.Fatalf("saw %d distinct ids after reconnect, want all 200", len(seen))
	}
	redelivered := 0
	for _, n := range seen {
		redelivered += n - 1
	}
	if redelivered == 0 {
		t.Fatal("the unacked batch was not redelivered")
	}
	if !strings.Contains(logs.String(), "reconnected") {
		t.Fatalf("no reconnect logged:\n%s", logs)
	}
	if strings.Contains(logs.String(), "guest:guest") {
		t.Fatal("credentials in the logs")
	}
}

func TestAMQPSourceQueueDeletedStopsWithError(t *testing.T) {
	url := testservices.AMQP(t)
	queue := amqpTestQueue(t, url)
	cfg := NewAMQPConfig()
	cfg.URL, cfg.Queue, cfg.MaxReconnectDelay = url, queue, 100*time.Millisecond
	src, _ := newAMQPTestSource(t, cfg, 10, pipeline.ExactlyOnce)
	defer testservices.Close(t, src)
	amqpTestDelete(url, queue, "")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var b pipeline.Batch
		if _, err := src.Read(context.Background(), &b); err != nil {
			if !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), queue) {
				t.Fatalf("error %q does not name the missing queue", err)
			}
			return
		}
	}
	t.Fatal("Read kept returning no error after the queue was deleted")
}

func TestAMQPSourceStartErrors(t *testing.T) {
	url := testservices.AMQP(t)
	queue := amqpTestQueue(t, url)
	badPass := strings.Replace(url, "guest:guest", "guest:wr0ng-s3cret", 1)
	if badPass == url {
		t.Skip("WEIR_TEST_AMQP_URL does not use guest:guest; cannot derive bad credentials")
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("fil3-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(c *AMQPConfig)
		want string
	}{
		{"no url", func(c *AMQPConfig) { c.URL = "" }, "url is required"},
		{"bad scheme", func(c *AMQPConfig) { c.URL = "http://guest:pw-s3cret@127.0.0.1/" }, "amqp://"},
		{"bad port", func(c *AMQPConfig) { c.URL = "amqp://guest:pw-s3cret@127.0.0.1:notaport/" }, "url amqp://xxxxx@"},
		{"nothing listening", func(c *AMQPConfig) { c.URL = "amqp://guest:pw-s3cret@127.0.0.1:1/" }, "gave up after connect_timeout"},
		{"bad credentials", func(c *AMQPConfig) { c.URL = badPass }, "connect to"},
		{"bad password_file credentials", func(c *AMQPConfig) { c.PasswordFile = pwFile }, "connect to"},
		{"missing password_file", func(c *AMQPConfig) { c.PasswordFile = pwFile + ".nope" }, "password_file"},
		{"missing queue", func(c *AMQPConfig) { c.Queue = "weir_no_such_queue" }, `queue "weir_no_such_queue" not found`},
		{"neither queue nor bind", func(c *AMQPConfig) { c.Queue = "" }, "set queue"},
		{"bad bind type", func(c *AMQPConfig) { c.Bind = &AMQPBind{Exchange: "x", Type: "fan"} }, "bind.type"},
		{"missing exchange without type", func(c *AMQPConfig) { c.Bind = &AMQPBind{Exchange: "weir_no_such_exchange"} }, "weir_no_such_exchange"},
		{"tls without amqps", func(c *AMQPConfig) { c.TLS = &pipeline.TLSOptions{} }, "not amqps://"},
		{"bad tls files", func(c *AMQPConfig) {
			c.URL = "amqps://127.0.0.1:1/"
			c.TLS = &pipeline.TLSOptions{CAFile: pwFile + ".nope"}
		}, "ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewAMQPConfig()
			cfg.URL, cfg.Queue, cfg.ConnectTimeout = url, queue, 300*time.Millisecond
			tc.edit(cfg)
			b, logs := testservices.Build(t, "test/sources[0]/amqp", 10, pipeline.ExactlyOnce)
			src, err := cfg.NewSource(b)
			if err == nil {
				testservices.Close(t, src)
				t.Fatal("NewSource succeeded")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "amqp: ") {
				t.Fatalf("error %q, want it to start with amqp: and contain %q", msg, tc.want)
			}
			for _, secret := range []string{"s3cret", "wr0ng"} {
				if strings.Contains(msg, secret) || strings.Contains(logs.String(), secret) {
					t.Fatalf("secret leaked: error %q, logs %q", msg, logs)
				}
			}
			if strings.Contains(tc.name, "credentials") && !strings.Contains(msg, "ACCESS_REFUSED") && !errors.Is(err, amqp.ErrCredentials) {
				t.Fatalf("credential error %q does not say access was refused", msg)
			}
		})
	}
}

func TestAMQPSourceConfigFromYAML(t *testing.T) {
	reg := pipeline.Default.Clone()
	reg.Register(pipeline.Entry{Kind: pipeline.KindSink, Name: "amqp_test_null", ExactlyOnce: true, NewConfig: func() any { return &amqpTestNullSink{} }})
	cfg, err := reg.Load("p.yaml", []byte(`pipelines:
  - name: p
    sources:
      - amqp: { url: "amqp://u:p@h/", bind: { exchange: logs, type: topic, routing_key: "app.*.error" }, prefetch: 7 }
    sinks: [ { amqp_test_null: {} } ]
`))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Pipelines[0].Sources[0].Config.(*AMQPConfig)
	if c.Bind.Type != "topic" || c.Bind.RoutingKey != "app.*.error" || c.Prefetch != 7 || c.Heartbeat != 10*time.Second {
		t.Fatalf("decoded %+v bind %+v", c, c.Bind)
	}
	_, err = reg.Load("p.yaml", []byte(`pipelines:
  - name: p
    sources:
      - amqp: { url: "amqp://u:s3cret@h/", bind: { exchange: logs, type: fan } }
    sinks: [ { amqp_test_null: {} } ]
`))
	if err == nil || !strings.Contains(err.Error(), "p.yaml:4:") || !strings.Contains(err.Error(), "bind.type") {
		t.Fatalf("want a positioned bind.type error, got %v", err)
	}
}

type amqpTestNullSink struct{}

func (*amqpTestNullSink) NewSink(pipeline.Build) (pipeline.Sink, error) { return nil, nil }

// BenchmarkAMQPSource measures server → Read+ack throughput at batch size
// 1024: the messages are published before the timer starts.
func BenchmarkAMQPSource(b *testing.B) {
	url := testservices.AMQP(b)
	queue := amqpTestQueue(b, url)
	ch := amqpTestChannel(b, url)
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"level":"error","service":"api","latency_ms":12.5,"msg":"upstream timed out after 30s"}`)
	n := max(b.N, 1000)
	var last *amqp.DeferredConfirmation
	for i := 0; i < n; i++ {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", queue, false, false,
			amqp.Publishing{Body: body, MessageId: fmt.Sprint(i), DeliveryMode: amqp.Persistent})
		if err != nil {
			b.Fatal(err)
		}
		last = dc
	}
	last.Wait()
	cfg := NewAMQPConfig()
	cfg.URL, cfg.Queue = url, queue
	src, _ := newAMQPTestSource(b, cfg, 1024, pipeline.ExactlyOnce)
	defer testservices.Close(b, src)
	benchmarkQueueSource(b, src, n, nil)
}

// TestAMQPSourceTLS connects with amqps:// through a TLS-terminating proxy
// in front of the real broker: the tls options must reach the handshake.
func TestAMQPSourceTLS(t *testing.T) {
	url := testservices.AMQP(t)
	queue := amqpTestQueue(t, url)
	proxy, caFile := testservices.StartTLSProxy(t, url)
	tlsURL := strings.Replace(proxy.URL(url), "amqp://", "amqps://", 1)
	for _, tc := range []struct {
		name string
		tls  *pipeline.TLSOptions
		ok   bool
	}{
		{"trusted ca_file", &pipeline.TLSOptions{CAFile: caFile}, true},
		{"insecure_skip_verify", &pipeline.TLSOptions{InsecureSkipVerify: true}, true},
		{"untrusted", &pipeline.TLSOptions{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewAMQPConfig()
			cfg.URL, cfg.Queue, cfg.TLS, cfg.ConnectTimeout = tlsURL, queue, tc.tls, 500*time.Millisecond
			b, _ := testservices.Build(t, "test/sources[0]/amqp", 10, pipeline.ExactlyOnce)
			src, err := cfg.NewSource(b)
			if tc.ok != (err == nil) {
				t.Fatalf("NewSource: %v", err)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("error %q does not mention the certificate", err)
				}
				return
			}
			amqpTestPublish(t, amqpTestChannel(t, url), "", queue, 0, 1)
			if got := readAcking(t, src, 1, 5*time.Second); len(got) != 1 {
				t.Fatalf("got %d records over TLS", len(got))
			}
			testservices.Close(t, src)
		})
	}
}

// BenchmarkAMQPRawConsume is the baseline for BenchmarkAMQPSource: the
// same queue contents, prefetch (2048) and ack pattern (basic.ack multiple
// per 1024 messages) with plain amqp091 and no weir code, to tell the
// broker's delivery rate from the source's cost.
func BenchmarkAMQPRawConsume(b *testing.B) {
	url := testservices.AMQP(b)
	queue := amqpTestQueue(b, url)
	ch := amqpTestChannel(b, url)
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"level":"error","service":"api","latency_ms":12.5,"msg":"upstream timed out after 30s"}`)
	n := max(b.N, 1000)
	var last *amqp.DeferredConfirmation
	for i := 0; i < n; i++ {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", queue, false, false,
			amqp.Publishing{Body: body, MessageId: fmt.Sprint(i), DeliveryMode: amqp.Persistent})
		if err != nil {
			b.Fatal(err)
		}
		last = dc
	}
	last.Wait()
	cons := amqpTestChannel(b, url)
	if err := cons.Qos(2048, 0, false); err != nil {
		b.Fatal(err)
	}
	deliveries, err := cons.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for got := 1; got <= n; got++ {
		d := <-deliveries
		if got%1024 == 0 || got == n {
			if err := d.Ack(true); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}
