package sinks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/internal/mqttconn"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("mqtt",
		"publish records as JSON to MQTT v5 topics; Flush waits for the broker's acknowledgements",
		false, NewMQTTConfig)
}

// MQTTConfig is the `mqtt:` sink: each record is published as one JSON
// message (Record.AppendJSON) to a topic rendered per record.
//
//	sinks:
//	  - mqtt: { url: "tcp://127.0.0.1:1883", topic: "devices/{{ device }}/avg",
//	            qos: 1, retain: true }
//
// Delivery: at least once at QoS 1 and 2 — Flush (at every checkpoint)
// returns only when the broker has acknowledged every message written
// since the last Flush (PUBACK, or PUBCOMP for QoS 2); a message the broker
// refuses (a PUBACK reason code of 0x80 or more, e.g. not authorized) makes
// Flush fail. After a connection loss the sink reconnects with backoff and
// publishes unacknowledged messages again. At QoS 0 Flush only means the
// messages were written to the connection. Messages to one topic are
// published in record order (so a retained topic ends at its last value);
// different topics are published in parallel by Workers publishers. MQTT
// has no transactions, so the sink is not exactly-once capable.
type MQTTConfig struct {
	// Conn holds the connection options (mqttconn.Conn): url, username,
	// password_file, tls and the timeouts.
	mqttconn.Conn `yaml:",inline"`
	// Topic is a template rendered per record ("devices/{{ device }}/avg").
	// A rendered topic must not be empty nor contain + or #. Required.
	Topic *pipeline.Template `yaml:"topic"`
	// QoS of the messages: 0, 1 (default) or 2.
	QoS int `yaml:"qos"`
	// Retain asks the broker to keep the last message of each topic for
	// new subscribers. Default false.
	Retain bool `yaml:"retain"`
	// ClientID of the connection; default "weir-<pipeline>-<component>-"
	// plus a random suffix (the sink keeps no session across restarts).
	ClientID string `yaml:"client_id"`
	// Workers is how many topics are published to in parallel; default 16.
	Workers int `yaml:"workers"`
}

// NewMQTTConfig returns an MQTTConfig with its defaults.
func NewMQTTConfig() *MQTTConfig {
	return &MQTTConfig{Conn: mqttconn.DefaultConn(), QoS: 1, Workers: 16}
}

