package sinks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/weirhq/weir/internal/amqpconn"
	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("amqp",
		"publish records as JSON to a RabbitMQ (AMQP 0-9-1) exchange, with publisher confirms",
		false, NewAMQPConfig)
}

// AMQPConfig is the `amqp:` sink: every record is published as one JSON
// message (Record.AppendJSON) to an exchange, with a routing key rendered
// per record.
//
//	sinks:
//	  - amqp: { url: "amqp://guest:guest@127.0.0.1:5672/", exchange: alerts,
//	            routing_key: "alert.{{ service }}", persistent: true }
//
// Delivery: at least once. The channel is in publisher-confirm mode; Flush
// (at every checkpoint) returns only when the broker has confirmed every
// message written since the last Flush. A message the broker rejects
// (basic.nack), or one it cannot route while mandatory is set, makes Flush
// fail. If the connection drops, the sink reconnects with backoff and
// publishes again every message not yet confirmed, with the same
// message-id, so a consumer that de-duplicates by message id (weir's amqp
// source does) sees each once. AMQP has no transactions that span a
// checkpoint, so the sink is not exactly-once capable.
type AMQPConfig struct {
	// Conn holds the connection options (amqpconn.Conn): url, username,
	// password_file, tls and the timeouts.
	amqpconn.Conn `yaml:",inline"`
	// Exchange to publish to; it must exist. Empty means the default
	// exchange, which routes to the queue named by the routing key.
	Exchange string `yaml:"exchange"`
	// RoutingKey is a template rendered per record ("alert.{{ service }}");
	// at most 255 bytes once rendered. Default empty.
	RoutingKey *pipeline.Template `yaml:"routing_key"`
	// Persistent marks messages persistent (delivery mode 2), so they
	// survive a broker restart in a durable queue. Default true.
	Persistent bool `yaml:"persistent"`
	// Mandatory asks the broker to return messages no queue is bound for;
	// Flush then fails with the exchange and routing key. Default false:
	// such messages are dropped by the broker.
	Mandatory bool `yaml:"mandatory"`
	// ContentType of the messages; default application/json.
	ContentType string `yaml:"content_type"`
	// MaxInFlight is the most unconfirmed messages; when reached, Write
	// waits for confirms before publishing more. Default 4096.
	MaxInFlight int `yaml:"max_in_flight"`
}

// NewAMQPConfig returns an AMQPConfig with its defaults.
func NewAMQPConfig() *AMQPConfig {
	return &AMQPConfig{Conn: amqpconn.DefaultConn(), Persistent: true, ContentType: "application/json", MaxInFlight: 4096}
}

// Validate implements pipeline.Validator.
func (c *AMQPConfig) Validate() error {
	if c.URL == "" {
		return errors.New("amqp: url is required (amqp://user:password@host:5672/vhost)")
	}
	uri, err := amqp.ParseURI(c.URL)
	if err != nil {
		return fmt.Errorf("amqp: %w", connect.URLError(c.URL, err))
	}
	if c.TLS != nil && uri.Scheme != "amqps" {
		return fmt.Errorf("amqp: tls is set but url %s is not amqps://", connect.RedactURL(c.URL))
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("amqp: %w", err)
	}
	if c.MaxInFlight < 1 {
		return fmt.Errorf("amqp: max_in_flight %d must be at least 1", c.MaxInFlight)
	}
	if c.ConnectTimeout < 0 || c.Heartbeat < 0 || c.MaxReconnectDelay < 0 {
		return errors.New("amqp: durations must not be negative")
	}
	return nil
}

// NewSink implements pipeline.SinkConfig. It connects before returning
// (retrying transient failures for ConnectTimeout) and checks that the
// exchange exists.
func (c *AMQPConfig) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := &amqpSink{cfg: *c, safeURL: connect.RedactURL(c.URL), logger: b.Logger, guarantee: b.Guarantee}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if c.RoutingKey != nil {
		s.key, s.checkKey = c.RoutingKey.Clone(), c.RoutingKey.Clone()
	}
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	s.idPrefix = hex.EncodeToString(nonce[:]) + "-"
	var err error
	if s.dial, err = amqpconn.DialConfig(c.URL, c.Username, c.PasswordFile, c.TLS, c.Heartbeat, c.ConnectTimeout, b.Component); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), connect.StartWait(c.ConnectTimeout))
	defer cancel()
	bo := connect.Backoff{Max: c.MaxReconnectDelay}
	for {
		err := s.connect()
		if err == nil {
			return s, nil
		}
		if amqpconn.Permanent(err) {
			return nil, err
		}
		d := bo.Next()
		s.logger.Warn("amqp: connect failed; retrying", "url", s.safeURL, "attempt", bo.Attempts(), "in", d, "err", err)
		if connect.SleepContext(ctx, d) != nil {
			return nil, fmt.Errorf("%w (gave up after connect_timeout %v)", err, c.ConnectTimeout)
		}
	}
}

