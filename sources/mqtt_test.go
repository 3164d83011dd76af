package sources

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// mqttTestClient connects a plain paho client (the independent publisher),
// with a clean session, closed when the test ends.
func mqttTestClient(t testing.TB, rawURL, clientID string) *paho.Client {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: clientID})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// mqttTestPublish publishes payloads "<prefix>-<i>" for i in [from, from+n)
// at QoS 1, each with user property id=<prefix>-<i>, using workers
// concurrent publishers (order is then not kept across workers).
func mqttTestPublish(t testing.TB, rawURL, topic, prefix string, from, n, workers int) {
	t.Helper()
	if err := mqttTestPublishErr(t, rawURL, topic, prefix, from, n, workers); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// mqttTestPublishErr is mqttTestPublish for use off the test goroutine.
// Each of the workers clients runs perClient concurrent publishes (paho
// pipelines them up to the broker's receive maximum).
func mqttTestPublishErr(t testing.TB, rawURL, topic, prefix string, from, n, workers int) error {
	perClient := 1
	if workers > 1 {
		perClient = 16
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*perClient)
	lanes := workers * perClient
	for w := 0; w < workers; w++ {
		c := mqttTestClient(t, rawURL, testservices.Name("weir_pub"))
		for g := 0; g < perClient; g++ {
			lane := w*perClient + g
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := from + lane; i < from+n; i += lanes {
					id := fmt.Sprintf("%s-%d", prefix, i)
					_, err := c.Publish(context.Background(), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(id),
						Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "id", Value: id}}}})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// mqttTestForgetSession removes a persistent session from the broker:
// connect with clean start and no session expiry.
func mqttTestForgetSession(t testing.TB, rawURL, clientID string) {
	u, _ := url.Parse(rawURL)
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		return
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: clientID})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true}); err == nil {
		_ = c.Disconnect(&paho.Disconnect{})
	}
	conn.Close()
}

func newMQTTTestSource(t testing.TB, cfg *MQTTConfig, batch int, g pipeline.Guarantee) (pipeline.Source, *testservices.Logs) {
	t.Helper()
	if cfg.ClientID == "" {
		cfg.ClientID = testservices.Name("weir_src")
		t.Cleanup(func() { mqttTestForgetSession(t, testservices.MQTT(t), cfg.ClientID) })
	}
	b, logs := testservices.Build(t, "test/sources[0]/mqtt", batch, g)
	b.Index = 2
	src, err := cfg.NewSource(b)
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	return src, logs
}

// readAcking reads until n records arrived (acking each batch, as the
// runtime does) or timeout; it returns the records.
func readAcking(t testing.TB, src pipeline.Source, n int, timeout time.Duration) []*pipeline.Record {
	t.Helper()
	var out []*pipeline.Record
	deadline := time.Now().Add(timeout)
	for len(out) < n && time.Now().Before(deadline) {
		recs, acks := testservices.Read(t, src, 1, time.Until(deadline))
		testservices.Ack(t, acks)
		out = append(out, recs...)
	}
	return out
}

