package sources

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// natsTestStream creates a stream capturing "<name>.>" with the plain
// nats.go client, deleted when the test ends.
func natsTestStream(t testing.TB, url string) (jetstream.JetStream, string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToUpper(testservices.Name("WEIR"))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	return js, name
}

// natsTestPublish publishes "<prefix>-<i>" to subject with a header.
func natsTestPublish(t testing.TB, js jetstream.JetStream, subject, prefix string, from, n int) {
	t.Helper()
	var futs []jetstream.PubAckFuture
	for i := from; i < from+n; i++ {
		m := nats.NewMsg(subject)
		m.Data = fmt.Appendf(nil, "%s-%d", prefix, i)
		m.Header.Set("X-N", fmt.Sprint(i))
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publish: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("publish ack timed out")
		}
	}
}

func newNATSTestSource(t testing.TB, cfg *NATSConfig, batch int) (pipeline.Source, *testservices.Logs) {
	t.Helper()
	b, logs := testservices.Build(t, "test/sources[0]/nats", batch, pipeline.ExactlyOnce)
	b.Index = 1
	src, err := cfg.NewSource(b)
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	return src, logs
}

func TestNATSSourceRoundTrip(t *testing.T) {
	url := testservices.NATS(t)
	js, stream := natsTestStream(t, url)
	natsTestPublish(t, js, stream+".logs.app", "m", 0, 300)
	natsTestPublish(t, js, stream+".metrics", "x", 0, 5) // filtered out
	cfg := NewNATSConfig()
	cfg.URL, cfg.Stream, cfg.Subject, cfg.Durable = url, stream, stream+".logs.>", "weir_rt"
	src, _ := newNATSTestSource(t, cfg, 64)
	recs := readAcking(t, src, 300, 10*time.Second)
	if len(recs) != 300 {
		t.Fatalf("got %d records, want 300", len(recs))
	}
	for i, r := range recs {
		if string(r.Value) != fmt.Sprintf("m-%d", i) || r.Origin.ID != fmt.Sprintf("%s:%d", stream, i+1) ||
			string(r.Key) != stream+".logs.app" || r.Origin.Name != stream+".logs.app" || r.Source != 1 {
			t.Fatalf("record %d: value %q id %q key %q", i, r.Value, r.Origin.ID, r.Key)
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "X-N" || string(r.Headers[0].Value) != fmt.Sprint(i) {
			t.Fatalf("record %d: headers %v", i, r.Headers)
		}
		if time.Since(r.Time) > time.Minute {
			t.Fatalf("record %d: time %v is not the stream timestamp", i, r.Time)
		}
	}
	start := time.Now()
	var b pipeline.Batch
	if ack, err := src.Read(context.Background(), &b); err != nil || ack != nil || len(b.Records) != 0 {
		t.Fatalf("idle Read: %d records, err %v", len(b.Records), err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("idle Read took %v", d)
	}
	testservices.Close(t, src)
	// The server recorded every ack: nothing pending for the durable.
	cons, err := js.Consumer(context.Background(), stream, "weir_rt")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 || info.AckFloor.Stream < 300 {
		t.Fatalf("consumer: %d unacked, %d pending, ack floor %d; want 0, 0, at least 300", info.NumAckPending, info.NumPending, info.AckFloor.Stream)
	}
}

func TestNATSSourceCreatesStreamOnlyWhenAsked(t *testing.T) {
	url := testservices.NATS(t)
	stream := strings.ToUpper(testservices.Name("WEIR"))
	cfg := NewNATSConfig()
	cfg.URL, cfg.Stream, cfg.Subject, cfg.ConnectTimeout = url, stream, stream+".in", time.Second
	b, _ := testservices.Build(t, "test/sources[0]/nats", 10, pipeline.ExactlyOnce)
	if _, err := cfg.NewSource(b); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("stream %q not found", stream)) {
		t.Fatalf("without create_stream: %v", err)
	}
	cfg.CreateStream = true
	src, _ := newNATSTestSource(t, cfg, 10)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), stream) })
	natsTestPublish(t, js, stream+".in", "m", 0, 3)
	if got := readAcking(t, src, 3, 5*time.Second); len(got) != 3 {
		t.Fatalf("got %d of 3", len(got))
	}
	testservices.Close(t, src)
}