// amqpSink implements pipeline.Sink, pipeline.Flusher and
// pipeline.RecordChecker. Write, Flush and Close run on the sink's
// goroutine; Check may run concurrently on another (it only uses checkKey,
// under checkMu).
type amqpSink struct {
	cfg       AMQPConfig
	dial      amqp.Config
	safeURL   string
	logger    *slog.Logger
	guarantee pipeline.Guarantee
	idPrefix  string // random per sink instance; message-id = prefix + sequence
	seq       uint64

	key     *pipeline.Template // rendered by Write
	checkMu sync.Mutex         // guards checkKey
	// checkKey is Check's own clone of the routing key template.
	checkKey *pipeline.Template

	sess    *amqpSinkSession // nil after a connection loss, until reconnected
	pending []amqpOut        // published (or to publish) since the last settle, in order
	arena   []byte           // message bodies of pending; reset once they are all confirmed
	keyBuf  []byte
	// returned holds the broker's returns (mandatory, unroutable) of
	// pending messages, collected from the session that delivered them.
	returned []amqp.Return
}

type amqpSinkSession struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return // buffered: at most len(pending) returns are ever queued
}

// amqpOut is one message until the broker confirms it.
type amqpOut struct {
	key  string
	body []byte // in arena
	id   string
	ts   time.Time
	dc   *amqp.DeferredConfirmation // nil: not (or no longer known to be) published
	done bool                       // confirmed
}

func (s *amqpSink) connect() (err error) {
	conn, err := amqp.DialConfig(s.cfg.URL, s.dial)
	if err != nil {
		return fmt.Errorf("amqp: connect to %s: %w", s.safeURL, err)
	}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: open channel on %s: %w", s.safeURL, err)
	}
	if s.cfg.Exchange != "" {
		if err := ch.ExchangeDeclarePassive(s.cfg.Exchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
			var ae *amqp.Error
			if errors.As(err, &ae) && ae.Code == amqp.NotFound {
				return fmt.Errorf("amqp: exchange %q not found on %s (declare it first): %w", s.cfg.Exchange, s.safeURL, err)
			}
			return fmt.Errorf("amqp: check exchange %q: %w", s.cfg.Exchange, err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("amqp: enable publisher confirms: %w", err)
	}
	s.sess = &amqpSinkSession{conn: conn, ch: ch,
		returns: ch.NotifyReturn(make(chan amqp.Return, s.cfg.MaxInFlight+1))}
	return nil
}

// Check implements pipeline.RecordChecker: a record whose routing key
// cannot be rendered, or renders longer than 255 bytes, goes to the
// dead-letter output instead of stopping the pipeline.
func (s *amqpSink) Check(r *pipeline.Record) error {
	if s.checkKey == nil {
		return nil
	}
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	k, err := s.checkKey.Render(nil, r)
	if err != nil {
		return fmt.Errorf("amqp: routing_key: %w", err)
	}
	if len(k) > 255 {
		return fmt.Errorf("amqp: routing_key is %d bytes, more than AMQP's 255", len(k))
	}
	return nil
}

// Write implements pipeline.Sink: it publishes every record, waiting for
// confirms only when MaxInFlight messages are unconfirmed. A routing key
// that cannot be rendered is an error (Check keeps such records away when
// the runtime calls it).
func (s *amqpSink) Write(ctx context.Context, b *pipeline.Batch) error {
	for _, r := range b.Records {
		key := ""
		if s.key != nil {
			var err error
			if s.keyBuf, err = s.key.Render(s.keyBuf[:0], r); err != nil {
				return fmt.Errorf("amqp: routing_key for record %s@%d: %w", r.Origin.Name, r.Origin.Offset, err)
			}
			if len(s.keyBuf) > 255 {
				return fmt.Errorf("amqp: routing_key for record %s@%d is %d bytes, more than AMQP's 255", r.Origin.Name, r.Origin.Offset, len(s.keyBuf))
			}
			key = string(s.keyBuf)
		}
		if len(s.pending) >= s.cfg.MaxInFlight {
			if err := s.settle(ctx); err != nil {
				return err
			}
		}
		// Bodies live in one arena per settle round: one allocation per
		// 1 MiB instead of one per record.
		if cap(s.arena)-len(s.arena) < 4096 {
			s.arena = make([]byte, 0, max(1<<20, cap(s.arena)))
		}
		start := len(s.arena)
		s.arena = r.AppendJSON(s.arena)
		s.seq++
		m := amqpOut{key: key, body: s.arena[start:len(s.arena):len(s.arena)],
			id: s.idPrefix + strconv.FormatUint(s.seq, 10), ts: r.Time}
		s.publish(ctx, &m)
		s.pending = append(s.pending, m)
	}
	return nil
}

// publish sends m on the current session; on failure m stays unpublished
// (dc nil) and settle publishes it again after reconnecting.
func (s *amqpSink) publish(ctx context.Context, m *amqpOut) {
	m.dc = nil
	if s.sess == nil {
		return
	}
	p := amqp.Publishing{ContentType: s.cfg.ContentType, MessageId: m.id, Body: m.body}
	if s.cfg.Persistent {
		p.DeliveryMode = amqp.Persistent
	}
	if !m.ts.IsZero() {
		p.Timestamp = m.ts
	}
	dc, err := s.sess.ch.PublishWithDeferredConfirmWithContext(ctx, s.cfg.Exchange, m.key, s.cfg.Mandatory, false, p)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("amqp: publish failed; will reconnect and publish again", "url", s.safeURL, "err", err)
		}
		s.dropSession()
		return
	}
	m.dc = dc
}

