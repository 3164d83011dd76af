package sinks

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// mqttTestSubscriber subscribes a plain paho client (the independent
// reader) to filter at QoS 1 and collects what arrives.
type mqttTestSubscriber struct {
	mu   sync.Mutex // guards msgs
	msgs []*paho.Publish
}

func (m *mqttTestSubscriber) all() []*paho.Publish {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*paho.Publish(nil), m.msgs...)
}

func mqttTestSubscribe(t testing.TB, rawURL, filter string) *mqttTestSubscriber {
	t.Helper()
	u, _ := url.Parse(rawURL)
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sub := &mqttTestSubscriber{}
	id := testservices.Name("weir_sub")
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: id,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			sub.mu.Lock()
			sub.msgs = append(sub.msgs, pr.Packet)
			sub.mu.Unlock()
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return sub
}

func mqttTestRecords(from, n int, devices ...string) *pipeline.Batch {
	b := &pipeline.Batch{}
	for i := from; i < from+n; i++ {
		r := &pipeline.Record{}
		r.SetFields().Set("device", devices[i%len(devices)])
		r.Fields().Set("n", int64(i))
		b.Records = append(b.Records, r)
	}
	return b
}

func newMQTTTestSink(t testing.TB, cfg *MQTTConfig) (*mqttSink, *testservices.Logs) {
	t.Helper()
	b, logs := testservices.Build(t, "test/sinks[0]/mqtt", 1024, pipeline.AtLeastOnce)
	s, err := cfg.NewSink(b)
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s.(*mqttSink), logs
}

// mqttTestNs decodes the "n" of each message per topic, in arrival order.
func mqttTestNs(t testing.TB, msgs []*paho.Publish) map[string][]int {
	out := map[string][]int{}
	for _, m := range msgs {
		var v struct{ N int }
		if err := json.Unmarshal(m.Payload, &v); err != nil {
			t.Fatalf("payload %q: %v", m.Payload, err)
		}
		out[m.Topic] = append(out[m.Topic], v.N)
	}
	return out
}

