package sinks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/internal/natsconn"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("nats",
		"publish records as JSON to NATS JetStream, de-duplicated by message id; exactly-once through a write-ahead staged epoch",
		true, NewNATSConfig)
}

// NATSConfig is the `nats:` sink: each record is published to JetStream
// as one JSON message (Record.AppendJSON) on a subject rendered per record,
// with a Nats-Msg-Id header so that the stream drops a message it already
// has.
//
//	sinks:
//	  - nats: { url: "nats://127.0.0.1:4222", subject: "alerts.{{ service }}",
//	            stream: ALERTS }
//
// Delivery:
//
//   - exactly_once: a write-ahead sink. Write stages the epoch's records in
//     a file under the component directory; PreCommit seals it (fsync) and
//     returns its token; Commit publishes the staged records with ids
//     derived from (component, checkpoint, staging nonce, record position)
//     and waits for every PubAck, then records the epoch as committed.
//     Commit and Recover publish the same ids again when they do not know
//     whether an earlier attempt landed, and the stream drops the
//     duplicates — within the stream's duplicate window (Duplicates,
//     default 2 minutes). That window is the limit: if weir crashes in the
//     middle of a commit and restarts after the window has passed, the
//     messages of that one epoch that had landed are published twice.
//   - at_least_once / at_most_once: Write publishes asynchronously
//     (at most max_in_flight unacknowledged) and Flush waits for every
//     PubAck, publishing failures again with the same id.
type NATSConfig struct {
	// Conn holds the connection options (natsconn.Conn): url, username,
	// password_file, tls and the timeouts.
	natsconn.Conn `yaml:",inline"`
	// Subject is a template rendered per record ("alerts.{{ service }}");
	// it must render to a subject without wildcards that a stream
	// captures. Required.
	Subject *pipeline.Template `yaml:"subject"`
	// Stream, when set, must exist; every message must land in it
	// (Nats-Expected-Stream), and its duplicate window is logged.
	Stream string `yaml:"stream"`
	// MaxInFlight is the most unacknowledged asynchronous publishes;
	// default 4096.
	MaxInFlight int `yaml:"max_in_flight"`
}

// NewNATSConfig returns a NATSConfig with its defaults.
func NewNATSConfig() *NATSConfig {
	return &NATSConfig{Conn: natsconn.DefaultConn(), MaxInFlight: 4096}
}

// Validate implements pipeline.Validator.
func (c *NATSConfig) Validate() error {
	if c.URL == "" {
		return errors.New("nats: url is required (nats://host:4222)")
	}
	if c.Subject == nil || c.Subject.Source == "" {
		return errors.New("nats: subject is required (a template such as alerts.{{ service }})")
	}
	if c.Subject.IsConstant() {
		if err := natsSinkCheckSubject(c.Subject.Source); err != nil {
			return err
		}
	}
	if strings.ContainsAny(c.Stream, " \t\r\n.*>") {
		return fmt.Errorf("nats: stream name %q must not contain spaces, '.', '*' or '>'", c.Stream)
	}
	if c.MaxInFlight < 1 {
		return fmt.Errorf("nats: max_in_flight %d must be at least 1", c.MaxInFlight)
	}
	if c.ConnectTimeout < 0 || c.MaxReconnectDelay < 0 {
		return errors.New("nats: durations must not be negative")
	}
	return c.TLS.Validate()
}

// natsSinkCheckSubject checks a subject to publish to.
func natsSinkCheckSubject(s string) error {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("nats: subject %q is empty or contains white space", s)
	}
	for _, t := range strings.Split(s, ".") {
		switch {
		case t == "":
			return fmt.Errorf("nats: subject %q has an empty token", s)
		case strings.ContainsAny(t, "*>"):
			return fmt.Errorf("nats: subject %q contains a wildcard, which cannot be published to", s)
		}
	}
	return nil
}

// NewSink implements pipeline.SinkConfig. It connects (and checks the
// stream, when set) before returning; under exactly_once it also prepares
// the staging directory.
func (c *NATSConfig) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := &natsSink{cfg: *c, safeURL: connect.RedactURL(c.URL), logger: b.Logger, guarantee: b.Guarantee,
		component: b.Component, subject: c.Subject.Clone(), checkSubject: c.Subject.Clone()}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.component == "" {
		s.component = fmt.Sprintf("%s/sinks[%d]/nats", b.Pipeline, b.Index)
	}
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	s.runID = hex.EncodeToString(nonce[:])
	if b.Guarantee == pipeline.ExactlyOnce {
		var err error
		if s.stage, err = newEpochStage(b.Dir, "nats"); err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
	}
	opts, err := natsconn.Options("weir "+s.component,
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
	if s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(c.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(10*time.Second)); err != nil {
		s.nc.Close()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	if c.Stream != "" {
		st, err := s.js.Stream(ctx, c.Stream)
		if err != nil {
			s.nc.Close()
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, fmt.Errorf("nats: stream %q not found on %s (create it first)", c.Stream, s.safeURL)
			}
			return nil, fmt.Errorf("nats: look up stream %q: %w", c.Stream, err)
		}
		window := st.CachedInfo().Config.Duplicates
		s.logger.Info("nats: publishing to stream", "stream", c.Stream, "duplicate_window", window)
		if b.Guarantee == pipeline.ExactlyOnce && window < time.Minute {
			s.logger.Warn("nats: the stream's duplicate window is short; exactly-once holds only if weir restarts within it after a crash during a commit",
				"stream", c.Stream, "duplicate_window", window)
		}
	}
	return s, nil
}

