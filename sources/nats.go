package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/internal/natsconn"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("nats",
		"read a NATS JetStream stream through a durable pull consumer with explicit acks",
		NewNATSConfig)
}

// NATSConfig is the `nats:` source: a durable JetStream pull consumer on a
// stream, optionally filtered to a subject. The consumer is created when it
// does not exist; the stream only with create_stream: true.
//
//	sources:
//	  - nats: { url: "nats://127.0.0.1:4222", stream: LOGS, subject: "logs.>",
//	            durable: weir }
//
// Delivery: the consumer acknowledges explicitly; the AckFunc of a batch
// acks exactly its messages (the last one with a confirmed double ack), and
// the server redelivers any message not acknowledged within ack_wait — after
// a crash, a lost connection or a Close. Origin.ID is "<stream>:<stream
// sequence>", so the runtime drops such redeliveries. The consumer's
// position is kept by the server: a restarted weir continues where its
// durable left off.
type NATSConfig struct {
	// Conn holds the connection options (natsconn.Conn): url, username,
	// password_file, tls and the timeouts.
	natsconn.Conn `yaml:",inline"`
	// Stream is the JetStream stream to read. Required.
	Stream string `yaml:"stream"`
	// Subject filters the stream ("logs.>"); default every subject.
	Subject string `yaml:"subject"`
	// Durable is the consumer name; the server keeps its position.
	// Default "weir-<pipeline>-<component>".
	Durable string `yaml:"durable"`
	// CreateStream creates the stream (file storage, capturing Subject)
	// when it does not exist. Default false: a missing stream is an error.
	CreateStream bool `yaml:"create_stream"`
	// DeliverNew makes a newly created consumer start with messages that
	// arrive from now on, instead of the whole stream. Default false.
	DeliverNew bool `yaml:"deliver_new"`
	// AckWait is how long the server waits for an ack before it redelivers
	// (set on a consumer weir creates); default 30s.
	AckWait time.Duration `yaml:"ack_wait"`
	// MaxAckPending is the most unacknowledged messages (set on a consumer
	// weir creates). Default 2 × the batch size, 16 × under at_least_once
	// (acks wait for a checkpoint there).
	MaxAckPending int `yaml:"max_ack_pending"`
	// Linger is how long Read keeps collecting after the first message of
	// a batch; default 5ms.
	Linger time.Duration `yaml:"linger"`
	// DedupeWindow bounds the ids of stored messages remembered to drop
	// redeliveries (pipeline.DedupeWindow): {count: 131072} by default.
	DedupeWindow pipeline.DedupeWindow `yaml:"dedupe_window"`
}

// NewNATSConfig returns a NATSConfig with its defaults.
func NewNATSConfig() *NATSConfig {
	return &NATSConfig{Conn: natsconn.DefaultConn(), AckWait: 30 * time.Second, Linger: 5 * time.Millisecond,
		DedupeWindow: pipeline.DefaultDedupeWindow()}
}

// SeenIDWindow implements pipeline.DedupeWindower.
func (c *NATSConfig) SeenIDWindow() pipeline.DedupeWindow { return c.DedupeWindow }

// Validate implements pipeline.Validator.
func (c *NATSConfig) Validate() error {
	if c.URL == "" {
		return errors.New("nats: url is required (nats://host:4222)")
	}
	if c.Stream == "" {
		return errors.New("nats: stream is required")
	}
	if strings.ContainsAny(c.Stream, " \t\r\n.*>") {
		return fmt.Errorf("nats: stream name %q must not contain spaces, '.', '*' or '>'", c.Stream)
	}
	if c.Durable != "" && strings.ContainsAny(c.Durable, " \t\r\n.*>") {
		return fmt.Errorf("nats: durable name %q must not contain spaces, '.', '*' or '>'", c.Durable)
	}
	if c.Subject != "" {
		if err := natsCheckSubject(c.Subject, true); err != nil {
			return err
		}
	}
	if c.CreateStream && c.Subject == "" {
		return errors.New("nats: create_stream needs a subject for the new stream to capture")
	}
	if c.MaxAckPending < 0 || c.AckWait < 0 || c.ConnectTimeout < 0 || c.MaxReconnectDelay < 0 || c.Linger < 0 {
		return errors.New("nats: numbers and durations must not be negative")
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	return nil
}

// natsCheckSubject checks a subject: dot-separated non-empty tokens, no
// white space; wildcards ('*' tokens, a final '>') only in filters.
func natsCheckSubject(s string, filter bool) error {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("nats: subject %q is empty or contains white space", s)
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return fmt.Errorf("nats: subject %q has an empty token", s)
		case t == "*" || (t == ">" && i == len(toks)-1):
			if !filter {
				return fmt.Errorf("nats: subject %q contains a wildcard, which cannot be published to", s)
			}
		case strings.ContainsAny(t, "*>"):
			return fmt.Errorf("nats: subject %q: wildcards must be whole tokens ('>' only last)", s)
		}
	}
	return nil
}