func TestMQTTSourceRoundTrip(t *testing.T) {
	mqttURL := testservices.MQTT(t)
	prefix := "weir/test/" + testservices.Name("t")
	cfg := NewMQTTConfig()
	cfg.URL, cfg.Topics, cfg.IDProperty = mqttURL, []string{prefix + "/+/temp"}, "id"
	src, _ := newMQTTTestSource(t, cfg, 64, pipeline.ExactlyOnce)
	mqttTestPublish(t, mqttURL, prefix+"/dev1/temp", "m", 0, 300, 1)
	mqttTestPublish(t, mqttURL, prefix+"/dev1/humidity", "x", 0, 5, 1) // not subscribed
	recs := readAcking(t, src, 300, 10*time.Second)
	if len(recs) != 300 {
		t.Fatalf("got %d records, want 300", len(recs))
	}
	for i, r := range recs {
		want := fmt.Sprintf("m-%d", i)
		if string(r.Value) != want || r.Origin.ID != want || string(r.Key) != prefix+"/dev1/temp" ||
			r.Origin.Name != prefix+"/dev1/temp" || r.Source != 2 || r.Time.IsZero() {
			t.Fatalf("record %d: value %q id %q key %q origin %+v", i, r.Value, r.Origin.ID, r.Key, r.Origin)
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "id" || string(r.Headers[0].Value) != want {
			t.Fatalf("record %d: headers %v", i, r.Headers)
		}
	}
	// Idle: an empty batch within about 200ms.
	start := time.Now()
	var b pipeline.Batch
	if ack, err := src.Read(context.Background(), &b); err != nil || ack != nil || len(b.Records) != 0 {
		t.Fatalf("idle Read: %d records, err %v", len(b.Records), err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("idle Read took %v", d)
	}
	testservices.Close(t, src)
	// Everything was acknowledged: the resumed session has nothing.
	src2, _ := newMQTTTestSource(t, cfg, 64, pipeline.ExactlyOnce)
	defer testservices.Close(t, src2)
	if again, _ := testservices.Read(t, src2, 1, 500*time.Millisecond); len(again) != 0 {
		t.Fatalf("%d acknowledged messages came back", len(again))
	}
}

func TestMQTTSourceKeepsSessionWhileStopped(t *testing.T) {
	mqttURL := testservices.MQTT(t)
	topic := "weir/test/" + testservices.Name("t")
	cfg := NewMQTTConfig()
	cfg.URL, cfg.Topics = mqttURL, []string{topic}
	src, _ := newMQTTTestSource(t, cfg, 100, pipeline.ExactlyOnce)
	testservices.Close(t, src)
	// Published while weir is stopped, with an independent client.
	if _, err := exec.LookPath("mosquitto_pub"); err == nil {
		u, _ := url.Parse(mqttURL)
		cmd := exec.Command("mosquitto_pub", "-h", u.Hostname(), "-p", u.Port(), "-V", "mqttv5", "-q", "1", "-t", topic, "-l")
		cmd.Stdin = strings.NewReader(strings.Repeat("offline\n", 50))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
	} else {
		mqttTestPublish(t, mqttURL, topic, "offline", 0, 50, 1)
	}
	src2, _ := newMQTTTestSource(t, cfg, 100, pipeline.ExactlyOnce)
	defer testservices.Close(t, src2)
	if got := readAcking(t, src2, 50, 5*time.Second); len(got) != 50 {
		t.Fatalf("got %d of the 50 messages published while stopped", len(got))
	}
}

func TestMQTTSourceReconnects(t *testing.T) {
	mqttURL := testservices.MQTT(t)
	topic := "weir/test/" + testservices.Name("t")
	proxy := testservices.StartProxy(t, mqttURL)
	cfg := NewMQTTConfig()
	cfg.URL, cfg.Topics, cfg.IDProperty, cfg.MaxReconnectDelay = proxy.URL(mqttURL), []string{topic}, "id", 200*time.Millisecond
	cfg.KeepAlive = 2 * time.Second
	src, logs := newMQTTTestSource(t, cfg, 50, pipeline.ExactlyOnce)
	defer testservices.Close(t, src)
	seen := map[string]int{}
	mqttTestPublish(t, mqttURL, topic, "m", 0, 100, 1)
	for _, r := range readAcking(t, src, 50, 5*time.Second) {
		seen[r.Origin.ID]++
	}
	recs, acks := testservices.Read(t, src, 1, 5*time.Second)
	for _, r := range recs {
		seen[r.Origin.ID]++
	}
	proxy.SetDown(true)
	testservices.Eventually(t, 5*time.Second, "connection loss noticed", func() bool { return strings.Contains(logs.String(), "connection lost") })
	for _, a := range acks { // the connection these arrived on is gone
		if err := a(context.Background()); err == nil || !strings.Contains(err.Error(), "sends them again") {
			t.Fatalf("stale ack: %v, want an error saying they are sent again", err)
		}
	}
	mqttTestPublish(t, mqttURL, topic, "m", 100, 100, 1) // queued by the broker for the session
	time.Sleep(300 * time.Millisecond)
	proxy.SetDown(false)
	// Messages that were queued in weir before the cut are read now; their
	// acks fail (stale connection) and the broker sends them again.
	deadline := time.Now().Add(10 * time.Second)
	stale := 0
	for len(seen) < 200 && time.Now().Before(deadline) {
		recs, acks := testservices.Read(t, src, 1, time.Second)
		for _, a := range acks {
			if err := a(context.Background()); err != nil {
				stale++
			}
		}
		for _, r := range recs {
			seen[r.Origin.ID]++
		}
	}
	if len(seen) != 200 {
		t.Fatalf("saw %d distinct ids, want 200", len(seen))
	}
	t.Logf("%d acks after the reconnect were for the lost connection", stale)
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	if dups == 0 {
		t.Fatal("the unacknowledged batch was not sent again")
	}
}

func TestMQTTSourceStartErrors(t *testing.T) {
	mqttURL := testservices.MQTT(t)
	for _, tc := range []struct {
		name string
		edit func(c *MQTTConfig)
		want string
	}{
		{"no url", func(c *MQTTConfig) { c.URL = "" }, "url is required"},
		{"bad scheme", func(c *MQTTConfig) { c.URL = "http://u:s3cret@127.0.0.1:1883" }, `scheme "http"`},
		{"bad url", func(c *MQTTConfig) { c.URL = "tcp://u:s3cret@127.0.0.1:port" }, "invalid port"},
		{"nothing listening", func(c *MQTTConfig) { c.URL = "tcp://u:s3cret@127.0.0.1:1" }, "gave up after connect_timeout"},
		{"no topics", func(c *MQTTConfig) { c.Topics = nil }, "at least one topic"},
		{"bad filter", func(c *MQTTConfig) { c.Topics = []string{"a/#/b"} }, "'#' must be the whole last level"},
		{"bad qos", func(c *MQTTConfig) { c.QoS = 3 }, "qos 3"},
		{"tls on tcp", func(c *MQTTConfig) { c.TLS = &pipeline.TLSOptions{} }, "tls is set"},
		{"missing password_file", func(c *MQTTConfig) { c.PasswordFile = "/nonexistent/pw" }, "password_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewMQTTConfig()
			cfg.URL, cfg.Topics, cfg.ConnectTimeout = mqttURL, []string{"weir/test/x"}, 300*time.Millisecond
			cfg.ClientID = testservices.Name("weir_err")
			tc.edit(cfg)
			b, logs := testservices.Build(t, "test/sources[0]/mqtt", 10, pipeline.ExactlyOnce)
			src, err := cfg.NewSource(b)
			if err == nil {
				testservices.Close(t, src)
				t.Fatal("NewSource succeeded")
			}
			t.Logf("error: %v", err)
			if !strings.HasPrefix(err.Error(), "mqtt: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want mqtt: ... %s", err, tc.want)
			}
			if strings.Contains(err.Error()+logs.String(), "s3cret") {
				t.Fatalf("password leaked: %v\n%s", err, logs)
			}
		})
	}
	t.Run("bad credentials", func(t *testing.T) {
		cfg := NewMQTTConfig()
		u, _ := url.Parse(mqttURL)
		u.User = url.UserPassword("weir-nobody", "wr0ng-s3cret")
		cfg.URL, cfg.Topics, cfg.ConnectTimeout = u.String(), []string{"weir/test/x"}, time.Second
		cfg.ClientID = testservices.Name("weir_err")
		b, logs := testservices.Build(t, "test/sources[0]/mqtt", 10, pipeline.ExactlyOnce)
		src, err := cfg.NewSource(b)
		if err == nil {
			testservices.Close(t, src)
			mqttTestForgetSession(t, mqttURL, cfg.ClientID)
			t.Skip("the broker accepts any credentials (allow_anonymous, no password file): refused credentials cannot be tested here")
		}
		if !strings.Contains(err.Error(), "bad user name or password") && !strings.Contains(err.Error(), "not authorized") {
			t.Fatalf("error %q does not say the credentials were refused", err)
		}
		if strings.Contains(err.Error()+logs.String(), "s3cret") {
			t.Fatal("password leaked")
		}
	})
}

// BenchmarkMQTTSource measures broker → Read+ack at batch size 1024 (QoS 1),
// with 8 publishers running concurrently: the broker keeps at most
// max_queued_messages (1000 by default) for a session, so the messages
// cannot all be queued up front.
func BenchmarkMQTTSource(b *testing.B) {
	mqttURL := testservices.MQTT(b)
	topic := "weir/bench/" + testservices.Name("t")
	cfg := NewMQTTConfig()
	cfg.URL, cfg.Topics = mqttURL, []string{topic}
	src, _ := newMQTTTestSource(b, cfg, 1024, pipeline.ExactlyOnce)
	defer testservices.Close(b, src)
	n := max(b.N, 1000)
	pubErr := make(chan error, 1)
	benchmarkQueueSource(b, src, n, func() {
		go func() { pubErr <- mqttTestPublishErr(b, mqttURL, topic, "m", 0, n, 8) }()
	})
	if err := <-pubErr; err != nil {
		b.Fatal(err)
	}
}
