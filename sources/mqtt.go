package sources

import (
	"context"
	"errors"
	"fmt"
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
	pipeline.RegisterSource("mqtt",
		"subscribe to MQTT v5 topics with a persistent session and manual acknowledgements",
		NewMQTTConfig)
}

// MQTTConfig is the `mqtt:` source: an MQTT v5 client with a persistent
// session (clean start off, a session expiry) that subscribes to topic
// filters and acknowledges messages only through the AckFunc.
//
//	sources:
//	  - mqtt: { url: "tcp://127.0.0.1:1883", topics: ["sensors/+/temp"],
//	            qos: 1, client_id: weir-iot }
//
// Delivery: at QoS 1 and 2 the broker keeps every message of the session
// until weir acknowledges it (PUBACK, or PUBREC for QoS 2), including
// while weir is stopped, for up to session_expiry; unacknowledged messages
// are sent again after a reconnect. MQTT has no message id, so the runtime
// cannot drop such redeliveries unless the publisher sets a user property
// named by id_property. QoS 0 messages are never acknowledged nor resent.
// The broker's own limits apply: Mosquitto keeps at most
// max_queued_messages (default 1000) per offline session and drops the
// rest.
type MQTTConfig struct {
	// Conn holds the connection options (mqttconn.Conn): url, username,
	// password_file, tls and the timeouts.
	mqttconn.Conn `yaml:",inline"`
	// Topics are the topic filters to subscribe to ("sensors/+/temp",
	// "$share/group/logs/#" for a shared subscription). Required.
	Topics []string `yaml:"topics"`
	// QoS is the maximum QoS of the subscriptions: 0, 1 (default) or 2.
	QoS int `yaml:"qos"`
	// ClientID identifies the session on the broker; keep it stable so a
	// restarted weir resumes its session. Default
	// "weir-<pipeline>-<component>".
	ClientID string `yaml:"client_id"`
	// SessionExpiry is how long the broker keeps the session (and queues
	// messages for it) while weir is disconnected; default 24h.
	SessionExpiry time.Duration `yaml:"session_expiry"`
	// ReceiveMaximum is the most unacknowledged QoS 1/2 messages the
	// broker may send ahead; default 2 × the batch size (16 × under
	// at_least_once), at most 65535. The broker may allow fewer
	// (Mosquitto: max_inflight_messages).
	ReceiveMaximum int `yaml:"receive_maximum"`
	// IDProperty names an MQTT v5 user property that carries a message
	// id; when present it becomes Origin.ID, so redeliveries are dropped.
	IDProperty string `yaml:"id_property"`
	// DedupeWindow bounds the ids of stored messages remembered to drop
	// redeliveries (pipeline.DedupeWindow): {count: 131072} by default.
	DedupeWindow pipeline.DedupeWindow `yaml:"dedupe_window"`
	// Linger is how long Read keeps collecting after the first message of
	// a batch; default 5ms.
	Linger time.Duration `yaml:"linger"`
}

// NewMQTTConfig returns an MQTTConfig with its defaults.
func NewMQTTConfig() *MQTTConfig {
	return &MQTTConfig{Conn: mqttconn.DefaultConn(), QoS: 1, SessionExpiry: 24 * time.Hour,
		Linger: 5 * time.Millisecond, DedupeWindow: pipeline.DefaultDedupeWindow()}
}

// GuaranteeWarning implements pipeline.GuaranteeWarner: under
// exactly_once, without id_property, a message the broker sends again
// after a crash between the WAL fsync and its acknowledgement cannot be
// recognised, so it is processed twice. QoS 0 messages are never sent again.
func (c *MQTTConfig) GuaranteeWarning(g pipeline.Guarantee) string {
	if g != pipeline.ExactlyOnce || c.IDProperty != "" || c.QoS == 0 {
		return ""
	}
	return "mqtt source without `id_property`: MQTT messages carry no id, so one that the broker sends again after weir stopped between writing it to the WAL and acknowledging it is processed twice; " +
		"set `id_property` to a user property that the publishers fill with a unique id per message, and such redeliveries are dropped"
}

// SeenIDWindow implements pipeline.DedupeWindower.
func (c *MQTTConfig) SeenIDWindow() pipeline.DedupeWindow { return c.DedupeWindow }

