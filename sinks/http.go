package sinks

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/internal/killpoint"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("http",
		"POST records in batches (JSON array or NDJSON, optionally gzip) with retries; exactly-once to receivers that drop repeated Idempotency-Keys",
		true, NewHTTPSinkConfig)
}

// HTTPSinkConfig is the `http:` sink: records are encoded as JSON
// (Record.AppendJSON) and POSTed in batches.
//
//	sinks:
//	  - http: { url: "https://collector.internal/ingest", format: ndjson, gzip: true,
//	            bearer_token_file: /run/secrets/collector-token }
//
// Answers: 2xx is success. 429, 408, 5xx and connection errors are
// retried with exponential backoff (honouring Retry-After, in seconds or
// as an HTTP date), without end by default. Any other status (400, 401,
// 403, 404, 413, ...) is a refusal that retrying does not change: the
// pipeline stops with an error naming the status and the start of the
// answer's body, and the last good checkpoint is kept, so nothing is lost
// and the batch is sent again once the receiver or the configuration is
// fixed.
//
// Delivery:
//
//   - exactly_once: a write-ahead sink. Write stages the epoch's records
//     in a file under the component directory; PreCommit seals it (fsync);
//     Commit POSTs the staged records in batches of batch_size, at most
//     max_in_flight at a time, each with an Idempotency-Key header derived
//     from the pipeline, the component, the checkpoint, the epoch's random
//     staging nonce and the batch's index. A commit interrupted by a crash
//     is sent again by Recover with the same batches and the same keys.
//     A receiver that drops a request whose key it has seen (weir's own
//     http_server source does, within its dedupe_window) therefore gets
//     every record exactly once. A receiver that ignores the header gets
//     at-least-once: the batches of the one epoch being committed at a
//     crash may arrive twice. Records are sent only once their checkpoint
//     is durable, so they arrive up to a checkpoint interval later than
//     under at_least_once.
//   - at_least_once / at_most_once: Write sends each full batch at once
//     (at most max_in_flight requests at a time) and Flush sends the rest
//     and waits for every answer. No Idempotency-Key is sent.
type HTTPSinkConfig struct {
	// URL is the http:// or https:// endpoint. Required. A user:password
	// in it is sent as basic auth and never logged.
	URL string `yaml:"url"`
	// Method is POST (default) or PUT.
	Method string `yaml:"method"`
	// Format is json (a JSON array of the batch's records, default) or
	// ndjson (one JSON object per line).
	Format string `yaml:"format"`
	// Gzip compresses bodies (Content-Encoding: gzip).
	Gzip bool `yaml:"gzip"`
	// Headers are added to every request.
	Headers map[string]string `yaml:"headers"`
	// BearerTokenFile holds a token sent as "Authorization: Bearer <token>".
	BearerTokenFile string `yaml:"bearer_token_file"`
	// Username and PasswordFile send HTTP basic auth.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// TLS configures HTTPS (CA, client certificate for mutual TLS).
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// BatchSize is the most records per request; default 500.
	BatchSize int `yaml:"batch_size"`
	// MaxBatchBytes ends a batch early once its records (before gzip)
	// reach this size; default 4 MiB.
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// MaxInFlight is the most requests under way at once; default 4.
	MaxInFlight int `yaml:"max_in_flight"`
	// Timeout bounds one request, answer included; default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxRetries bounds the retries of one batch; 0 (default) retries
	// until the pipeline stops.
	MaxRetries int `yaml:"max_retries"`
	// MinRetryDelay and MaxRetryDelay bound the backoff between retries;
	// defaults 100ms and 30s. A Retry-After above MaxRetryDelay is
	// honoured all the same.
	MinRetryDelay time.Duration `yaml:"min_retry_delay"`
	MaxRetryDelay time.Duration `yaml:"max_retry_delay"`
	// IdempotencyHeader is the header the key goes in under exactly_once;
	// default Idempotency-Key.
	IdempotencyHeader string `yaml:"idempotency_header"`
}

// NewHTTPSinkConfig returns an HTTPSinkConfig with its defaults.
func NewHTTPSinkConfig() *HTTPSinkConfig {
	return &HTTPSinkConfig{Method: http.MethodPost, Format: "json", BatchSize: 500, MaxBatchBytes: 4 << 20,
		MaxInFlight: 4, Timeout: 30 * time.Second, MinRetryDelay: 100 * time.Millisecond,
		MaxRetryDelay: 30 * time.Second, IdempotencyHeader: "Idempotency-Key"}
}

