package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/weirhq/weir/internal/amqpconn"
	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("amqp",
		"consume a RabbitMQ (AMQP 0-9-1) queue, or an exchange through a durable queue of weir's own",
		NewAMQPConfig)
}

// AMQPConfig is the `amqp:` source: consume one queue, as one of possibly
// many competing consumers, or (`bind:`) receive everything an exchange
// routes to a durable queue that weir declares and binds for itself.
//
//	sources:
//	  - amqp: { url: "amqp://guest:guest@127.0.0.1:5672/", queue: tasks }
//	  - amqp:
//	      url: "amqps://weir@rabbit.internal/prod"
//	      password_file: /run/secrets/rabbit
//	      bind: { exchange: logs, type: topic, routing_key: "app.*.error" }
//
// Delivery: messages are consumed with manual acknowledgements and a
// prefetch window; the AckFunc returned with a batch acks exactly that
// batch (basic.ack, multiple, up to its last delivery tag). Unacked messages
// go back to the queue when the connection closes, and the broker redelivers
// them; Origin.ID carries the AMQP message-id property, when the publisher
// set one, so the runtime drops such redeliveries.
type AMQPConfig struct {
	// Conn holds the connection options (amqpconn.Conn): url, username,
	// password_file, tls and the timeouts.
	amqpconn.Conn `yaml:",inline"`
	// Queue is the queue to consume. It must exist, unless bind is set:
	// then it is the name of weir's own queue (default
	// "weir.<pipeline>.<component>", e.g. weir.app.sources.0.amqp).
	Queue string `yaml:"queue"`
	// Bind subscribes to an exchange through a durable queue of weir's own.
	Bind *AMQPBind `yaml:"bind"`
	// Prefetch is the most unacknowledged messages the broker sends ahead
	// (basic.qos). Default: 2 × the batch size; under at_least_once, where
	// batches are acked only after a checkpoint commits, 16 × the batch
	// size (at most 65535), since at most Prefetch messages can be read per
	// checkpoint interval.
	Prefetch int `yaml:"prefetch"`
	// Linger is how long Read keeps collecting after the first message of
	// a batch before it returns a partial batch; default 5ms.
	Linger time.Duration `yaml:"linger"`
	// DedupeWindow bounds the ids of stored messages remembered to drop
	// redeliveries (pipeline.DedupeWindow): {count: 131072} by default.
	DedupeWindow pipeline.DedupeWindow `yaml:"dedupe_window"`
}

// AMQPBind is the `bind:` block of the amqp source.
type AMQPBind struct {
	// Exchange to bind to. Required.
	Exchange string `yaml:"exchange"`
	// Type is direct, fanout, topic or headers. When set, the exchange is
	// declared (durable) if it does not exist; when empty, it must exist.
	Type string `yaml:"type"`
	// RoutingKey is the binding key ("app.*.error" on a topic exchange).
	RoutingKey string `yaml:"routing_key"`
	// Headers are the binding arguments of a headers exchange.
	Headers map[string]string `yaml:"headers"`
	// Match is "all" (default) or "any": x-match for a headers exchange.
	Match string `yaml:"match"`
}

// NewAMQPConfig returns an AMQPConfig with its defaults.
func NewAMQPConfig() *AMQPConfig {
	return &AMQPConfig{Conn: amqpconn.DefaultConn(), Linger: 5 * time.Millisecond,
		DedupeWindow: pipeline.DefaultDedupeWindow()}
}

// SeenIDWindow implements pipeline.DedupeWindower.
func (c *AMQPConfig) SeenIDWindow() pipeline.DedupeWindow { return c.DedupeWindow }

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
	switch {
	case c.Bind == nil && c.Queue == "":
		return errors.New("amqp: set queue (consume a queue) or bind (subscribe to an exchange)")
	case c.Bind != nil:
		if c.Bind.Exchange == "" {
			return errors.New("amqp: bind.exchange is required")
		}
		switch c.Bind.Type {
		case "", amqp.ExchangeDirect, amqp.ExchangeFanout, amqp.ExchangeTopic, amqp.ExchangeHeaders:
		default:
			return fmt.Errorf("amqp: bind.type %q is not one of direct, fanout, topic, headers", c.Bind.Type)
		}
		if len(c.Bind.Headers) > 0 && c.Bind.Type != "" && c.Bind.Type != amqp.ExchangeHeaders {
			return fmt.Errorf("amqp: bind.headers needs type: headers, not %q", c.Bind.Type)
		}
		if c.Bind.Match != "" && c.Bind.Match != "all" && c.Bind.Match != "any" {
			return fmt.Errorf("amqp: bind.match %q is not all or any", c.Bind.Match)
		}
	}
	if c.Prefetch < 0 || c.Prefetch > 65535 {
		return fmt.Errorf("amqp: prefetch %d is outside 0..65535", c.Prefetch)
	}
	if c.ConnectTimeout < 0 || c.Heartbeat < 0 || c.MaxReconnectDelay < 0 || c.Linger < 0 {
		return errors.New("amqp: durations must not be negative")
	}
	return nil
}