// Validate implements pipeline.Validator.
func (c *MQTTConfig) Validate() error {
	if _, err := mqttconn.ParseURL(c.URL, c.TLS); err != nil {
		return err
	}
	if c.Topic == nil || c.Topic.Source == "" {
		return errors.New("mqtt: topic is required (a template such as devices/{{ device }}/avg)")
	}
	if c.Topic.IsConstant() {
		if err := mqttCheckTopic(c.Topic.Source); err != nil {
			return err
		}
	}
	if c.QoS < 0 || c.QoS > 2 {
		return fmt.Errorf("mqtt: qos %d is not 0, 1 or 2", c.QoS)
	}
	if c.Workers < 1 || c.Workers > 1024 {
		return fmt.Errorf("mqtt: workers %d is outside 1..1024", c.Workers)
	}
	if c.KeepAlive < 0 || c.KeepAlive > 65535*time.Second || c.ConnectTimeout < 0 || c.MaxReconnectDelay < 0 {
		return errors.New("mqtt: durations must not be negative (keep_alive at most 65535s)")
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	return nil
}

// mqttCheckTopic checks a topic name to publish to.
func mqttCheckTopic(t string) error {
	switch {
	case t == "":
		return errors.New("mqtt: topic is empty")
	case len(t) > 65535:
		return fmt.Errorf("mqtt: topic is %d bytes, more than 65535", len(t))
	case !utf8.ValidString(t) || strings.ContainsRune(t, 0):
		return fmt.Errorf("mqtt: topic %q is not valid UTF-8 without NUL", t)
	case strings.ContainsAny(t, "+#"):
		return fmt.Errorf("mqtt: topic %q contains a wildcard (+ or #), which cannot be published to", t)
	}
	return nil
}

// NewSink implements pipeline.SinkConfig; it connects before returning.
func (c *MQTTConfig) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	u, _ := mqttconn.ParseURL(c.URL, c.TLS)
	s := &mqttSink{cfg: *c, safeURL: connect.RedactURL(c.URL), logger: b.Logger, guarantee: b.Guarantee,
		topic: c.Topic.Clone(), checkTopic: c.Topic.Clone(), seed: maphash.MakeSeed()}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	clientID := c.ClientID
	if clientID == "" {
		var r [4]byte
		_, _ = rand.Read(r[:])
		id := b.Component
		if id == "" {
			id = fmt.Sprintf("%s/sinks[%d]/mqtt", b.Pipeline, b.Index)
		}
		clientID = "weir-" + strings.NewReplacer("/", "-", "[", "-", "]", "").Replace(id) + "-" + hex.EncodeToString(r[:])
	}
	user, pass := u.User.Username(), ""
	if p, ok := u.User.Password(); ok {
		pass = p
	}
	if c.Username != "" {
		user = c.Username
	}
	if c.PasswordFile != "" {
		var err error
		if pass, err = connect.ReadSecretFile(c.PasswordFile); err != nil {
			return nil, fmt.Errorf("mqtt: %w", err)
		}
	}
	server := *u
	server.User = nil
	tlsCfg, err := c.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	up := make(chan error, 1)
	var connected atomic.Bool // the first connection came up
	var lastErr error
	var mu sync.Mutex // guards lastErr
	var bo connect.Backoff
	bo.Max = c.MaxReconnectDelay
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{&server},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     uint16(c.KeepAlive / time.Second),
		CleanStartOnInitialConnection: true,
		// Keep the session across reconnects so QoS 1/2 exchanges in
		// flight complete; nothing is kept across restarts.
		SessionExpiryInterval: 300,
		ReconnectBackoff: func(attempt int) time.Duration {
			if attempt == 0 {
				bo.Reset()
				return 0
			}
			return bo.Next()
		},
		ConnectTimeout:  connect.StartWait(c.ConnectTimeout),
		ConnectUsername: user,
		ConnectPassword: []byte(pass),
		OnConnectionUp: func(*autopaho.ConnectionManager, *paho.Connack) {
			if connected.Swap(true) {
				s.logger.Info("mqtt: reconnected", "url", s.safeURL)
				return
			}
			select {
			case up <- nil:
			default:
			}
		},
		OnConnectionDown: func() bool {
			s.logger.Warn("mqtt: connection lost; reconnecting", "url", s.safeURL)
			return true
		},
		OnConnectError: func(err error) {
			if pipeline.IsCertificateError(err) {
				select {
				case up <- fmt.Errorf("mqtt: connect to %s: %w", s.safeURL, err):
				default:
				}
			}
			var ce *autopaho.ConnackError
			if errors.As(err, &ce) && ce.ReasonCode >= 0x80 {
				select {
				case up <- fmt.Errorf("mqtt: connect to %s: broker refused client %q: reason code 0x%02x %s", s.safeURL, clientID, ce.ReasonCode, ce.Reason):
				default:
				}
			}
			mu.Lock()
			lastErr = err
			mu.Unlock()
			s.logger.Warn("mqtt: connect failed; retrying", "url", s.safeURL, "err", err)
		},
		ClientConfig: paho.ClientConfig{ClientID: clientID,
			OnClientError: func(err error) { s.logger.Debug("mqtt: client error", "err", err) }},
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if s.cm, err = autopaho.NewConnection(ctx, cfg); err != nil {
		cancel()
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	timer := time.NewTimer(connect.StartWait(c.ConnectTimeout))
	defer timer.Stop()
	select {
	case err := <-up:
		if err != nil {
			cancel()
			return nil, err
		}
	case <-timer.C:
		cancel()
		mu.Lock()
		defer mu.Unlock()
		reason := "no connection"
		if lastErr != nil {
			reason = lastErr.Error()
		}
		return nil, fmt.Errorf("mqtt: connect to %s: %s (gave up after connect_timeout %v)", s.safeURL, reason, c.ConnectTimeout)
	}
	s.queues = make([]chan mqttJob, c.Workers)
	for i := range s.queues {
		s.queues[i] = make(chan mqttJob, 256)
		s.workers.Add(1)
		go s.work(ctx, s.queues[i])
	}
	return s, nil
}

// mqttSink implements pipeline.Sink, pipeline.Flusher and
// pipeline.RecordChecker.
//
// Write renders each record's topic and hands it to the worker that owns
// the topic (by hash), so one topic's messages are published in order.
// Workers publish one message at a time, waiting for its acknowledgement,
// and retry through reconnects. inflight counts messages handed to workers
// and not yet finished; Flush waits for it to reach zero.
type mqttSink struct {
	cfg       MQTTConfig
	safeURL   string
	logger    *slog.Logger
	guarantee pipeline.Guarantee
	cm        *autopaho.ConnectionManager
	cancel    context.CancelFunc // stops the workers and the connection
	seed      maphash.Seed

	topic      *pipeline.Template // used by Write only
	checkMu    sync.Mutex         // guards checkTopic (Check may run on another goroutine)
	checkTopic *pipeline.Template

	queues  []chan mqttJob
	workers sync.WaitGroup
	topicB  []byte

	mu       sync.Mutex // guards inflight, failed, idle
	inflight int
	failed   error         // first refused message since the last Flush
	idle     chan struct{} // closed when inflight drops to 0; nil when nobody waits
}

type mqttJob struct {
	topic   string
	payload []byte
}

// Check implements pipeline.RecordChecker: a record whose topic cannot be
// rendered, or renders to a name that cannot be published to, goes to the
// dead-letter output.
func (s *mqttSink) Check(r *pipeline.Record) error {
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	t, err := s.checkTopic.Render(nil, r)
	if err != nil {
		return fmt.Errorf("mqtt: topic: %w", err)
	}
	return mqttCheckTopic(string(t))
}

// Write implements pipeline.Sink. It blocks only when the workers' queues
// are full (backpressure).
func (s *mqttSink) Write(ctx context.Context, b *pipeline.Batch) error {
	for _, r := range b.Records {
		var err error
		if s.topicB, err = s.topic.Render(s.topicB[:0], r); err != nil {
			return fmt.Errorf("mqtt: topic for record %s@%d: %w", r.Origin.Name, r.Origin.Offset, err)
		}
		topic := string(s.topicB)
		if err := mqttCheckTopic(topic); err != nil {
			return fmt.Errorf("record %s@%d: %w", r.Origin.Name, r.Origin.Offset, err)
		}
		q := s.queues[maphash.String(s.seed, topic)%uint64(len(s.queues))]
		s.mu.Lock()
		s.inflight++
		s.mu.Unlock()
		select {
		case q <- mqttJob{topic: topic, payload: r.AppendJSON(nil)}:
		case <-ctx.Done():
			s.done(nil)
			return ctx.Err()
		}
	}
	return nil
}

// work publishes the jobs of one queue in order.
func (s *mqttSink) work(ctx context.Context, q chan mqttJob) {
	defer s.workers.Done()
	p := &paho.Publish{QoS: byte(s.cfg.QoS), Retain: s.cfg.Retain,
		Properties: &paho.PublishProperties{ContentType: "application/json"}}
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q:
			p.Topic, p.Payload = j.topic, j.payload
			s.done(s.publish(ctx, p))
		}
	}
}