// dropSession closes the current session, keeping the returns it queued.
func (s *amqpSink) dropSession() {
	if s.sess == nil {
		return
	}
	s.returned = drainReturns(s.sess.returns, s.returned)
	s.sess.conn.Close()
	s.sess = nil
}

// drainReturns appends the returns queued on c without blocking. amqp091
// closes c when the channel closes.
func drainReturns(c chan amqp.Return, out []amqp.Return) []amqp.Return {
	for {
		select {
		case r, ok := <-c:
			if !ok {
				return out
			}
			out = append(out, r)
		default:
			return out
		}
	}
}

// settle waits until the broker has confirmed every pending message,
// reconnecting and publishing again whatever a lost connection left
// unconfirmed. It fails on nacks and returns, and when ctx ends.
func (s *amqpSink) settle(ctx context.Context) error {
	nacked := 0
	total := len(s.pending)
	bo := connect.Backoff{Max: s.cfg.MaxReconnectDelay}
	for {
		if s.sess == nil {
			if err := s.connect(); err != nil {
				if amqpconn.Permanent(err) {
					return err
				}
				d := bo.Next()
				s.logger.Warn("amqp: reconnect failed; retrying", "url", s.safeURL, "attempt", bo.Attempts(), "in", d, "err", err)
				if connect.SleepContext(ctx, d) != nil {
					return fmt.Errorf("amqp: %d messages unconfirmed: %w (last error: %v)", len(s.pending), ctx.Err(), err)
				}
				continue
			}
			s.logger.Info("amqp: reconnected; publishing unconfirmed messages again", "url", s.safeURL, "messages", len(s.pending))
			for i := range s.pending {
				m := &s.pending[i]
				if m.dc != nil && m.dc.Acked() {
					m.done = true // confirmed before the connection went
				}
				if !m.done && s.sess != nil {
					s.publish(ctx, m)
				}
			}
			if s.sess == nil {
				continue
			}
		}
		lost := false
		for i := range s.pending {
			m := &s.pending[i]
			if m.done {
				continue
			}
			if m.dc == nil {
				lost = true
				continue
			}
			select {
			case <-m.dc.Done():
			case <-ctx.Done():
				return fmt.Errorf("amqp: waiting for publisher confirms: %w", ctx.Err())
			}
			switch {
			case m.dc.Acked():
				m.done = true
			case s.sess.ch.IsClosed():
				// A closed channel resolves every confirmation as false:
				// not a nack, an unknown outcome. Publish again.
				m.dc, lost = nil, true
			default:
				m.done = true
				nacked++
			}
		}
		if lost {
			s.dropSession()
			keep := s.pending[:0]
			for _, m := range s.pending {
				if !m.done {
					keep = append(keep, m)
				}
			}
			clear(s.pending[len(keep):])
			s.pending = keep
			continue
		}
		// A return precedes its message's confirm on the wire, so every
		// return of these messages is queued by now.
		returned := drainReturns(s.sess.returns, s.returned)
		s.returned = nil
		clear(s.pending)
		s.pending = s.pending[:0]
		s.arena = s.arena[:0]
		switch {
		case nacked > 0:
			return fmt.Errorf("amqp: broker rejected (basic.nack) %d of %d messages to exchange %q", nacked, total, s.cfg.Exchange)
		case len(returned) > 0:
			r := returned[0]
			return fmt.Errorf("amqp: %d of %d messages could not be routed (mandatory): exchange %q routing key %q: %d %s",
				len(returned), total, r.Exchange, r.RoutingKey, r.ReplyCode, r.ReplyText)
		}
		return nil
	}
}

// Flush implements pipeline.Flusher: it returns once the broker has
// confirmed every message written so far.
func (s *amqpSink) Flush(ctx context.Context) error {
	if len(s.pending) == 0 {
		return nil
	}
	return s.settle(ctx)
}

// Close implements pipeline.Sink. Unless the pipeline is exactly_once
// (never, for this sink), it first waits for outstanding confirms, within
// ctx; then it closes the connection.
func (s *amqpSink) Close(ctx context.Context) error {
	var err error
	if len(s.pending) > 0 && s.guarantee != pipeline.ExactlyOnce {
		err = s.settle(ctx)
	}
	if s.sess != nil {
		s.sess.conn.Close()
		s.sess = nil
	}
	return err
}