// GuaranteeWarning implements pipeline.GuaranteeWarner: under
// exactly_once, a message the broker redelivers after a crash between the
// WAL fsync and its acknowledgement is dropped only if it carries a
// message-id; the source cannot know whether the publishers set one.
func (c *AMQPConfig) GuaranteeWarning(g pipeline.Guarantee) string {
	if g != pipeline.ExactlyOnce {
		return ""
	}
	return "amqp source: a message that the broker redelivers after weir stopped between writing it to the WAL and acknowledging it is dropped as a duplicate only if it carries a message-id; " +
		"have every publisher set the message_id property to a unique id per message (weir's amqp sink does), or messages without one may be processed twice"
}

// NewSource implements pipeline.SourceConfig. It connects before returning
// (retrying transient failures for ConnectTimeout), so a wrong address,
// refused credentials or a missing queue fail the start with a clear error.
func (c *AMQPConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	batch := b.BatchSize
	if batch <= 0 {
		batch = pipeline.DefaultBatchSize
	}
	s := &amqpSource{
		cfg:     *c,
		safeURL: connect.RedactURL(c.URL),
		queue:   c.Queue,
		batch:   batch,
		index:   b.Index,
		logger:  b.Logger,
		now:     b.Now,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.prefetch = c.Prefetch
	if s.prefetch == 0 {
		s.prefetch = 2 * batch
		if b.Guarantee == pipeline.AtLeastOnce {
			s.prefetch = 16 * batch
		}
		s.prefetch = min(s.prefetch, 65535)
	}
	if s.queue == "" {
		s.queue = ownQueueName(b)
		if s.queue == "" {
			return nil, errors.New("amqp: bind without queue needs a pipeline name to derive the queue name; set queue")
		}
	}
	var err error
	if s.dial, err = amqpconn.DialConfig(c.URL, c.Username, c.PasswordFile, c.TLS, c.Heartbeat, c.ConnectTimeout, b.Component); err != nil {
		return nil, err
	}
	s.consumerTag = "weir:" + b.Component
	ctx, cancel := context.WithTimeout(context.Background(), connect.StartWait(c.ConnectTimeout))
	defer cancel()
	sess, err := s.connectRetry(ctx)
	if err != nil {
		return nil, err
	}
	s.sess = sess
	s.wg.Add(1)
	go s.supervise(sess)
	return s, nil
}

// ownQueueName derives the durable queue name of a bind: from the
// component id: "app/sources[0]/amqp" -> "weir.app.sources.0.amqp".
func ownQueueName(b pipeline.Build) string {
	id := b.Component
	if id == "" {
		if b.Pipeline == "" {
			return ""
		}
		id = fmt.Sprintf("%s/sources[%d]/amqp", b.Pipeline, b.Index)
	}
	r := strings.NewReplacer("/", ".", "[", ".", "]", "")
	return "weir." + r.Replace(id)
}

// amqpSource implements pipeline.Source.
//
// One supervisor goroutine owns the connection: it waits for the current
// session to end and then reconnects with backoff. Read only takes the
// current session's delivery channel.
type amqpSource struct {
	cfg         AMQPConfig
	dial        amqp.Config
	safeURL     string // URL with the password redacted, for errors and logs
	queue       string
	consumerTag string
	prefetch    int
	batch       int
	index       int
	logger      *slog.Logger
	now         func() time.Time

	mu      sync.Mutex    // guards sess, changed, fatal
	sess    *amqpSession  // current session; nil while reconnecting
	changed chan struct{} // closed and replaced whenever sess or fatal changes
	fatal   error         // a permanent error met while reconnecting; Read returns it

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // the supervisor

	buf []amqp.Delivery // Read's scratch; used by the reader goroutine only
}

// amqpSession is one connection, channel and consumer.
type amqpSession struct {
	conn       *amqp.Connection
	ch         *amqp.Channel
	deliveries <-chan amqp.Delivery
	connClosed chan *amqp.Error
	chClosed   chan *amqp.Error
	cancelled  chan string
	drained    atomic.Bool // Read saw deliveries close; wait for the next session
}

func (s *amqpSource) connectRetry(ctx context.Context) (*amqpSession, error) {
	bo := connect.Backoff{Max: s.cfg.MaxReconnectDelay}
	for {
		sess, err := s.connect()
		if err == nil {
			return sess, nil
		}
		if amqpconn.Permanent(err) {
			return nil, err
		}
		d := bo.Next()
		s.logger.Warn("amqp: connect failed; retrying", "url", s.safeURL, "attempt", bo.Attempts(), "in", d, "err", err)
		if ctx.Err() != nil || connect.SleepContext(ctx, d) != nil {
			return nil, fmt.Errorf("%w (gave up after connect_timeout %v)", err, s.cfg.ConnectTimeout)
		}
		select {
		case <-s.done:
			return nil, errors.New("amqp: source closed")
		default:
		}
	}
}

// connect opens a connection, a channel with the prefetch window, sets up
// the queue (and binding) and starts consuming.
func (s *amqpSource) connect() (sess *amqpSession, err error) {
	conn, err := amqp.DialConfig(s.cfg.URL, s.dial)
	if err != nil {
		return nil, fmt.Errorf("amqp: connect to %s: %w", s.safeURL, err)
	}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: open channel on %s: %w", s.safeURL, err)
	}
	if s.cfg.Bind != nil {
		if ch, err = s.declareBinding(conn, ch); err != nil {
			return nil, err
		}
	} else if _, err = ch.QueueDeclarePassive(s.queue, true, false, false, false, nil); err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return nil, fmt.Errorf("amqp: queue %q not found on %s (create it, or use bind: to subscribe to an exchange): %w", s.queue, s.safeURL, err)
		}
		return nil, fmt.Errorf("amqp: check queue %q: %w", s.queue, err)
	}
	if err = ch.Qos(s.prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("amqp: set prefetch %d: %w", s.prefetch, err)
	}
	sess = &amqpSession{conn: conn, ch: ch,
		connClosed: conn.NotifyClose(make(chan *amqp.Error, 1)),
		chClosed:   ch.NotifyClose(make(chan *amqp.Error, 1)),
		cancelled:  ch.NotifyCancel(make(chan string, 1)),
	}
	sess.deliveries, err = ch.Consume(s.queue, s.consumerTag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("amqp: consume queue %q: %w", s.queue, err)
	}
	return sess, nil
}