func TestMQTTSinkPublishesInTopicOrder(t *testing.T) {
	mqttURL := testservices.MQTT(t)
	prefix := "weir/test/" + testservices.Name("t")
	sub := mqttTestSubscribe(t, mqttURL, prefix+"/#")
	cfg := NewMQTTConfig()
	cfg.URL, cfg.Topic, cfg.Workers = mqttURL, mustTemplate(t, prefix+"/{{ device }}/avg"), 4
	s, _ := newMQTTTestSink(t, cfg)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := s.Write(ctx, mqttTestRecords(i*100, 100, "d1", "d2", "d3", "d4", "d5")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Flush returned: every message is acknowledged by the broker, so the
	// subscriber gets all 300 promptly.
	testservices.Eventually(t, 5*time.Second, "300 messages", func() bool { return len(sub.all()) >= 300 })
	byTopic := mqttTestNs(t, sub.all())
	if len(byTopic) != 5 {
		t.Fatalf("got topics %v", byTopic)
	}
	for topic, ns := range byTopic {
		if len(ns) != 60 || !sort.IntsAreSorted(ns) {
			t.Fatalf("topic %s: %d messages, in order %v", topic, len(ns), sort.IntsAreSorted(ns))
		}
		if !strings.HasPrefix(topic, prefix+"/d") || !strings.HasSuffix(topic, "/avg") {
			t.Fatalf("topic %q", topic)
		}
	}
}

func TestMQTTSinkRetainKeepsLastValue(t *testing.T) {
	mqttURL := testservices.MQTT(t)
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Skip("mosquitto_sub not installed")
	}
	prefix := "weir/test/" + testservices.Name("t")
	cfg := NewMQTTConfig()
	cfg.URL, cfg.Topic, cfg.Retain = mqttURL, mustTemplate(t, prefix+"/{{ device }}"), true
	s, _ := newMQTTTestSink(t, cfg)
	t.Cleanup(func() { // clear the retained messages
		u, _ := url.Parse(mqttURL)
		for _, d := range []string{"a", "b"} {
			_ = exec.Command("mosquitto_pub", "-h", u.Hostname(), "-p", u.Port(), "-r", "-n", "-t", prefix+"/"+d).Run()
		}
	})
	if err := s.Write(context.Background(), mqttTestRecords(0, 200, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A subscriber that comes later gets the retained (last) value per topic.
	u, _ := url.Parse(mqttURL)
	out, err := exec.Command("mosquitto_sub", "-h", u.Hostname(), "-p", u.Port(), "-t", prefix+"/#", "-v", "-C", "2", "-W", "5").Output()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(lines)
	want := []string{prefix + `/a {"device":"a","n":198}`, prefix + `/b {"device":"b","n":199}`}
	if len(lines) != 2 || lines[0] != want[0] || lines[1] != want[1] {
		t.Fatalf("retained:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestMQTTSinkReconnects(t *testing.T) {
	mqttURL := testservices.MQTT(t)
	prefix := "weir/test/" + testservices.Name("t")
	sub := mqttTestSubscribe(t, mqttURL, prefix+"/#")
	proxy := testservices.StartProxy(t, mqttURL)
	cfg := NewMQTTConfig()
	cfg.URL, cfg.Topic, cfg.MaxReconnectDelay = proxy.URL(mqttURL), mustTemplate(t, prefix+"/{{ device }}"), 100*time.Millisecond
	s, logs := newMQTTTestSink(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.Write(ctx, mqttTestRecords(0, 100, "a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	proxy.SetDown(true)
	if err := s.Write(ctx, mqttTestRecords(100, 100, "a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(400 * time.Millisecond); proxy.SetDown(false) }()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush across a reconnect: %v", err)
	}
	testservices.Eventually(t, 5*time.Second, "all 200 records", func() bool {
		seen := map[int]bool{}
		for _, ns := range mqttTestNs(t, sub.all()) {
			for _, n := range ns {
				seen[n] = true
			}
		}
		return len(seen) == 200
	})
	if !strings.Contains(logs.String(), "reconnected") {
		t.Fatalf("no reconnect logged:\n%s", logs)
	}
}

func TestMQTTSinkBadTopicValuesAreErrors(t *testing.T) {
	mqttURL := testservices.MQTT(t)
	cfg := NewMQTTConfig()
	cfg.URL, cfg.Topic = mqttURL, mustTemplate(t, "{{ device }}")
	s, _ := newMQTTTestSink(t, cfg)
	for name, v := range map[string]any{"wildcard +": "a/+/b", "wildcard #": "a/#", "empty": nil, "nul": "a\x00b"} {
		r := &pipeline.Record{}
		r.SetFields().Set("device", v)
		if err := s.Check(r); err == nil {
			t.Errorf("%s: Check passed", name)
		}
		if err := s.Write(context.Background(), &pipeline.Batch{Records: []*pipeline.Record{r}}); err == nil || !strings.Contains(err.Error(), "mqtt: topic") {
			t.Errorf("%s: Write error %v", name, err)
		}
	}
	cfg2 := NewMQTTConfig()
	cfg2.URL, cfg2.Topic = mqttURL, mustTemplate(t, "t/{{ 1 + device }}")
	s2, _ := newMQTTTestSink(t, cfg2)
	r := &pipeline.Record{}
	r.SetFields().Set("device", "x")
	if err := s2.Check(r); err == nil {
		t.Error("type error: Check passed")
	}
	if err := s2.Flush(context.Background()); err != nil {
		t.Errorf("Flush after refused writes: %v", err)
	}
}

func TestMQTTSinkStartErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *MQTTConfig)
		want string
	}{
		{"no topic", func(c *MQTTConfig) { c.Topic = nil }, "topic is required"},
		{"wildcard topic", func(c *MQTTConfig) { c.Topic = mustTemplate(t, "a/#") }, "wildcard"},
		{"bad url", func(c *MQTTConfig) { c.URL = "mqtt://u:s3cret@[::1" }, "url mqtt://xxxxx@"},
		{"nothing listening", func(c *MQTTConfig) { c.URL = "tcp://u:s3cret@127.0.0.1:1" }, "gave up after connect_timeout"},
		{"qos", func(c *MQTTConfig) { c.QoS = -1 }, "qos -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewMQTTConfig()
			cfg.URL, cfg.Topic, cfg.ConnectTimeout = "tcp://127.0.0.1:1", mustTemplate(t, "t"), 200*time.Millisecond
			tc.edit(cfg)
			b, logs := testservices.Build(t, "test/sinks[0]/mqtt", 10, pipeline.AtLeastOnce)
			s, err := cfg.NewSink(b)
			if err == nil {
				s.Close(context.Background())
				t.Fatal("NewSink succeeded")
			}
			if !strings.HasPrefix(err.Error(), "mqtt: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want mqtt: ... %s", err, tc.want)
			}
			if strings.Contains(err.Error()+logs.String(), "s3cret") {
				t.Fatalf("password leaked: %v\n%s", err, logs)
			}
		})
	}
}

// BenchmarkMQTTSink measures Write+Flush of 1024-record batches at QoS 1,
// over 16 topics (16 workers: one round trip per message per worker).
func BenchmarkMQTTSink(b *testing.B) {
	mqttURL := testservices.MQTT(b)
	prefix := "weir/bench/" + testservices.Name("t")
	cfg := NewMQTTConfig()
	cfg.URL, cfg.Topic = mqttURL, mustTemplate(b, prefix+"/{{ device }}")
	s, _ := newMQTTTestSink(b, cfg)
	devices := make([]string, 16)
	for i := range devices {
		devices[i] = string(rune('a' + i))
	}
	batch := mqttTestRecords(0, 1024, devices...)
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
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}

// TestMQTTSinkTLS publishes over ssl:// through a TLS-terminating proxy in
// front of the real broker.
func TestMQTTSinkTLS(t *testing.T) {
	mqttURL := testservices.MQTT(t)
	prefix := "weir/test/" + testservices.Name("t")
	sub := mqttTestSubscribe(t, mqttURL, prefix+"/#")
	proxy, caFile := testservices.StartTLSProxy(t, mqttURL)
	cfg := NewMQTTConfig()
	cfg.URL, cfg.Topic = "ssl://"+proxy.Addr(), mustTemplate(t, prefix+"/{{ device }}")
	cfg.TLS = &pipeline.TLSOptions{CAFile: caFile}
	s, _ := newMQTTTestSink(t, cfg)
	if err := s.Write(context.Background(), mqttTestRecords(0, 10, "a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	testservices.Eventually(t, 5*time.Second, "10 messages over TLS", func() bool { return len(sub.all()) == 10 })

	// System roots: the proxy is not trusted. A certificate error ends the
	// start at once; the timeout only bounds a machine under heavy load.
	cfg.TLS, cfg.ConnectTimeout = &pipeline.TLSOptions{}, 10*time.Second
	b, _ := testservices.Build(t, "test/sinks[0]/mqtt", 10, pipeline.AtLeastOnce)
	if s2, err := cfg.NewSink(b); err == nil {
		s2.Close(context.Background())
		t.Fatal("connected to an untrusted server")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("error %q does not mention the certificate", err)
	}
}

// BenchmarkMQTTRawPublish is the baseline for BenchmarkMQTTSink: plain
// paho, 16 goroutines (one per topic, as the sink's workers) publishing
// QoS 1 and waiting for each PUBACK, 1024 messages per round.
func BenchmarkMQTTRawPublish(b *testing.B) {
	mqttURL := testservices.MQTT(b)
	prefix := "weir/bench/" + testservices.Name("t")
	c := mqttTestSubscribeless(b, mqttURL)
	payload := []byte(`{"device":"a","n":1}`)
	b.ResetTimer()
	start := time.Now()
	n := 0
	for n < b.N {
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 1024/16; i++ {
					if _, err := c.Publish(context.Background(), &paho.Publish{Topic: prefix + "/" + string(rune('a'+w)), QoS: 1, Payload: payload}); err != nil {
						b.Error(err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		n += 1024
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}

// mqttTestSubscribeless connects a plain paho client for publishing.
func mqttTestSubscribeless(t testing.TB, rawURL string) *paho.Client {
	t.Helper()
	u, _ := url.Parse(rawURL)
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	id := testservices.Name("weir_pub")
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: id})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}