// natsSink implements pipeline.Sink, pipeline.Flusher,
// pipeline.Committer and pipeline.RecordChecker. Everything but Check
// runs on the sink's goroutine; Check uses its own template under checkMu.
type natsSink struct {
	cfg       NATSConfig
	safeURL   string
	logger    *slog.Logger
	guarantee pipeline.Guarantee
	component string
	runID     string // random per process: ids of at-least-once publishes
	seq       uint64
	nc        *nats.Conn
	js        jetstream.JetStream

	subject      *pipeline.Template
	checkMu      sync.Mutex // guards checkSubject
	checkSubject *pipeline.Template
	subjectB     []byte
	payload      []byte

	stage   *epochStage // exactly_once only
	pending []natsPending
}

// natsPending is one published message until its PubAck.
type natsPending struct {
	msg *nats.Msg
	fut jetstream.PubAckFuture // nil: to publish (again)
}

// Check implements pipeline.RecordChecker: a record whose subject cannot
// be rendered, or renders to something that cannot be published to, goes
// to the dead-letter output.
func (s *natsSink) Check(r *pipeline.Record) error {
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	subj, err := s.checkSubject.Render(nil, r)
	if err != nil {
		return fmt.Errorf("nats: subject: %w", err)
	}
	return natsSinkCheckSubject(string(subj))
}

func (s *natsSink) render(r *pipeline.Record) (string, error) {
	var err error
	if s.subjectB, err = s.subject.Render(s.subjectB[:0], r); err != nil {
		return "", fmt.Errorf("nats: subject for record %s@%d: %w", r.Origin.Name, r.Origin.Offset, err)
	}
	if err := natsSinkCheckSubject(string(s.subjectB)); err != nil {
		return "", fmt.Errorf("record %s@%d: %w", r.Origin.Name, r.Origin.Offset, err)
	}
	return string(s.subjectB), nil
}