// declareBinding makes sure the exchange exists (declaring it when a type
// is given), declares weir's durable queue and binds it. A failed passive
// declaration closes the channel, so it may return a new one.
func (s *amqpSource) declareBinding(conn *amqp.Connection, ch *amqp.Channel) (*amqp.Channel, error) {
	bd := s.cfg.Bind
	if err := ch.ExchangeDeclarePassive(bd.Exchange, bd.Type, true, false, false, false, nil); err != nil {
		var ae *amqp.Error
		if !errors.As(err, &ae) || ae.Code != amqp.NotFound || bd.Type == "" {
			return nil, fmt.Errorf("amqp: exchange %q: %w", bd.Exchange, err)
		}
		if ch, err = conn.Channel(); err != nil {
			return nil, fmt.Errorf("amqp: open channel on %s: %w", s.safeURL, err)
		}
		if err = ch.ExchangeDeclare(bd.Exchange, bd.Type, true, false, false, false, nil); err != nil {
			return nil, fmt.Errorf("amqp: declare %s exchange %q: %w", bd.Type, bd.Exchange, err)
		}
	}
	if _, err := ch.QueueDeclare(s.queue, true, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("amqp: declare queue %q: %w", s.queue, err)
	}
	var args amqp.Table
	if len(bd.Headers) > 0 {
		args = amqp.Table{"x-match": "all"}
		if bd.Match != "" {
			args["x-match"] = bd.Match
		}
		for k, v := range bd.Headers {
			args[k] = v
		}
	}
	if err := ch.QueueBind(s.queue, bd.RoutingKey, bd.Exchange, false, args); err != nil {
		return nil, fmt.Errorf("amqp: bind queue %q to exchange %q with key %q: %w", s.queue, bd.Exchange, bd.RoutingKey, err)
	}
	return ch, nil
}

// supervise waits for the session to end and reconnects, forever, until
// Close. A permanent error (the queue was deleted, credentials revoked) is
// handed to Read, which stops the pipeline with it.
func (s *amqpSource) supervise(sess *amqpSession) {
	defer s.wg.Done()
	for {
		var reason string
		select {
		case <-s.done:
			return
		case e := <-sess.connClosed:
			reason = fmt.Sprint("connection closed: ", e)
		case e := <-sess.chClosed:
			reason = fmt.Sprint("channel closed: ", e)
		case tag := <-sess.cancelled:
			reason = "consumer " + tag + " cancelled by the broker (queue deleted?)"
		}
		select {
		case <-s.done: // Close closed the connection
			return
		default:
		}
		s.setSession(nil, nil)
		sess.conn.Close()
		s.logger.Warn("amqp: lost the broker; reconnecting (unacked messages are redelivered)", "url", s.safeURL, "queue", s.queue, "reason", reason)
		bo := connect.Backoff{Max: s.cfg.MaxReconnectDelay}
		for {
			select {
			case <-s.done:
				return
			case <-time.After(bo.Next()):
			}
			next, err := s.connect()
			if err == nil {
				sess = next
				s.setSession(sess, nil)
				s.logger.Info("amqp: reconnected", "url", s.safeURL, "queue", s.queue, "attempts", bo.Attempts())
				break
			}
			if amqpconn.Permanent(err) {
				s.setSession(nil, err)
				return
			}
			s.logger.Warn("amqp: reconnect failed; retrying", "url", s.safeURL, "attempt", bo.Attempts(), "err", err)
		}
	}
}