// NewSource implements pipeline.SourceConfig. It connects, finds (or
// creates) the stream and the consumer, and starts pulling before it
// returns, so a wrong address, refused credentials or a missing stream
// fail the start with a clear error.
func (c *NATSConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	batch := b.BatchSize
	if batch <= 0 {
		batch = pipeline.DefaultBatchSize
	}
	s := &natsSource{cfg: *c, safeURL: connect.RedactURL(c.URL), batch: batch, index: b.Index,
		logger: b.Logger, now: b.Now, done: make(chan struct{})}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	durable := c.Durable
	if durable == "" {
		id := b.Component
		if id == "" {
			id = fmt.Sprintf("%s/sources[%d]/nats", b.Pipeline, b.Index)
		}
		durable = "weir-" + strings.NewReplacer("/", "-", "[", "-", "]", "", ".", "-", "*", "-", ">", "-", " ", "-").Replace(id)
	}
	maxPending := c.MaxAckPending
	if maxPending == 0 {
		maxPending = 2 * batch
		if b.Guarantee == pipeline.AtLeastOnce {
			maxPending = 16 * batch
		}
	}
	opts, err := natsconn.Options("weir "+b.Component,
		c.Auth(),
		c.ConnectTimeout, c.MaxReconnectDelay, s.logger, s.safeURL)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), connect.StartWait(c.ConnectTimeout))
	defer cancel()
	if s.nc, err = natsconn.Connect(ctx, c.URL, s.safeURL, opts, s.logger, c.MaxReconnectDelay); err != nil {
		if natsconn.Permanent(err) {
			return nil, err
		}
		return nil, fmt.Errorf("%w (gave up after connect_timeout %v)", err, c.ConnectTimeout)
	}
	if err := s.open(ctx, durable, maxPending); err != nil {
		s.nc.Close()
		return nil, err
	}
	s.msgs = make(chan jetstream.Msg, maxPending)
	s.wg.Add(1)
	go s.pump()
	return s, nil
}

// open finds or creates the stream and the durable consumer and starts
// the message iterator.
func (s *natsSource) open(ctx context.Context, durable string, maxPending int) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("nats: jetstream: %w", err)
	}
	c := &s.cfg
	stream, err := js.Stream(ctx, c.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && c.CreateStream:
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: c.Stream, Subjects: []string{c.Subject}, Storage: jetstream.FileStorage})
		if err != nil {
			return fmt.Errorf("nats: create stream %q for subject %q: %w", c.Stream, c.Subject, err)
		}
		s.logger.Info("nats: created stream", "stream", c.Stream, "subject", c.Subject)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("nats: stream %q not found on %s (create it, or set create_stream: true)", c.Stream, s.safeURL)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("nats: JetStream is not enabled on %s: %w", s.safeURL, err)
	case err != nil:
		return fmt.Errorf("nats: look up stream %q: %w", c.Stream, err)
	}
	cons, err := stream.Consumer(ctx, durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		cc := jetstream.ConsumerConfig{Durable: durable, FilterSubject: c.Subject, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: c.AckWait, MaxAckPending: maxPending, DeliverPolicy: jetstream.DeliverAllPolicy,
			Description: "weir source"}
		if c.DeliverNew {
			cc.DeliverPolicy = jetstream.DeliverNewPolicy
		}
		if cons, err = stream.CreateConsumer(ctx, cc); err != nil {
			return fmt.Errorf("nats: create consumer %q on stream %q: %w", durable, c.Stream, err)
		}
		s.logger.Info("nats: created durable consumer", "stream", c.Stream, "durable", durable, "subject", c.Subject)
	case err != nil:
		return fmt.Errorf("nats: look up consumer %q on stream %q: %w", durable, c.Stream, err)
	default:
		info := cons.CachedInfo()
		if info.Config.FilterSubject != c.Subject && !slices.Equal(info.Config.FilterSubjects, []string{c.Subject}) {
			return fmt.Errorf("nats: consumer %q of stream %q filters %q, not %q: delete it or choose another durable",
				durable, c.Stream, info.Config.FilterSubject, c.Subject)
		}
		if info.Config.AckPolicy == jetstream.AckNonePolicy {
			return fmt.Errorf("nats: consumer %q of stream %q has ack policy none; weir needs explicit (or all) acks", durable, c.Stream)
		}
	}
	s.ackAll = cons.CachedInfo().Config.AckPolicy == jetstream.AckAllPolicy
	s.durable = durable
	s.it, err = cons.Messages(jetstream.PullMaxMessages(maxPending))
	if err != nil {
		return fmt.Errorf("nats: pull from consumer %q: %w", durable, err)
	}
	return nil
}