func TestNATSSourceReconnects(t *testing.T) {
	url := testservices.NATS(t)
	js, stream := natsTestStream(t, url)
	proxy := testservices.StartProxy(t, url)
	cfg := NewNATSConfig()
	cfg.URL, cfg.Stream, cfg.Durable, cfg.MaxReconnectDelay = proxy.URL(url), stream, "weir_reconnect", 200*time.Millisecond
	cfg.AckWait = 2 * time.Second
	src, logs := newNATSTestSource(t, cfg, 50)
	defer testservices.Close(t, src)
	natsTestPublish(t, js, stream+".a", "m", 0, 100)
	seen := map[string]int{}
	for _, r := range readAcking(t, src, 50, 5*time.Second) {
		seen[r.Origin.ID]++
	}
	proxy.SetDown(true)
	natsTestPublish(t, js, stream+".a", "m", 100, 100)
	time.Sleep(300 * time.Millisecond)
	proxy.SetDown(false)
	deadline := time.Now().Add(15 * time.Second)
	for len(seen) < 200 && time.Now().Before(deadline) {
		recs, acks := testservices.Read(t, src, 1, time.Second)
		for _, a := range acks {
			_ = a(context.Background()) // an ack lost with the connection is redelivered
		}
		for _, r := range recs {
			seen[r.Origin.ID]++
		}
	}
	if len(seen) != 200 {
		t.Fatalf("saw %d distinct ids, want 200", len(seen))
	}
	if !strings.Contains(logs.String(), "reconnected") {
		t.Fatalf("no reconnect logged:\n%s", logs)
	}
}

func TestNATSSourceStartErrors(t *testing.T) {
	url := testservices.NATS(t)
	js, stream := natsTestStream(t, url)
	// A consumer that exists with another filter.
	if _, err := js.CreateConsumer(context.Background(), stream, jetstream.ConsumerConfig{Durable: "other", FilterSubject: stream + ".x", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(c *NATSConfig)
		want string
	}{
		{"no url", func(c *NATSConfig) { c.URL = "" }, "url is required"},
		{"nothing listening", func(c *NATSConfig) { c.URL = "nats://u:s3cret@127.0.0.1:1" }, "gave up after connect_timeout"},
		{"no stream", func(c *NATSConfig) { c.Stream = "" }, "stream is required"},
		{"missing stream", func(c *NATSConfig) { c.Stream = "WEIR_NO_SUCH_STREAM" }, `stream "WEIR_NO_SUCH_STREAM" not found`},
		{"bad subject", func(c *NATSConfig) { c.Subject = "a..b" }, "empty token"},
		{"bad stream name", func(c *NATSConfig) { c.Stream = "a.b" }, "must not contain"},
		{"other filter", func(c *NATSConfig) { c.Durable, c.Subject = "other", stream+".y" }, "filters"},
		{"missing credentials file", func(c *NATSConfig) { c.CredentialsFile = "/nonexistent.creds" }, "nonexistent.creds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewNATSConfig()
			cfg.URL, cfg.Stream, cfg.ConnectTimeout = url, stream, 300*time.Millisecond
			tc.edit(cfg)
			b, logs := testservices.Build(t, "test/sources[0]/nats", 10, pipeline.ExactlyOnce)
			src, err := cfg.NewSource(b)
			if err == nil {
				testservices.Close(t, src)
				t.Fatal("NewSource succeeded")
			}
			t.Logf("error: %v", err)
			if !strings.HasPrefix(err.Error(), "nats: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want nats: ... %s", err, tc.want)
			}
			if strings.Contains(err.Error()+logs.String(), "s3cret") {
				t.Fatal("password leaked")
			}
		})
	}
}

