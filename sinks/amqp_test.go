package sinks

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// amqpSinkTestTopology declares a topic exchange and a queue bound to it
// with bindKey (the independent consumer's side), deleted after the test.
// args are the queue's arguments.
func amqpSinkTestTopology(t testing.TB, url, bindKey string, args amqp.Table) (exchange, queue string, ch *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if ch, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	exchange, queue = testservices.Name("weir_sink_x"), testservices.Name("weir_sink_q")
	if err := ch.ExchangeDeclare(exchange, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, false, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, bindKey, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			_, _ = ch.QueueDelete(queue, false, false, false)
			_ = ch.ExchangeDelete(exchange, false, false)
		}
	})
	return exchange, queue, ch
}

// amqpSinkTestGet takes up to n messages off queue with basic.get.
func amqpSinkTestGet(t testing.TB, ch *amqp.Channel, queue string, n int, wait time.Duration) []amqp.Delivery {
	t.Helper()
	var out []amqp.Delivery
	deadline := time.Now().Add(wait)
	for len(out) < n && time.Now().Before(deadline) {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("basic.get: %v", err)
		}
		if !ok {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		out = append(out, d)
	}
	return out
}

func amqpSinkTestRecords(from, n int) *pipeline.Batch {
	b := &pipeline.Batch{}
	for i := from; i < from+n; i++ {
		r := &pipeline.Record{Time: time.Unix(1700000000, 0)}
		fs := r.SetFields()
		fs.Set("service", []string{"api", "web"}[i%2])
		fs.Set("n", int64(i))
		b.Records = append(b.Records, r)
	}
	return b
}

func newAMQPTestSink(t testing.TB, cfg *AMQPConfig, g pipeline.Guarantee) (*amqpSink, *testservices.Logs) {
	t.Helper()
	b, logs := testservices.Build(t, "test/sinks[0]/amqp", 1024, g)
	s, err := cfg.NewSink(b)
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s.(*amqpSink), logs
}