func (s *amqpSource) setSession(sess *amqpSession, fatal error) {
	s.mu.Lock()
	s.sess, s.fatal = sess, fatal
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *amqpSource) current() (*amqpSession, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sess, s.changed, s.fatal
}

// readWait is how long Read waits for a first message before it returns an
// empty batch.
const readWait = 200 * time.Millisecond

// Read implements pipeline.Source. It waits up to 200ms for a first
// message, then collects up to the batch size for at most Linger. It never
// acknowledges: the returned AckFunc does, for exactly these records.
func (s *amqpSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	timer := time.NewTimer(readWait)
	defer timer.Stop()
	var sess *amqpSession
	for sess == nil {
		cur, changed, fatal := s.current()
		if fatal != nil {
			return nil, fatal
		}
		if cur != nil && !cur.drained.Load() {
			sess = cur
			break
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, errors.New("amqp: source closed")
		}
	}
	buf := s.buf[:0]
	select {
	case d, ok := <-sess.deliveries:
		if !ok {
			sess.drained.Store(true)
			return nil, nil
		}
		buf = append(buf, d)
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	timer.Reset(s.cfg.Linger)
	buf, closed := linger(ctx, sess.deliveries, timer, buf, s.batch)
	if closed {
		sess.drained.Store(true)
	}
	now := s.now()
	recs := pipeline.NewRecords(len(buf))
	for i := range buf {
		d := &buf[i]
		r := recs[i]
		r.Value = d.Body
		if d.RoutingKey != "" {
			r.Key = []byte(d.RoutingKey)
		}
		r.Headers = amqpHeaders(d.Headers)
		r.Time = now
		if !d.Timestamp.IsZero() {
			r.Time = d.Timestamp
		}
		r.Source = s.index
		r.Origin = pipeline.Origin{Name: s.queue, Offset: int64(d.DeliveryTag), ID: d.MessageId}
		b.Records = append(b.Records, r)
	}
	ch, last, n := sess.ch, buf[len(buf)-1].DeliveryTag, len(buf)
	clear(buf)
	s.buf = buf[:0]
	queue := s.queue
	return func(context.Context) error {
		if err := ch.Ack(last, true); err != nil {
			return fmt.Errorf("amqp: ack %d messages of queue %q (delivery tags up to %d): %w; the broker redelivers them", n, queue, last, err)
		}
		return nil
	}, nil
}

// amqpHeaders converts an AMQP header table to record headers, sorted by
// key. Strings and byte arrays are kept as bytes; other values are written
// as text (numbers, booleans, times) or JSON (nested tables and arrays).
func amqpHeaders(t amqp.Table) []pipeline.Header {
	if len(t) == 0 {
		return nil
	}
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]pipeline.Header, len(keys))
	for i, k := range keys {
		out[i] = pipeline.Header{Key: k, Value: amqpHeaderValue(nil, t[k])}
	}
	return out
}

func amqpHeaderValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case []byte:
		return append(dst, x...)
	case amqp.Table, []any:
		return pipeline.AppendJSONValue(dst, amqpPlain(x))
	case amqp.Decimal:
		return fmt.Appendf(dst, "%de-%d", x.Value, x.Scale)
	}
	return pipeline.AppendText(dst, amqpPlain(v))
}

// amqpPlain turns AMQP table values into weir field value types.
func amqpPlain(v any) any {
	switch x := v.(type) {
	case amqp.Table:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = amqpPlain(e)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = amqpPlain(e)
		}
		return out
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case float32:
		return float64(x)
	case []byte:
		return string(x)
	case amqp.Decimal:
		return string(amqpHeaderValue(nil, x))
	}
	return v
}

// Close implements pipeline.Source: it stops reconnecting and closes the
// connection; messages read but not acknowledged go back to the queue.
func (s *amqpSource) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.done) })
	s.mu.Lock()
	sess := s.sess
	s.mu.Unlock()
	if sess != nil {
		sess.conn.Close()
	}
	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The supervisor may have connected once more before it saw done.
	s.mu.Lock()
	sess = s.sess
	s.mu.Unlock()
	if sess != nil {
		sess.conn.Close()
	}
	return nil
}