// Validate implements pipeline.Validator.
func (c *HTTPSinkConfig) Validate() error {
	if c.URL == "" {
		return errors.New("http: url is required (https://host/path)")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("http: %w", connect.URLError(c.URL, err))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("http: url %s: want http:// or https:// and a host", connect.RedactURL(c.URL))
	}
	if c.Method != http.MethodPost && c.Method != http.MethodPut {
		return fmt.Errorf("http: method %q: want POST or PUT", c.Method)
	}
	if c.Format != "json" && c.Format != "ndjson" {
		return fmt.Errorf("http: format %q: want json or ndjson", c.Format)
	}
	if c.BearerTokenFile != "" && (c.Username != "" || c.PasswordFile != "") {
		return errors.New("http: bearer_token_file and basic auth (username, password_file) exclude each other")
	}
	if c.PasswordFile != "" && c.Username == "" {
		return errors.New("http: password_file needs username")
	}
	for k := range c.Headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") {
			return fmt.Errorf("http: header name %q is not valid", k)
		}
	}
	if c.BatchSize < 1 || c.MaxInFlight < 1 || c.MaxBatchBytes < 1 {
		return errors.New("http: batch_size, max_batch_bytes and max_in_flight must be at least 1")
	}
	if c.Timeout < 0 || c.MinRetryDelay < 0 || c.MaxRetryDelay < 0 || c.MaxRetries < 0 {
		return errors.New("http: durations and max_retries must not be negative")
	}
	if c.IdempotencyHeader == "" {
		return errors.New("http: idempotency_header must not be empty")
	}
	return c.TLS.Validate()
}

// NewSink implements pipeline.SinkConfig. It reads the secrets and
// prepares the client (and, under exactly_once, the staging directory);
// it does not call the receiver.
func (c *HTTPSinkConfig) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := &httpSink{cfg: *c, safeURL: connect.RedactURL(c.URL), logger: b.Logger, pipeline: b.Pipeline, component: b.Component,
		sem: make(chan struct{}, c.MaxInFlight)}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.component == "" {
		s.component = fmt.Sprintf("%s/sinks[%d]/http", b.Pipeline, b.Index)
	}
	u, _ := url.Parse(c.URL)
	if u.User != nil {
		pw, _ := u.User.Password()
		s.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw))
		u.User = nil
	}
	s.url = u.String()
	switch {
	case c.BearerTokenFile != "":
		tok, err := connect.ReadSecretFile(c.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("http: bearer_token_file: %w", err)
		}
		s.auth = "Bearer " + tok
	case c.Username != "":
		pw := ""
		if c.PasswordFile != "" {
			var err error
			if pw, err = connect.ReadSecretFile(c.PasswordFile); err != nil {
				return nil, fmt.Errorf("http: %w", err)
			}
		}
		s.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.Username+":"+pw))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = c.MaxInFlight
	if c.TLS != nil {
		tc, err := c.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("http: %w", err)
		}
		tr.TLSClientConfig = tc
	}
	s.client = &http.Client{Transport: tr, Timeout: c.Timeout}
	if b.Guarantee == pipeline.ExactlyOnce {
		var err error
		if s.stage, err = newEpochStage(b.Dir, "http"); err != nil {
			return nil, fmt.Errorf("http: %w", err)
		}
	}
	sum := sha256.Sum256([]byte(b.Pipeline + "\x00" + s.component))
	s.keyPrefix = "weir-" + hex.EncodeToString(sum[:8])
	return s, nil
}

// httpSink implements pipeline.Sink, pipeline.Flusher and
// pipeline.Committer. Write, Flush, PreCommit, Commit, Recover and Close
// run on the sink's goroutine; requests run on goroutines of their own,
// at most max_in_flight.
type httpSink struct {
	cfg       HTTPSinkConfig
	url       string // without userinfo
	safeURL   string
	auth      string // Authorization header, or ""
	logger    *slog.Logger
	pipeline  string
	component string
	keyPrefix string
	client    *http.Client

	stage *epochStage // exactly_once only

	// at_least_once: the batch being filled.
	buf   []byte
	count int

	sem     chan struct{} // one token per request under way
	wg      sync.WaitGroup
	errMu   sync.Mutex
	sendErr error // first failed request since the last Flush
}