func mustTemplate(t testing.TB, src string) *pipeline.Template {
	t.Helper()
	tp, err := pipeline.CompileTemplate(src, pipeline.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func TestAMQPSinkPublishesWithConfirms(t *testing.T) {
	url := testservices.AMQP(t)
	exchange, queue, ch := amqpSinkTestTopology(t, url, "alert.#", nil)
	cfg := NewAMQPConfig()
	cfg.URL, cfg.Exchange, cfg.RoutingKey, cfg.MaxInFlight = url, exchange, mustTemplate(t, "alert.{{ service }}"), 100
	s, _ := newAMQPTestSink(t, cfg, pipeline.AtLeastOnce)
	ctx := context.Background()
	for i := 0; i < 5; i++ { // 500 records, more than max_in_flight
		if err := s.Write(ctx, amqpSinkTestRecords(i*100, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := amqpSinkTestGet(t, ch, queue, 500, 5*time.Second)
	if len(got) != 500 {
		t.Fatalf("consumer got %d messages, want 500", len(got))
	}
	ids := map[string]bool{}
	for i, d := range got {
		var v struct {
			Service string
			N       int
		}
		if err := json.Unmarshal(d.Body, &v); err != nil {
			t.Fatalf("message %d: %v: %s", i, err, d.Body)
		}
		if v.N != i || d.RoutingKey != "alert."+v.Service || d.DeliveryMode != amqp.Persistent ||
			d.ContentType != "application/json" || d.MessageId == "" || ids[d.MessageId] {
			t.Fatalf("message %d: %s key %q mode %d type %q id %q", i, d.Body, d.RoutingKey, d.DeliveryMode, d.ContentType, d.MessageId)
		}
		ids[d.MessageId] = true
	}
	if len(amqpSinkTestGet(t, ch, queue, 1, 200*time.Millisecond)) != 0 {
		t.Fatal("more messages than written")
	}
}

func TestAMQPSinkMandatoryUnroutableFailsFlush(t *testing.T) {
	url := testservices.AMQP(t)
	exchange, _, _ := amqpSinkTestTopology(t, url, "alert.#", nil)
	for _, mandatory := range []bool{true, false} {
		cfg := NewAMQPConfig()
		cfg.URL, cfg.Exchange, cfg.RoutingKey, cfg.Mandatory = url, exchange, mustTemplate(t, "nobody.{{ service }}"), mandatory
		s, _ := newAMQPTestSink(t, cfg, pipeline.AtLeastOnce)
		if err := s.Write(context.Background(), amqpSinkTestRecords(0, 3)); err != nil {
			t.Fatal(err)
		}
		err := s.Flush(context.Background())
		switch {
		case mandatory && (err == nil || !strings.Contains(err.Error(), "3 of 3 messages could not be routed") || !strings.Contains(err.Error(), "NO_ROUTE")):
			t.Fatalf("mandatory: Flush error %v, want 3 unroutable with NO_ROUTE", err)
		case !mandatory && err != nil:
			t.Fatalf("not mandatory: Flush error %v; the broker drops unroutable messages", err)
		}
	}
}

func TestAMQPSinkNackFailsFlush(t *testing.T) {
	url := testservices.AMQP(t)
	// A queue that holds 2 messages and rejects publishes beyond that: the
	// broker nacks them.
	exchange, _, _ := amqpSinkTestTopology(t, url, "#", amqp.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"})
	cfg := NewAMQPConfig()
	cfg.URL, cfg.Exchange = url, exchange
	s, _ := newAMQPTestSink(t, cfg, pipeline.AtLeastOnce)
	if err := s.Write(context.Background(), amqpSinkTestRecords(0, 5)); err != nil {
		t.Fatal(err)
	}
	err := s.Flush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "rejected (basic.nack) 3 of 5") {
		t.Fatalf("Flush error %v, want 3 of 5 nacked", err)
	}
}

func TestAMQPSinkReconnectsAndRepublishes(t *testing.T) {
	url := testservices.AMQP(t)
	exchange, queue, ch := amqpSinkTestTopology(t, url, "#", nil)
	proxy := testservices.StartProxy(t, url)
	cfg := NewAMQPConfig()
	cfg.URL, cfg.Exchange, cfg.MaxReconnectDelay = proxy.URL(url), exchange, 100*time.Millisecond
	s, logs := newAMQPTestSink(t, cfg, pipeline.AtLeastOnce)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Write(ctx, amqpSinkTestRecords(0, 100)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Cut the connection with writes unconfirmed, keep the server away for
	// a while, then let it back: Flush must get everything confirmed.
	proxy.SetDown(true)
	if err := s.Write(ctx, amqpSinkTestRecords(100, 100)); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(400 * time.Millisecond); proxy.SetDown(false) }()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush across a reconnect: %v", err)
	}
	got := amqpSinkTestGet(t, ch, queue, 200, 5*time.Second)
	byID := map[string]int{}
	ns := map[int]bool{}
	for _, d := range got {
		byID[d.MessageId]++
		var v struct{ N int }
		_ = json.Unmarshal(d.Body, &v)
		ns[v.N] = true
	}
	more := amqpSinkTestGet(t, ch, queue, 1000, 200*time.Millisecond)
	for _, d := range more { // republished duplicates, if any, carry the same id
		byID[d.MessageId]++
	}
	if len(ns) != 200 || len(byID) != 200 {
		t.Fatalf("got %d distinct records and %d distinct ids, want 200 of each", len(ns), len(byID))
	}
	if !strings.Contains(logs.String(), "reconnected") {
		t.Fatalf("no reconnect logged:\n%s", logs)
	}
}

func TestAMQPSinkBadTemplateValuesAreErrors(t *testing.T) {
	url := testservices.AMQP(t)
	exchange, _, _ := amqpSinkTestTopology(t, url, "#", nil)
	cfg := NewAMQPConfig()
	cfg.URL, cfg.Exchange, cfg.RoutingKey = url, exchange, mustTemplate(t, "k.{{ a + b }}.{{ long }}")
	s, _ := newAMQPTestSink(t, cfg, pipeline.AtLeastOnce)
	bad := &pipeline.Record{}
	bad.SetFields().Set("a", "text")
	bad.Fields().Set("b", int64(1))
	bad.Fields().Set("long", "x")
	long := &pipeline.Record{}
	long.SetFields().Set("a", int64(1))
	long.Fields().Set("b", int64(1))
	long.Fields().Set("long", strings.Repeat("x", 300))
	raw := &pipeline.Record{Value: []byte("not json at all {")} // no fields: a, b are null
	for name, r := range map[string]*pipeline.Record{"type error": bad, "too long": long} {
		if err := s.Check(r); err == nil {
			t.Errorf("%s: Check passed", name)
		}
		if err := s.Write(context.Background(), &pipeline.Batch{Records: []*pipeline.Record{r}}); err == nil || !strings.HasPrefix(err.Error(), "amqp: routing_key") {
			t.Errorf("%s: Write error %v", name, err)
		}
	}
	// A raw record has no a or b: null + null is an error too, not a panic.
	if err := s.Check(raw); err == nil || !strings.Contains(err.Error(), "invalid operation") {
		t.Errorf("raw record: %v", err)
	}
}

func TestAMQPSinkStartErrors(t *testing.T) {
	url := testservices.AMQP(t)
	badPass := strings.Replace(url, "guest:guest", "guest:wr0ng-s3cret", 1)
	for _, tc := range []struct {
		name, url, exchange, want string
	}{
		{"bad url", "amqp://guest:s3cret@127.0.0.1:x/", "", "invalid port"},
		{"nothing listening", "amqp://guest:s3cret@127.0.0.1:1/", "", "connection refused"},
		{"bad credentials", badPass, "", "username or password not allowed"},
		{"missing exchange", url, "weir_no_such_exchange", `exchange "weir_no_such_exchange" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.url == url && tc.name == "bad credentials" {
				t.Skip("WEIR_TEST_AMQP_URL does not use guest:guest")
			}
			cfg := NewAMQPConfig()
			cfg.URL, cfg.Exchange, cfg.ConnectTimeout = tc.url, tc.exchange, 300*time.Millisecond
			b, logs := testservices.Build(t, "test/sinks[0]/amqp", 10, pipeline.AtLeastOnce)
			s, err := cfg.NewSink(b)
			if err == nil {
				s.Close(context.Background())
				t.Fatal("NewSink succeeded")
			}
			if !strings.HasPrefix(err.Error(), "amqp: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want amqp: ... %s", err, tc.want)
			}
			if strings.Contains(err.Error()+logs.String(), "s3cret") {
				t.Fatalf("password leaked: %v\n%s", err, logs)
			}
		})
	}
}

// BenchmarkAMQPSink measures Write+Flush of 1024-record batches (one
// confirm round per batch) into a bound queue.
func BenchmarkAMQPSink(b *testing.B) {
	url := testservices.AMQP(b)
	exchange, queue, ch := amqpSinkTestTopology(b, url, "#", nil)
	cfg := NewAMQPConfig()
	cfg.URL, cfg.Exchange, cfg.RoutingKey = url, exchange, mustTemplate(b, "alert.{{ service }}")
	s, _ := newAMQPTestSink(b, cfg, pipeline.AtLeastOnce)
	batch := amqpSinkTestRecords(0, 1024)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	n := 0
	for n < b.N {
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		n += len(batch.Records)
		if n%(64*1024) == 0 {
			b.StopTimer()
			_, _ = ch.QueuePurge(queue, false)
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkAMQPRawPublish is the baseline for BenchmarkAMQPSink: plain
// amqp091, the same exchange, bodies and routing keys, 1024 publishes with
// deferred confirms then a wait for all of them, with no weir code.
func BenchmarkAMQPRawPublish(b *testing.B) {
	url := testservices.AMQP(b)
	exchange, queue, ch := amqpSinkTestTopology(b, url, "#", nil)
	pub, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	pch, err := pub.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := pch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	batch := amqpSinkTestRecords(0, 1024)
	bodies := make([][]byte, len(batch.Records))
	for i, r := range batch.Records {
		bodies[i] = r.AppendJSON(nil)
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	n := 0
	dcs := make([]*amqp.DeferredConfirmation, 0, 1024)
	for n < b.N {
		dcs = dcs[:0]
		for i, body := range bodies {
			dc, err := pch.PublishWithDeferredConfirmWithContext(ctx, exchange, "alert."+[]string{"api", "web"}[i%2], false, false,
				amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body})
			if err != nil {
				b.Fatal(err)
			}
			dcs = append(dcs, dc)
		}
		for _, dc := range dcs {
			if !dc.Wait() {
				b.Fatal("nack")
			}
		}
		n += len(bodies)
		if n%(64*1024) == 0 {
			b.StopTimer()
			_, _ = ch.QueuePurge(queue, false)
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}