// natsSource implements pipeline.Source.
//
// pump is the only caller of it.Next; it hands messages to Read through
// msgs. nats.go reconnects by itself and the iterator pulls again after a
// reconnect.
type natsSource struct {
	cfg     NATSConfig
	safeURL string
	batch   int
	index   int
	logger  *slog.Logger
	now     func() time.Time
	nc      *nats.Conn
	it      jetstream.MessagesContext
	durable string
	ackAll  bool // the consumer's policy is AckAll: acking the last message acks the batch

	msgs  chan jetstream.Msg
	fatal atomic.Pointer[error] // set by pump on a terminal error; Read returns it
	done  chan struct{}         // closed by Close
	once  sync.Once
	wg    sync.WaitGroup
	buf   []jetstream.Msg // Read's scratch
}

func (s *natsSource) pump() {
	defer s.wg.Done()
	for {
		m, err := s.it.Next()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrConsumerNotFound) {
				err = fmt.Errorf("nats: consumer %q of stream %q stopped: %w", s.durable, s.cfg.Stream, err)
				s.fatal.Store(&err)
				return
			}
			s.logger.Warn("nats: pull", "stream", s.cfg.Stream, "durable", s.durable, "err", err)
			select {
			case <-s.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		select {
		case s.msgs <- m:
		case <-s.done:
			return
		}
	}
}

// Read implements pipeline.Source: it waits up to 200ms for a first
// message, then collects up to the batch size for at most Linger. It never
// acknowledges; the returned AckFunc does, for exactly these records.
func (s *natsSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	timer := time.NewTimer(readWait)
	defer timer.Stop()
	buf := s.buf[:0]
	select {
	case m := <-s.msgs:
		buf = append(buf, m)
	case <-timer.C:
		if p := s.fatal.Load(); p != nil {
			return nil, *p
		}
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, errors.New("nats: source closed")
	}
	timer.Reset(s.cfg.Linger)
	buf, _ = linger(ctx, s.msgs, timer, buf, s.batch) // msgs is never closed
	now := s.now()
	recs := pipeline.NewRecords(len(buf))
	for i, m := range buf {
		r := recs[i]
		r.Value = m.Data()
		r.Key = []byte(m.Subject())
		r.Headers = natsHeaders(m.Headers())
		r.Time = now
		r.Source = s.index
		r.Origin.Name = m.Subject()
		if md, err := m.Metadata(); err == nil {
			r.Time = md.Timestamp
			r.Origin.Offset = int64(md.Sequence.Stream)
			r.Origin.ID = md.Stream + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
		}
		b.Records = append(b.Records, r)
	}
	msgs := slices.Clone(buf)
	clear(buf)
	s.buf = buf[:0]
	return func(ctx context.Context) error { return s.ack(ctx, msgs) }, nil
}

// ack acknowledges msgs: each one (or only the last, for an AckAll
// consumer), the last with a double ack that waits for the server, so a
// nil return means the server has recorded them.
func (s *natsSource) ack(ctx context.Context, msgs []jetstream.Msg) error {
	last := len(msgs) - 1
	if !s.ackAll {
		for _, m := range msgs[:last] {
			if err := m.Ack(); err != nil {
				return fmt.Errorf("nats: ack %d messages of stream %q: %w; the server redelivers them after ack_wait", len(msgs), s.cfg.Stream, err)
			}
		}
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := msgs[last].DoubleAck(actx); err != nil {
		return fmt.Errorf("nats: ack %d messages of stream %q: %w; the server redelivers them after ack_wait", len(msgs), s.cfg.Stream, err)
	}
	return nil
}

// natsHeaders turns NATS headers into record headers, sorted by key, one
// per value.
func natsHeaders(h nats.Header) []pipeline.Header {
	if len(h) == 0 {
		return nil
	}
	keys := make([]string, 0, len(h))
	n := 0
	for k, vs := range h {
		keys = append(keys, k)
		n += len(vs)
	}
	slices.Sort(keys)
	out := make([]pipeline.Header, 0, n)
	for _, k := range keys {
		for _, v := range h[k] {
			out = append(out, pipeline.Header{Key: k, Value: []byte(v)})
		}
	}
	return out
}

// Close implements pipeline.Source: it stops pulling and closes the
// connection. Messages read but not acknowledged are redelivered by the
// server after ack_wait; the durable consumer stays.
func (s *natsSource) Close(ctx context.Context) error {
	s.once.Do(func() { close(s.done) })
	s.it.Stop()
	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		s.nc.Close()
		return ctx.Err()
	}
	s.nc.Close()
	return nil
}
