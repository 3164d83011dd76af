package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// natsSinkTestStream creates a stream capturing "<name>.>" with the plain
// nats.go client (the independent reader), deleted after the test.
func natsSinkTestStream(t testing.TB, url string) (jetstream.JetStream, string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToUpper(testservices.Name("WEIRSINK"))
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	return js, name
}

// natsSinkTestMessages reads every message of the stream.
func natsSinkTestMessages(t testing.TB, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.State.Msgs)
	if n == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, m)
			got++
		}
		if got == 0 {
			t.Fatalf("read %d of %d messages", len(out), n)
		}
	}
	return out
}

func natsSinkTestCount(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func newNATSTestSink(t testing.TB, cfg *NATSConfig, g pipeline.Guarantee, dir string) (*natsSink, *testservices.Logs) {
	t.Helper()
	b, logs := testservices.Build(t, "test/sinks[0]/nats", 1024, g)
	if dir != "" {
		b.Dir = dir
	}
	s, err := cfg.NewSink(b)
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s.(*natsSink), logs
}

func TestNATSSinkAtLeastOnce(t *testing.T) {
	url := testservices.NATS(t)
	js, stream := natsSinkTestStream(t, url)
	cfg := NewNATSConfig()
	cfg.URL, cfg.Subject, cfg.Stream, cfg.MaxInFlight = url, mustTemplate(t, stream+".alerts.{{ service }}"), stream, 100
	s, _ := newNATSTestSink(t, cfg, pipeline.AtLeastOnce, "")
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := s.Write(ctx, amqpSinkTestRecords(i*100, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := natsSinkTestMessages(t, js, stream)
	if len(msgs) != 500 {
		t.Fatalf("stream has %d messages, want 500", len(msgs))
	}
	ids := map[string]bool{}
	for i, m := range msgs {
		var v struct {
			Service string
			N       int
		}
		if err := json.Unmarshal(m.Data(), &v); err != nil || v.N != i || m.Subject() != stream+".alerts."+v.Service {
			t.Fatalf("message %d: %s on %s (%v)", i, m.Data(), m.Subject(), err)
		}
		id := m.Headers().Get(jetstream.MsgIDHeader)
		if id == "" || ids[id] {
			t.Fatalf("message %d: id %q missing or repeated", i, id)
		}
		ids[id] = true
	}
}

func TestNATSSinkExactlyOnce(t *testing.T) {
	url := testservices.NATS(t)
	js, stream := natsSinkTestStream(t, url)
	dir := t.TempDir()
	cfg := NewNATSConfig()
	cfg.URL, cfg.Subject, cfg.Stream = url, mustTemplate(t, stream+".out"), stream
	ctx := context.Background()
	s, _ := newNATSTestSink(t, cfg, pipeline.ExactlyOnce, dir)
	if err := s.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, amqpSinkTestRecords(0, 100)); err != nil {
		t.Fatal(err)
	}
	tok1, err := s.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := natsSinkTestCount(t, js, stream); n != 0 {
		t.Fatalf("%d messages visible after PreCommit, want 0", n)
	}
	for i := 0; i < 2; i++ { // Commit twice: the second changes nothing
		if err := s.Commit(ctx, tok1); err != nil {
			t.Fatal(err)
		}
		if n := natsSinkTestCount(t, js, stream); n != 100 {
			t.Fatalf("after commit %d: %d messages, want 100", i+1, n)
		}
	}
	// Epoch 2 is staged, then the process "crashes" before checkpoint 2
	// completes: recovery from checkpoint 1 discards it.
	if err := s.Write(ctx, amqpSinkTestRecords(100, 50)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PreCommit(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, amqpSinkTestRecords(150, 7)); err != nil { // not even sealed
		t.Fatal(err)
	}
	s.Close(ctx)
	s2, _ := newNATSTestSink(t, cfg, pipeline.ExactlyOnce, dir)
	if err := s2.Recover(ctx, tok1); err != nil {
		t.Fatal(err)
	}
	if n := natsSinkTestCount(t, js, stream); n != 100 {
		t.Fatalf("after Recover(checkpoint 1): %d messages, want 100", n)
	}
	if staged := s2.stage.Staged(); len(staged) != 0 {
		t.Fatalf("staged after recovery: %v, want nothing", staged)
	}
	// Replay: epoch 2 again, committed this time; then a crash in the
	// middle of committing epoch 3 (messages published, commit not
	// recorded): Recover publishes epoch 3 again and the stream drops the
	// duplicates.
	if err := s2.Write(ctx, amqpSinkTestRecords(100, 50)); err != nil {
		t.Fatal(err)
	}
	tok2, _ := s2.PreCommit(ctx, 2)
	if err := s2.Commit(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	if err := s2.Write(ctx, amqpSinkTestRecords(150, 30)); err != nil {
		t.Fatal(err)
	}
	tok3, _ := s2.PreCommit(ctx, 3)
	var t3 stageToken
	_ = json.Unmarshal(tok3, &t3)
	staged, err := os.ReadFile(filepath.Join(dir, t3.File))
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Commit(ctx, tok3); err != nil {
		t.Fatal(err)
	}
	s2.Close(ctx)
	// Undo the commit record as if the crash came just before it.
	if err := os.WriteFile(filepath.Join(dir, t3.File), staged, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats-committed.json"), []byte(`{"epoch":"2-x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s3, _ := newNATSTestSink(t, cfg, pipeline.ExactlyOnce, dir)
	if err := s3.Recover(ctx, tok3); err != nil {
		t.Fatal(err)
	}
	msgs := natsSinkTestMessages(t, js, stream)
	if len(msgs) != 180 {
		t.Fatalf("stream has %d messages, want 180 (each record once)", len(msgs))
	}
	for i, m := range msgs {
		var v struct{ N int }
		_ = json.Unmarshal(m.Data(), &v)
		if v.N != i {
			t.Fatalf("message %d is record %d", i, v.N)
		}
	}
	// A token whose staged epoch is gone and was never committed.
	bad, _ := json.Marshal(stageToken{V: 1, Checkpoint: 9, Nonce: "abc", Records: 3, File: "nats-9-abc.stage"})
	if err := s3.Commit(ctx, bad); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("commit of a lost epoch: %v", err)
	}
}

func TestNATSSinkReconnectsWithoutDuplicates(t *testing.T) {
	url := testservices.NATS(t)
	js, stream := natsSinkTestStream(t, url)
	proxy := testservices.StartProxy(t, url)
	cfg := NewNATSConfig()
	cfg.URL, cfg.Subject, cfg.MaxReconnectDelay = proxy.URL(url), mustTemplate(t, stream+".{{ service }}"), 100*time.Millisecond
	s, logs := newNATSTestSink(t, cfg, pipeline.AtLeastOnce, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Write(ctx, amqpSinkTestRecords(0, 100)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	proxy.SetDown(true)
	if err := s.Write(ctx, amqpSinkTestRecords(100, 100)); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(400 * time.Millisecond); proxy.SetDown(false) }()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush across a reconnect: %v", err)
	}
	// Messages published again carry the same id: the stream holds each once.
	if n := natsSinkTestCount(t, js, stream); n != 200 {
		t.Fatalf("stream has %d messages, want exactly 200", n)
	}
	if !strings.Contains(logs.String(), "reconnected") {
		t.Fatalf("no reconnect logged:\n%s", logs)
	}
}

func TestNATSSinkErrors(t *testing.T) {
	url := testservices.NATS(t)
	_, stream := natsSinkTestStream(t, url)
	t.Run("subject no stream captures", func(t *testing.T) {
		cfg := NewNATSConfig()
		cfg.URL, cfg.Subject, cfg.MaxReconnectDelay = url, mustTemplate(t, "weir.nobody.listens"), 20*time.Millisecond
		s, _ := newNATSTestSink(t, cfg, pipeline.AtLeastOnce, "")
		if err := s.Write(context.Background(), amqpSinkTestRecords(0, 3)); err != nil {
			t.Fatal(err)
		}
		err := s.Flush(context.Background())
		if err == nil || !strings.Contains(err.Error(), "no stream captures subject") {
			t.Fatalf("Flush: %v", err)
		}
	})
	t.Run("bad subject values", func(t *testing.T) {
		cfg := NewNATSConfig()
		cfg.URL, cfg.Subject = url, mustTemplate(t, stream+".{{ service }}")
		s, _ := newNATSTestSink(t, cfg, pipeline.AtLeastOnce, "")
		for _, v := range []any{"a b", "x.*", nil, "a..b"} {
			r := &pipeline.Record{}
			r.SetFields().Set("service", v)
			if err := s.Check(r); err == nil {
				t.Errorf("%v: Check passed", v)
			}
			if err := s.Write(context.Background(), &pipeline.Batch{Records: []*pipeline.Record{r}}); err == nil || !strings.Contains(err.Error(), "nats: subject") {
				t.Errorf("%v: Write: %v", v, err)
			}
		}
	})
	for _, tc := range []struct {
		name string
		edit func(c *NATSConfig)
		want string
	}{
		{"missing stream", func(c *NATSConfig) { c.Stream = "WEIR_NO_SUCH" }, `stream "WEIR_NO_SUCH" not found`},
		{"nothing listening", func(c *NATSConfig) { c.URL = "nats://u:s3cret@127.0.0.1:1" }, "gave up after connect_timeout"},
		{"wildcard subject", func(c *NATSConfig) { c.Subject = mustTemplate(t, "a.>") }, "wildcard"},
		{"no subject", func(c *NATSConfig) { c.Subject = nil }, "subject is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewNATSConfig()
			cfg.URL, cfg.Subject, cfg.ConnectTimeout = url, mustTemplate(t, stream+".x"), 300*time.Millisecond
			tc.edit(cfg)
			b, logs := testservices.Build(t, "test/sinks[0]/nats", 10, pipeline.AtLeastOnce)
			s, err := cfg.NewSink(b)
			if err == nil {
				s.Close(context.Background())
				t.Fatal("NewSink succeeded")
			}
			if !strings.HasPrefix(err.Error(), "nats: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want nats: ... %s", err, tc.want)
			}
			if strings.Contains(err.Error()+logs.String(), "s3cret") {
				t.Fatal("password leaked")
			}
		})
	}
}

// BenchmarkNATSSink measures Write+Flush (at_least_once) and
// Write+PreCommit+Commit (exactly_once) of 1024-record batches.
func BenchmarkNATSSink(b *testing.B) {
	url := testservices.NATS(b)
	for _, g := range []pipeline.Guarantee{pipeline.AtLeastOnce, pipeline.ExactlyOnce} {
		b.Run(string(g), func(b *testing.B) {
			js, stream := natsSinkTestStream(b, url)
			_ = js
			cfg := NewNATSConfig()
			cfg.URL, cfg.Subject = url, mustTemplate(b, stream+".alerts.{{ service }}")
			s, _ := newNATSTestSink(b, cfg, g, "")
			ctx := context.Background()
			batch := amqpSinkTestRecords(0, 1024)
			b.ResetTimer()
			start := time.Now()
			n := 0
			for ckpt := uint64(1); n < b.N; ckpt++ {
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
				if g == pipeline.ExactlyOnce {
					tok, err := s.PreCommit(ctx, ckpt)
					if err != nil {
						b.Fatal(err)
					}
					if err := s.Commit(ctx, tok); err != nil {
						b.Fatal(err)
					}
				} else if err := s.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				n += len(batch.Records)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkNATSRawPublish is the baseline for BenchmarkNATSSink: plain
// nats.go, 1024 async JetStream publishes with a Nats-Msg-Id each, then a
// wait for every PubAck, with no weir code.
func BenchmarkNATSRawPublish(b *testing.B) {
	url := testservices.NATS(b)
	js, stream := natsSinkTestStream(b, url)
	payload := []byte(`{"service":"api","n":1}`)
	b.ResetTimer()
	start := time.Now()
	n := 0
	futs := make([]jetstream.PubAckFuture, 0, 1024)
	for n < b.N {
		futs = futs[:0]
		for i := 0; i < 1024; i++ {
			m := &nats.Msg{Subject: stream + ".alerts.api", Data: payload, Header: nats.Header{}}
			m.Header.Set(jetstream.MsgIDHeader, fmt.Sprint("raw/", n+i))
			f, err := js.PublishMsgAsync(m)
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
		n += 1024
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}