// publish sends one message and waits for its acknowledgement, retrying
// across connection losses until it is acknowledged, refused, or the sink
// closes.
func (s *mqttSink) publish(ctx context.Context, p *paho.Publish) error {
	var bo connect.Backoff
	bo.Max = s.cfg.MaxReconnectDelay
	for {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := s.cm.Publish(pctx, p)
		cancel()
		if err == nil {
			return nil
		}
		if resp != nil && resp.ReasonCode >= 0x80 {
			reason := ""
			if resp.Properties != nil {
				reason = resp.Properties.ReasonString
			}
			return fmt.Errorf("mqtt: broker refused a message to topic %q: reason code 0x%02x %s", p.Topic, resp.ReasonCode, reason)
		}
		if errors.Is(err, paho.ErrInvalidArguments) {
			return fmt.Errorf("mqtt: publish to topic %q: %w", p.Topic, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Connection down or lost mid-publish: wait for the next
		// connection and publish again (a duplicate, if the first got
		// through: at least once).
		_ = s.cm.AwaitConnection(ctx)
		if err := connect.SleepContext(ctx, bo.Next()); err != nil {
			return err
		}
	}
}

// done finishes one in-flight message; err non-nil marks a refused one.
func (s *mqttSink) done(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if err != nil && s.failed == nil && !errors.Is(err, context.Canceled) {
		s.failed = err
	}
	if s.inflight == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// Flush implements pipeline.Flusher: it waits until every message written
// so far is acknowledged (or written, at QoS 0), and reports the first
// message the broker refused.
func (s *mqttSink) Flush(ctx context.Context) error {
	s.mu.Lock()
	if s.inflight == 0 {
		err := s.failed
		s.failed = nil
		s.mu.Unlock()
		return err
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
		s.mu.Lock()
		n := s.inflight
		s.mu.Unlock()
		return fmt.Errorf("mqtt: %d messages not acknowledged: %w", n, ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.failed
	s.failed = nil
	return err
}

// Close implements pipeline.Sink: it flushes (within ctx; this sink is
// never used under exactly_once), stops the workers and disconnects.
func (s *mqttSink) Close(ctx context.Context) error {
	err := s.Flush(ctx)
	s.cancel()
	s.workers.Wait()
	dctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.cm.Disconnect(dctx)
	return err
}