// Write implements pipeline.Sink.
func (s *httpSink) Write(ctx context.Context, b *pipeline.Batch) error {
	if err := s.failed(); err != nil {
		return err
	}
	for _, r := range b.Records {
		if s.stage != nil {
			s.buf = r.AppendJSON(s.buf[:0])
			if err := s.stage.Append(s.buf); err != nil {
				return fmt.Errorf("http: %w", err)
			}
			continue
		}
		s.buf = s.appendRecord(s.buf, s.count, r.AppendJSON)
		s.count++
		if s.count >= s.cfg.BatchSize || len(s.buf) >= s.cfg.MaxBatchBytes {
			if err := s.dispatch(ctx, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// appendRecord appends the i-th record of a batch with its separator.
func (s *httpSink) appendRecord(dst []byte, i int, enc func([]byte) []byte) []byte {
	if s.cfg.Format == "json" {
		if i == 0 {
			dst = append(dst, '[')
		} else {
			dst = append(dst, ',')
		}
		return enc(dst)
	}
	return append(enc(dst), '\n')
}

// body finishes a batch's bytes (closing the array, gzip).
func (s *httpSink) body(buf []byte) ([]byte, error) {
	if s.cfg.Format == "json" {
		buf = append(buf, ']')
	}
	if !s.cfg.Gzip {
		return buf, nil
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	if _, err := w.Write(buf); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return z.Bytes(), nil
}

// dispatch sends the batch being filled on a goroutine of its own, first
// waiting for a free request slot.
func (s *httpSink) dispatch(ctx context.Context, key string) error {
	if s.count == 0 {
		return nil
	}
	body, err := s.body(s.buf)
	if err != nil {
		return fmt.Errorf("http: gzip: %w", err)
	}
	if s.cfg.Gzip {
		s.buf = s.buf[:0]
	} else {
		s.buf = nil // the request owns it now
	}
	n := s.count
	s.count = 0
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		if err := s.send(ctx, body, key, n); err != nil {
			s.errMu.Lock()
			if s.sendErr == nil {
				s.sendErr = err
			}
			s.errMu.Unlock()
		}
	}()
	return nil
}

func (s *httpSink) failed() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.sendErr
}

// wait waits for every request under way and returns (and clears) the
// first failure.
func (s *httpSink) wait() error {
	s.wg.Wait()
	s.errMu.Lock()
	defer s.errMu.Unlock()
	err := s.sendErr
	s.sendErr = nil
	return err
}

// httpRefused is an answer that retrying does not change.
type httpRefused struct {
	status int
	body   string
}

func (e *httpRefused) Error() string {
	return fmt.Sprintf("answered %d %s: %q (not retried: a 4xx other than 408 and 429 says the receiver refuses the request)",
		e.status, http.StatusText(e.status), e.body)
}

// send POSTs one batch of n records until it is accepted, retrying what
// can be retried.
func (s *httpSink) send(ctx context.Context, body []byte, key string, n int) error {
	bo := connect.Backoff{Min: s.cfg.MinRetryDelay, Max: s.cfg.MaxRetryDelay}
	for attempt := 0; ; attempt++ {
		wait, err := s.post(ctx, body, key)
		if err == nil {
			return nil
		}
		var refused *httpRefused
		if errors.As(err, &refused) || pipeline.IsCertificateError(err) || ctx.Err() != nil {
			return fmt.Errorf("http: POST %d records to %s: %w", n, s.safeURL, err)
		}
		if s.cfg.MaxRetries > 0 && attempt >= s.cfg.MaxRetries {
			return fmt.Errorf("http: POST %d records to %s: gave up after %d retries: %w", n, s.safeURL, attempt, err)
		}
		d := bo.Next()
		if wait > 0 {
			d = wait
		}
		s.logger.Warn("http: request failed; retrying", "url", s.safeURL, "records", n, "attempt", attempt+1, "in", d, "err", err)
		if err := connect.SleepContext(ctx, d); err != nil {
			return fmt.Errorf("http: POST %d records to %s: %w", n, s.safeURL, err)
		}
	}
}

// post makes one request. A retryable failure may come with the delay
// the receiver asked for (Retry-After).
func (s *httpSink) post(ctx context.Context, body []byte, key string) (retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, s.cfg.Method, s.url, bytes.NewReader(body))
	if err != nil {
		return 0, &httpRefused{body: err.Error()}
	}
	for k, v := range s.cfg.Headers {
		req.Header.Set(k, v)
	}
	if s.cfg.Format == "json" {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	if s.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if s.auth != "" {
		req.Header.Set("Authorization", s.auth)
	}
	if key != "" {
		req.Header.Set(s.cfg.IdempotencyHeader, key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a password
		}
		return 0, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // so the connection is reused
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return 0, nil
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		return httpRetryAfter(resp.Header.Get("Retry-After"), time.Now()), fmt.Errorf("answered %d %s: %q", code, http.StatusText(code), strings.TrimSpace(string(msg)))
	default:
		return 0, &httpRefused{status: code, body: strings.TrimSpace(string(msg))}
	}
}

// httpRetryAfter reads a Retry-After header: delay-seconds or an HTTP
// date; 0 when absent or unreadable.
func httpRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Flush implements pipeline.Flusher (at_least_once, at_most_once): it
// sends the batch being filled and waits until every request is answered.
func (s *httpSink) Flush(ctx context.Context) error {
	if s.stage != nil {
		return nil
	}
	err := s.dispatch(ctx, "")
	if werr := s.wait(); err == nil {
		err = werr
	}
	return err
}

// PreCommit implements pipeline.Committer: it seals the epoch's staged
// records (fsync) and returns the token naming them.
func (s *httpSink) PreCommit(_ context.Context, checkpoint uint64) ([]byte, error) {
	if s.stage == nil {
		return nil, errors.New("http: PreCommit outside exactly_once")
	}
	t, err := s.stage.Seal(checkpoint)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	return json.Marshal(t)
}

// idempotencyKey is the key of batch i of epoch t: the same in every
// attempt to commit t, in this process or after a restart.
func (s *httpSink) idempotencyKey(t stageToken, i int) string {
	return s.keyPrefix + "-" + t.ID() + "-" + strconv.Itoa(i)
}

// Commit implements pipeline.Committer: it sends the staged epoch in
// batches with deterministic Idempotency-Keys and waits for every answer,
// then records the epoch as committed. Committing a token already
// recorded does nothing; one whose sending was interrupted is sent again,
// whole, with the same keys.
func (s *httpSink) Commit(ctx context.Context, token []byte) error {
	if s.stage == nil {
		return errors.New("http: Commit outside exactly_once")
	}
	t, err := parseStageToken(token)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	done, err := s.stage.committedID()
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	if done == t.ID() {
		return nil
	}
	s.buf, s.count = s.buf[:0], 0
	batch := 0
	err = s.stage.Each(t, func(_ int64, f [][]byte) error {
		if len(f) != 1 {
			return fmt.Errorf("staged record has %d fields, want 1", len(f))
		}
		s.buf = s.appendRecord(s.buf, s.count, func(dst []byte) []byte { return append(dst, f[0]...) })
		s.count++
		if s.count >= s.cfg.BatchSize || len(s.buf) >= s.cfg.MaxBatchBytes {
			if err := s.dispatch(ctx, s.idempotencyKey(t, batch)); err != nil {
				return err
			}
			batch++
			if batch == 1 {
				s.wg.Wait()
				killpoint.Hit(killpoint.HTTPCommitPartial)
			}
		}
		return s.failed()
	})
	if err == nil {
		err = s.dispatch(ctx, s.idempotencyKey(t, batch))
	}
	if werr := s.wait(); err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("http: commit checkpoint %d: %w", t.Checkpoint, err)
	}
	if err := s.stage.markCommitted(t); err != nil {
		return fmt.Errorf("http: record commit of checkpoint %d: %w", t.Checkpoint, err)
	}
	if err := s.stage.Remove(t); err != nil {
		s.logger.Warn("http: remove committed staging file", "file", t.File, "err", err)
	}
	return nil
}

// Recover implements pipeline.Committer: it commits the last checkpoint's
// token again (a no-op when it was committed; the same keys when it was
// not) and discards everything staged after it.
func (s *httpSink) Recover(ctx context.Context, token []byte) error {
	if s.stage == nil {
		return nil
	}
	if token != nil {
		if err := s.Commit(ctx, token); err != nil {
			return err
		}
	}
	if err := s.stage.Reset(); err != nil {
		return fmt.Errorf("http: %w", err)
	}
	return nil
}

// Close implements pipeline.Sink. Outside exactly_once it first sends
// what is buffered and waits for the answers (within ctx). Staged data is
// kept for Recover.
func (s *httpSink) Close(ctx context.Context) error {
	var err error
	if s.stage == nil {
		err = s.Flush(ctx)
	} else if s.stage.f != nil {
		s.stage.f.Close()
		s.stage.f = nil
	}
	s.client.CloseIdleConnections()
	return err
}