// Write implements pipeline.Sink. Under exactly_once it stages the records;
// otherwise it publishes them asynchronously.
func (s *natsSink) Write(ctx context.Context, b *pipeline.Batch) error {
	for _, r := range b.Records {
		subj, err := s.render(r)
		if err != nil {
			return err
		}
		if s.stage != nil {
			s.payload = r.AppendJSON(s.payload[:0])
			if err := s.stage.Append([]byte(subj), s.payload); err != nil {
				return fmt.Errorf("nats: %w", err)
			}
			continue
		}
		s.seq++
		m := &nats.Msg{Subject: subj, Data: r.AppendJSON(nil), Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, s.component+"/"+s.runID+"/"+strconv.FormatUint(s.seq, 10))
		if err := s.enqueue(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// enqueue publishes m asynchronously, first settling when max_in_flight
// messages are unacknowledged.
func (s *natsSink) enqueue(ctx context.Context, m *nats.Msg) error {
	if s.cfg.Stream != "" {
		m.Header.Set(jetstream.ExpectedStreamHeader, s.cfg.Stream)
	}
	if len(s.pending) >= s.cfg.MaxInFlight {
		if err := s.settle(ctx); err != nil {
			return err
		}
	}
	p := natsPending{msg: m}
	p.fut, _ = s.js.PublishMsgAsync(m) // on error fut is nil: settle publishes it again
	s.pending = append(s.pending, p)
	return nil
}

// settle waits for the PubAck of every pending message, publishing the
// failed ones again (same Nats-Msg-Id: the stream drops what it already
// has) with backoff until they are all stored or ctx ends. A message that
// keeps failing because no stream captures its subject is an error.
func (s *natsSink) settle(ctx context.Context) error {
	bo := connect.Backoff{Max: s.cfg.MaxReconnectDelay}
	noStream := 0
	for round := 0; ; round++ {
		var lastErr error
		failed := s.pending[:0]
		for _, p := range s.pending {
			if p.fut == nil {
				failed = append(failed, p)
				continue
			}
			select {
			case <-p.fut.Ok():
				continue
			case err := <-p.fut.Err():
				lastErr = err
			case <-ctx.Done():
				return fmt.Errorf("nats: waiting for %d acknowledgements: %w", len(s.pending), ctx.Err())
			}
			p.fut = nil
			failed = append(failed, p)
		}
		clear(s.pending[len(failed):])
		s.pending = failed
		if len(failed) == 0 {
			return nil
		}
		if lastErr != nil && (errors.Is(lastErr, jetstream.ErrNoStreamResponse) || errors.Is(lastErr, nats.ErrNoResponders)) {
			noStream++
		} else {
			noStream = 0
		}
		if noStream >= 2 { // nats.go already retried each publish
			return fmt.Errorf("nats: %d messages not stored: no stream captures subject %q (or it keeps failing): %v", len(failed), failed[0].msg.Subject, lastErr)
		}
		if lastErr != nil {
			var apiErr *jetstream.APIError
			if errors.As(lastErr, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 {
				return fmt.Errorf("nats: stream refused %d messages to %q: %w", len(failed), failed[0].msg.Subject, lastErr)
			}
		}
		d := bo.Next()
		s.logger.Warn("nats: publish failed; publishing again", "messages", len(failed), "attempt", round+1, "in", d, "err", lastErr)
		if err := connect.SleepContext(ctx, d); err != nil {
			return fmt.Errorf("nats: %d messages not stored: %w (last error: %v)", len(failed), err, lastErr)
		}
		for i := range s.pending {
			s.pending[i].fut, _ = s.js.PublishMsgAsync(s.pending[i].msg)
		}
	}
}

// Flush implements pipeline.Flusher (at_least_once, at_most_once): it
// returns once the stream has stored every message written so far.
func (s *natsSink) Flush(ctx context.Context) error {
	if s.stage != nil || len(s.pending) == 0 {
		return nil
	}
	return s.settle(ctx)
}

// PreCommit implements pipeline.Committer: it seals the epoch's staged
// records (fsync) and returns the token naming them.
func (s *natsSink) PreCommit(_ context.Context, checkpoint uint64) ([]byte, error) {
	if s.stage == nil {
		return nil, errors.New("nats: PreCommit outside exactly_once")
	}
	t, err := s.stage.Seal(checkpoint)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	return json.Marshal(t)
}

// Commit implements pipeline.Committer: it publishes the staged epoch with
// deterministic message ids and waits for every PubAck, then records the
// epoch as committed and deletes its staging file. Committing a token that
// is already recorded does nothing; one whose publish was interrupted is
// published again and the stream drops the duplicates (within its
// duplicate window).
func (s *natsSink) Commit(ctx context.Context, token []byte) error {
	if s.stage == nil {
		return errors.New("nats: Commit outside exactly_once")
	}
	t, err := parseStageToken(token)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	done, err := s.stage.committedID()
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	if done == t.ID() {
		return nil
	}
	// Whatever an interrupted earlier attempt left unsettled is published
	// again below with the same ids.
	clear(s.pending)
	s.pending = s.pending[:0]
	prefix := fmt.Sprintf("weir:%s:%d:%s:", s.component, t.Checkpoint, t.Nonce)
	err = s.stage.Each(t, func(i int64, f [][]byte) error {
		if len(f) != 2 {
			return fmt.Errorf("staged record %d has %d fields, want 2", i, len(f))
		}
		m := &nats.Msg{Subject: string(f[0]), Data: append([]byte(nil), f[1]...), Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, prefix+strconv.FormatInt(i, 10))
		return s.enqueue(ctx, m)
	})
	if err == nil {
		err = s.settle(ctx)
	}
	if err != nil {
		return fmt.Errorf("nats: commit checkpoint %d: %w", t.Checkpoint, err)
	}
	if err := s.stage.markCommitted(t); err != nil {
		return fmt.Errorf("nats: record commit of checkpoint %d: %w", t.Checkpoint, err)
	}
	if err := s.stage.Remove(t); err != nil {
		s.logger.Warn("nats: remove committed staging file", "file", t.File, "err", err)
	}
	return nil
}

// Recover implements pipeline.Committer: it commits the last checkpoint's
// token again (a no-op when it was committed) and discards everything
// staged after it.
func (s *natsSink) Recover(ctx context.Context, token []byte) error {
	if s.stage == nil {
		return nil
	}
	if token != nil {
		if err := s.Commit(ctx, token); err != nil {
			return err
		}
	}
	if err := s.stage.Reset(); err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	return nil
}

// Close implements pipeline.Sink. Outside exactly_once it first waits for
// outstanding acknowledgements (within ctx). Staged data is kept for
// Recover.
func (s *natsSink) Close(ctx context.Context) error {
	var err error
	if s.stage == nil && len(s.pending) > 0 {
		err = s.settle(ctx)
	}
	if s.stage != nil && s.stage.f != nil {
		s.stage.f.Close()
		s.stage.f = nil
	}
	s.nc.Close()
	return err
}