// BenchmarkNATSSource measures stream → Read+ack at batch size 1024 (an
// ack per message, the last a double ack that waits for the server); the
// stream is filled first.
func BenchmarkNATSSource(b *testing.B) {
	url := testservices.NATS(b)
	js, stream := natsTestStream(b, url)
	n := max(b.N, 1000)
	body := []byte(`{"level":"error","service":"api","latency_ms":12.5,"msg":"upstream timed out after 30s"}`)
	for i := 0; i < n; i += 4096 {
		var futs []jetstream.PubAckFuture
		for j := i; j < min(i+4096, n); j++ {
			f, err := js.PublishAsync(stream+".a", body)
			if err != nil {
				b.Fatal(err)
			}
			futs = append(futs, f)
		}
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			}
		}
	}
	cfg := NewNATSConfig()
	cfg.URL, cfg.Stream, cfg.Durable = url, stream, "bench"
	src, _ := newNATSTestSource(b, cfg, 1024)
	defer testservices.Close(b, src)
	benchmarkQueueSource(b, src, n, nil)
}

// TestAMQPMQTTNATSSourcesYAML loads the DESIGN.md examples of the amqp, mqtt and
// nats sources through the registry: the documented keys decode, the
// defaults apply, and bad values are positioned errors.
func TestAMQPMQTTNATSSourcesYAML(t *testing.T) {
	reg := pipeline.Default.Clone()
	reg.Register(pipeline.Entry{Kind: pipeline.KindSink, Name: "yaml_test_null", ExactlyOnce: true, NewConfig: func() any { return &amqpTestNullSink{} }})
	cfg, err := reg.Load("p.yaml", []byte(`pipelines:
  - name: p
    sources:
      - amqp:   { url: "amqp://guest:guest@127.0.0.1:5672/", queue: tasks }
      - mqtt:   { url: "tcp://127.0.0.1:1883", topics: ["sensors/+/temp"], qos: 1, client_id: weir-iot }
      - nats:   { url: "nats://127.0.0.1:4222", stream: LOGS, subject: "logs.>", durable: weir, ack_wait: 5s }
    sinks: [ { yaml_test_null: {} } ]
`))
	if err != nil {
		t.Fatal(err)
	}
	srcs := cfg.Pipelines[0].Sources
	a, m, n := srcs[0].Config.(*AMQPConfig), srcs[1].Config.(*MQTTConfig), srcs[2].Config.(*NATSConfig)
	if a.Queue != "tasks" || a.Linger != 5*time.Millisecond {
		t.Errorf("amqp: %+v", a)
	}
	if m.Topics[0] != "sensors/+/temp" || m.QoS != 1 || m.ClientID != "weir-iot" || m.SessionExpiry != 24*time.Hour {
		t.Errorf("mqtt: %+v", m)
	}
	if n.Stream != "LOGS" || n.Subject != "logs.>" || n.Durable != "weir" || n.AckWait != 5*time.Second || n.CreateStream {
		t.Errorf("nats: %+v", n)
	}
	for _, bad := range []struct{ src, want string }{
		{`mqtt: { url: "tcp://h:1883", topics: ["a/#/b"] }`, "'#' must be the whole last level"},
		{`mqtt: { url: "tcp://h:1883", topics: [x], qos: 5 }`, "qos 5"},
		{`nats: { url: "nats://h", stream: LOGS, create_stream: true }`, "create_stream needs a subject"},
		{`nats: { url: "nats://h", stream: LOGS, subject: "a.>.b" }`, "wildcards must be whole tokens"},
		{`amqp: { url: "amqp://u:s3cret@h/", queue: q, prefetch: 70000 }`, "prefetch 70000"},
		{`amqp: { url: "amqp://u:s3cret@h/", queue: q, no_such_option: 1 }`, "no_such_option"},
	} {
		_, err := reg.Load("p.yaml", []byte("pipelines:\n  - name: p\n    sources:\n      - "+bad.src+"\n    sinks: [ { yaml_test_null: {} } ]\n"))
		if err == nil || !strings.Contains(err.Error(), "p.yaml:4:") || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v", bad.src, err)
		}
	}
}