// Validate implements pipeline.Validator.
func (c *MQTTConfig) Validate() error {
	if _, err := mqttconn.ParseURL(c.URL, c.TLS); err != nil {
		return err
	}
	if len(c.Topics) == 0 {
		return errors.New("mqtt: topics needs at least one topic filter")
	}
	for _, f := range c.Topics {
		if err := mqttCheckFilter(f); err != nil {
			return err
		}
	}
	if c.QoS < 0 || c.QoS > 2 {
		return fmt.Errorf("mqtt: qos %d is not 0, 1 or 2", c.QoS)
	}
	if c.ReceiveMaximum < 0 || c.ReceiveMaximum > 65535 {
		return fmt.Errorf("mqtt: receive_maximum %d is outside 1..65535", c.ReceiveMaximum)
	}
	if c.SessionExpiry < 0 || c.SessionExpiry > (1<<32-1)*time.Second {
		return fmt.Errorf("mqtt: session_expiry %v is out of range", c.SessionExpiry)
	}
	if c.KeepAlive < 0 || c.KeepAlive > 65535*time.Second || c.ConnectTimeout < 0 || c.MaxReconnectDelay < 0 || c.Linger < 0 {
		return errors.New("mqtt: durations must not be negative (keep_alive at most 65535s)")
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	return nil
}

// mqttCheckFilter checks a topic filter against MQTT's rules: not empty,
// '#' only as the whole last level, '+' only as a whole level.
func mqttCheckFilter(f string) error {
	if f == "" || !utf8.ValidString(f) || strings.ContainsRune(f, 0) {
		return fmt.Errorf("mqtt: topic filter %q is empty or not valid UTF-8", f)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("mqtt: topic filter %q: '#' must be the whole last level", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("mqtt: topic filter %q: '+' must be a whole level", f)
		}
	}
	return nil
}

// NewSource implements pipeline.SourceConfig. It connects and subscribes
// before returning (retrying transient failures for ConnectTimeout), so a
// wrong address, refused credentials or a refused subscription fail the
// start with a clear error.
func (c *MQTTConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	u, _ := mqttconn.ParseURL(c.URL, c.TLS)
	batch := b.BatchSize
	if batch <= 0 {
		batch = pipeline.DefaultBatchSize
	}
	s := &mqttSource{
		cfg: *c, safeURL: connect.RedactURL(c.URL), batch: batch, index: b.Index,
		logger: b.Logger, now: b.Now,
		done: make(chan struct{}), up: make(chan error, 1),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	recvMax := c.ReceiveMaximum
	if recvMax == 0 {
		recvMax = 2 * batch
		if b.Guarantee == pipeline.AtLeastOnce {
			recvMax = 16 * batch
		}
		recvMax = min(recvMax, 65535)
	}
	s.msgs = make(chan mqttMsg, recvMax)
	clientID := c.ClientID
	if clientID == "" {
		clientID = mqttClientID(b, "sources")
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
	server.User = nil // credentials go in CONNECT, never in a URL that might be printed
	tlsCfg, err := c.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	rm := uint16(recvMax)
	bo := connect.Backoff{Max: c.MaxReconnectDelay}
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{&server},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     uint16(c.KeepAlive / time.Second),
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(c.SessionExpiry / time.Second),
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
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &rm
			return cp, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			go s.subscribe(cm, ca.SessionPresent)
		},
		OnConnectionDown: func() bool {
			s.epoch.Add(1)
			select {
			case <-s.done:
			default:
				s.logger.Warn("mqtt: connection lost; reconnecting (unacknowledged messages are sent again)", "url", s.safeURL, "client_id", clientID)
			}
			return true
		},
		OnConnectError: func(err error) {
			var ce *autopaho.ConnackError
			if errors.As(err, &ce) && ce.ReasonCode >= 0x80 {
				s.permanent(fmt.Errorf("mqtt: connect to %s: broker refused client %q: %s (reason code 0x%02x%s)",
					s.safeURL, clientID, mqttReason(ce.ReasonCode), ce.ReasonCode, mqttReasonString(ce.Reason)))
				return
			}
			if pipeline.IsCertificateError(err) {
				s.permanent(fmt.Errorf("mqtt: connect to %s: %w", s.safeURL, err))
				return
			}
			s.logger.Warn("mqtt: connect failed; retrying", "url", s.safeURL, "err", err)
			s.lastErr.Store(&err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   clientID,
			EnableManualAcknowledgment: true,
			SendAcksInterval:           5 * time.Millisecond,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){s.receive},
			OnClientError: func(err error) {
				s.logger.Debug("mqtt: client error", "err", err)
			},
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	s.cm = cm
	timer := time.NewTimer(connect.StartWait(c.ConnectTimeout))
	defer timer.Stop()
	select {
	case err := <-s.up:
		if err == nil {
			return s, nil
		}
		s.shutdown()
		return nil, err
	case <-timer.C:
		s.shutdown()
		msg := "no connection"
		if p := s.lastErr.Load(); p != nil {
			msg = (*p).Error()
		}
		return nil, fmt.Errorf("mqtt: connect to %s: %s (gave up after connect_timeout %v)", s.safeURL, msg, c.ConnectTimeout)
	}
}

// mqttClientID derives a stable client id from the component id:
// "app/sources[0]/mqtt" -> "weir-app-sources-0-mqtt".
func mqttClientID(b pipeline.Build, list string) string {
	id := b.Component
	if id == "" {
		id = fmt.Sprintf("%s/%s[%d]/mqtt", b.Pipeline, list, b.Index)
	}
	return "weir-" + strings.NewReplacer("/", "-", "[", "-", "]", "").Replace(id)
}

func mqttReasonString(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}

// mqttReason names the MQTT v5 reason codes a CONNACK or SUBACK carries.
func mqttReason(code byte) string {
	switch code {
	case 0x80:
		return "unspecified error"
	case 0x81:
		return "malformed packet"
	case 0x82:
		return "protocol error"
	case 0x83:
		return "implementation specific error"
	case 0x84:
		return "unsupported protocol version"
	case 0x85:
		return "client identifier not valid"
	case 0x86:
		return "bad user name or password"
	case 0x87:
		return "not authorized"
	case 0x88:
		return "server unavailable"
	case 0x89:
		return "server busy"
	case 0x8A:
		return "banned"
	case 0x8C:
		return "bad authentication method"
	case 0x8F:
		return "topic filter invalid"
	case 0x91:
		return "packet identifier in use"
	case 0x97:
		return "quota exceeded"
	case 0x9E:
		return "shared subscriptions not supported"
	case 0xA1:
		return "subscription identifiers not supported"
	case 0xA2:
		return "wildcard subscriptions not supported"
	}
	return "refused"
}

// mqttSource implements pipeline.Source.
//
// autopaho owns the connection and reconnects by itself; receive, called
// on paho's router goroutine, hands each message to Read through msgs (a
// full channel blocks paho, which stops reading from the socket:
// backpressure). Read and the AckFunc never touch the connection manager.
type mqttSource struct {
	cfg     MQTTConfig
	safeURL string
	batch   int
	index   int
	logger  *slog.Logger
	now     func() time.Time
	cm      *autopaho.ConnectionManager
	stop    context.CancelFunc

	msgs chan mqttMsg // from receive to Read
	// epoch counts connection losses: an AckFunc for messages of an
	// earlier connection cannot reach the broker (it redelivers them).
	epoch   atomic.Uint64
	up      chan error            // first subscription result (nil: subscribed), buffered 1
	lastErr atomic.Pointer[error] // last transient connect error, for the start-up timeout message
	fatal   atomic.Pointer[error] // a permanent error; Read returns it
	done    chan struct{}         // closed by Close
	once    sync.Once             // closes done
	subMu   sync.Mutex            // serializes subscribe calls
	buf     []mqttMsg             // Read's scratch
	warned  atomic.Bool           // logged the QoS downgrade once
	subbed  atomic.Bool           // first subscription done
}

type mqttMsg struct {
	p     *paho.Publish
	c     *paho.Client
	epoch uint64
}

// permanent records an error that retrying will not fix and stops trying.
func (s *mqttSource) permanent(err error) {
	s.fatal.CompareAndSwap(nil, &err)
	select {
	case s.up <- err:
	default:
	}
	if s.stop != nil {
		go s.stop() // not from a paho callback's own goroutine chain
	}
}

// subscribe (re)subscribes on every connection: with a session present the
// broker already has the subscriptions, and subscribing again is harmless
// (retained messages are not sent again: retain handling 1).
func (s *mqttSource) subscribe(cm *autopaho.ConnectionManager, sessionPresent bool) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	sub := &paho.Subscribe{}
	for _, f := range s.cfg.Topics {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: byte(s.cfg.QoS), RetainHandling: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), connect.StartWait(s.cfg.ConnectTimeout))
	defer cancel()
	sa, err := cm.Subscribe(ctx, sub)
	if err != nil {
		if sa != nil {
			for i, rc := range sa.Reasons {
				if rc >= 0x80 && i < len(s.cfg.Topics) {
					s.permanent(fmt.Errorf("mqtt: subscribe to %q on %s: %s (reason code 0x%02x)", s.cfg.Topics[i], s.safeURL, mqttReason(rc), rc))
					return
				}
			}
		}
		s.logger.Warn("mqtt: subscribe failed; will retry on the next connection", "url", s.safeURL, "err", err)
		s.lastErr.Store(&err)
		return
	}
	for i, rc := range sa.Reasons {
		if rc >= 0x80 && i < len(s.cfg.Topics) {
			s.permanent(fmt.Errorf("mqtt: subscribe to %q on %s: %s (reason code 0x%02x)", s.cfg.Topics[i], s.safeURL, mqttReason(rc), rc))
			return
		}
		if int(rc) < s.cfg.QoS && !s.warned.Swap(true) {
			s.logger.Warn("mqtt: broker granted a lower QoS than asked", "topic", s.cfg.Topics[i], "want", s.cfg.QoS, "granted", rc)
		}
	}
	if !s.subbed.Swap(true) {
		s.up <- nil
	} else {
		s.logger.Info("mqtt: reconnected and subscribed", "url", s.safeURL, "session_present", sessionPresent)
	}
}

// receive is paho's OnPublishReceived callback. It blocks while Read's
// queue is full.
func (s *mqttSource) receive(pr paho.PublishReceived) (bool, error) {
	m := mqttMsg{p: pr.Packet, c: pr.Client, epoch: s.epoch.Load()}
	select {
	case s.msgs <- m:
		return true, nil
	case <-s.done:
		return false, nil
	}
}

// Read implements pipeline.Source: it waits up to 200ms for a first
// message, then collects up to the batch size for at most Linger. It never
// acknowledges; the returned AckFunc does, for exactly these records.
func (s *mqttSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	if p := s.fatal.Load(); p != nil {
		return nil, *p
	}
	timer := time.NewTimer(readWait)
	defer timer.Stop()
	buf := s.buf[:0]
	select {
	case m := <-s.msgs:
		buf = append(buf, m)
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, errors.New("mqtt: source closed")
	}
	timer.Reset(s.cfg.Linger)
	buf, _ = linger(ctx, s.msgs, timer, buf, s.batch) // msgs is never closed
	now := s.now()
	recs := pipeline.NewRecords(len(buf))
	acks := make([]mqttMsg, 0, len(buf))
	for i, m := range buf {
		r := recs[i]
		p := m.p
		r.Value = p.Payload
		r.Key = []byte(p.Topic)
		r.Time = now
		r.Source = s.index
		r.Origin = pipeline.Origin{Name: p.Topic, Offset: int64(p.PacketID)}
		if p.Properties != nil {
			r.Headers = mqttHeaders(p.Properties)
			if s.cfg.IDProperty != "" {
				r.Origin.ID = p.Properties.User.Get(s.cfg.IDProperty)
			}
		}
		b.Records = append(b.Records, r)
		if p.QoS > 0 {
			acks = append(acks, m)
		}
	}
	clear(buf)
	s.buf = buf[:0]
	if len(acks) == 0 {
		return nil, nil // QoS 0: nothing to acknowledge
	}
	return func(context.Context) error {
		var stale int
		var err error
		for _, m := range acks {
			if m.epoch != s.epoch.Load() {
				stale++
				continue
			}
			if e := m.c.Ack(m.p); e != nil && err == nil {
				err = e
			}
		}
		if stale > 0 {
			return fmt.Errorf("mqtt: %d of %d messages arrived on a connection that has since been lost; the broker sends them again", stale, len(acks))
		}
		if err != nil {
			return fmt.Errorf("mqtt: ack %d messages: %w; the broker sends them again", len(acks), err)
		}
		return nil
	}, nil
}

// mqttHeaders turns MQTT v5 properties into record headers: the user
// properties in order, then content-type, response-topic and
// correlation-data when set.
func mqttHeaders(p *paho.PublishProperties) []pipeline.Header {
	n := len(p.User)
	if p.ContentType != "" {
		n++
	}
	if p.ResponseTopic != "" {
		n++
	}
	if len(p.CorrelationData) > 0 {
		n++
	}
	if n == 0 {
		return nil
	}
	out := make([]pipeline.Header, 0, n)
	for _, u := range p.User {
		out = append(out, pipeline.Header{Key: u.Key, Value: []byte(u.Value)})
	}
	if p.ContentType != "" {
		out = append(out, pipeline.Header{Key: "content-type", Value: []byte(p.ContentType)})
	}
	if p.ResponseTopic != "" {
		out = append(out, pipeline.Header{Key: "response-topic", Value: []byte(p.ResponseTopic)})
	}
	if len(p.CorrelationData) > 0 {
		out = append(out, pipeline.Header{Key: "correlation-data", Value: p.CorrelationData})
	}
	return out
}

func (s *mqttSource) shutdown() {
	s.once.Do(func() { close(s.done) })
	s.stop()
}

// Close implements pipeline.Source: it disconnects cleanly. The session
// stays on the broker (for session_expiry) with every unacknowledged
// message, which the next start receives again.
func (s *mqttSource) Close(ctx context.Context) error {
	s.once.Do(func() { close(s.done) })
	err := s.cm.Disconnect(ctx)
	s.stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("mqtt: disconnect: %w", err)
	}
	return nil
}
