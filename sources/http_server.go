package sources

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("http_server",
		"receive records over HTTP POST, answering each request only once its records are durable",
		NewHTTPServerConfig)
}

// HTTPServerConfig is the `http_server:` source: an HTTP server that turns
// each POST body into records and answers the request only once those
// records are durable.
//
//	sources:
//	  - http_server: { address: ":8080", path: /ingest, format: ndjson,
//	                   bearer_token_file: /run/secrets/ingest-token }
//
// What the status says:
//
//   - 204 No Content: every record of the body is durable. Under
//     exactly_once that is written to the ingest WAL and fsynced; under
//     at_least_once, committed by every sink at a checkpoint (the answer
//     waits for the next checkpoint); under at_most_once, read.
//   - 429 Too Many Requests, with Retry-After: max_pending requests are
//     already waiting to be durable. Nothing of this request was kept.
//   - 413 Content Too Large: the body (after gzip) is over max_body_bytes,
//     or it holds more than max_records records. Nothing was kept.
//   - 400 Bad Request: the body does not parse as format (a line of ndjson
//     that is not JSON, say), or the Idempotency-Key is not usable.
//     Nothing was kept: a request is taken whole or not at all.
//   - 401 (bad or missing credentials), 405 (not POST or PUT), 415 (a
//     Content-Encoding other than gzip).
//   - 503 Service Unavailable, with Retry-After: weir is stopping, or the
//     records were not durable within ack_timeout. They may still become
//     so: retry with the same Idempotency-Key.
//
// A client that gets no answer (weir crashed, the connection broke)
// does not know whether its records were kept, and should retry with the
// same Idempotency-Key header: every record carries the id "<key>#<n>"
// (Origin.ID, n its position in the body), so under exactly_once the
// runtime drops those already in the WAL within dedupe_window, across
// restarts too. Within one run, a retry of a request still waiting joins
// it, and a retry of one already answered within dedupe_window is
// answered 204 at once, under every guarantee. Without the header, a
// retry is new data.
//
// Formats: lines (one record per line, empty lines skipped, a trailing
// "\r" dropped), ndjson (lines that must each be JSON), json (one JSON
// value, or an array whose elements are one record each). Record values
// are the raw bytes; parse them with the parse operator.
//
// Slow and broken clients: read_header_timeout bounds the request head
// (slowloris), read_timeout the whole request, idle_timeout a kept-alive
// connection; a client that goes away while its request waits frees its
// goroutine at once (its records are still ingested, so a retry should
// keep the key). Memory is bounded by max_pending × max_body_bytes.
type HTTPServerConfig struct {
	// Address is host:port to listen on (":8080"). Required.
	Address string `yaml:"address"`
	// Path is the URL path records are posted to; default "/". Other
	// paths get 404.
	Path string `yaml:"path"`
	// Format is lines (default), ndjson or json.
	Format string `yaml:"format"`
	// MaxBodyBytes is the largest body accepted, after gzip decoding;
	// default 10 MiB.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxRecords is the most records one request may hold; default
	// 100000.
	MaxRecords int `yaml:"max_records"`
	// MaxPending is the most requests accepted and not yet durable; more
	// are refused with 429. Default 256.
	MaxPending int `yaml:"max_pending"`
	// RetryAfter is the Retry-After of 429 and 503 answers; default 1s
	// (rounded up to whole seconds).
	RetryAfter time.Duration `yaml:"retry_after"`
	// AckTimeout is how long a request waits for its records to be
	// durable before it is answered 503; default 30s. Under
	// at_least_once keep it above the checkpoint interval.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout are net/http's;
	// defaults 10s, 60s and 120s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	// BearerTokenFile holds the token clients must send as
	// "Authorization: Bearer <token>".
	BearerTokenFile string `yaml:"bearer_token_file"`
	// Username and PasswordFile ask for HTTP basic auth instead.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// TLS serves HTTPS: cert_file and key_file are the server's; ca_file
	// asks clients for a certificate signed by it.
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// DedupeWindow bounds the record ids (from Idempotency-Key) remembered
	// to drop retries: {count: 131072} by default.
	DedupeWindow pipeline.DedupeWindow `yaml:"dedupe_window"`
	// Linger is how long Read keeps collecting requests into a batch after
	// the first; default 2ms.
	Linger time.Duration `yaml:"linger"`
}

// NewHTTPServerConfig returns an HTTPServerConfig with its defaults.
func NewHTTPServerConfig() *HTTPServerConfig {
	return &HTTPServerConfig{Path: "/", Format: "lines", MaxBodyBytes: 10 << 20, MaxRecords: 100000,
		MaxPending: 256, RetryAfter: time.Second, AckTimeout: 30 * time.Second,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		DedupeWindow: pipeline.DefaultDedupeWindow(), Linger: 2 * time.Millisecond}
}

// SeenIDWindow implements pipeline.DedupeWindower.
func (c *HTTPServerConfig) SeenIDWindow() pipeline.DedupeWindow { return c.DedupeWindow }

// Validate implements pipeline.Validator.
func (c *HTTPServerConfig) Validate() error {
	if c.Address == "" {
		return errors.New("http_server: address is required (host:port, e.g. \":8080\")")
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return fmt.Errorf("http_server: address %q: %w", c.Address, err)
	}
	if !strings.HasPrefix(c.Path, "/") {
		return fmt.Errorf("http_server: path %q must start with /", c.Path)
	}
	switch c.Format {
	case "lines", "ndjson", "json":
	default:
		return fmt.Errorf("http_server: format %q is not lines, ndjson or json", c.Format)
	}
	if c.MaxBodyBytes < 1 || c.MaxRecords < 1 || c.MaxPending < 1 {
		return errors.New("http_server: max_body_bytes, max_records and max_pending must be at least 1")
	}
	if c.RetryAfter < 0 || c.AckTimeout <= 0 || c.ReadHeaderTimeout <= 0 || c.ReadTimeout < 0 || c.IdleTimeout < 0 || c.Linger < 0 {
		return errors.New("http_server: durations must not be negative (ack_timeout and read_header_timeout above 0)")
	}
	if c.BearerTokenFile != "" && (c.Username != "" || c.PasswordFile != "") {
		return errors.New("http_server: bearer_token_file and username/password_file are two kinds of auth; set one")
	}
	if (c.Username == "") != (c.PasswordFile == "") {
		return errors.New("http_server: username and password_file go together (basic auth)")
	}
	return validateServerTLS("http_server", c.TLS)
}

// NewSource implements pipeline.SourceConfig. It listens before returning,
// so an address in use fails the start.
func (c *HTTPServerConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := &httpServerSource{cfg: *c, index: b.Index, batch: b.BatchSize, logger: b.Logger, now: b.Now,
		slots: make(chan struct{}, c.MaxPending), reqs: make(chan *httpRequest, c.MaxPending),
		closing: make(chan struct{}), inflight: map[string]*httpRequest{},
		answered: newKeyRing(c.DedupeWindow)}
	if s.batch <= 0 {
		s.batch = pipeline.DefaultBatchSize
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.retryAfter = strconv.Itoa(int((c.RetryAfter + time.Second - 1) / time.Second))
	var err error
	if c.BearerTokenFile != "" {
		tok, err := connect.ReadSecretFile(c.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("http_server: bearer_token_file: %w", err)
		}
		s.wantAuth = sha256.Sum256([]byte("Bearer " + tok))
		s.auth = true
	}
	if c.PasswordFile != "" {
		pass, err := connect.ReadSecretFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("http_server: %w", err)
		}
		s.wantUser, s.wantPass = sha256.Sum256([]byte(c.Username)), sha256.Sum256([]byte(pass))
		s.basic, s.auth = true, true
	}
	tlsCfg, err := serverTLSConfig(c.TLS)
	if err != nil {
		return nil, fmt.Errorf("http_server: %w", err)
	}
	ln, err := net.Listen("tcp", c.Address)
	if err != nil {
		return nil, fmt.Errorf("http_server: listen on %s: %w", c.Address, err)
	}
	s.addr = ln.Addr()
	mux := http.NewServeMux()
	mux.HandleFunc(c.Path, s.handle)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: c.ReadHeaderTimeout, ReadTimeout: c.ReadTimeout,
		IdleTimeout: c.IdleTimeout, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug)}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("http_server: serve", "address", c.Address, "err", err)
		}
	}()
	return s, nil
}

// httpServerSource implements pipeline.Source.
//
// Each request is parsed on its handler goroutine, which takes a slot
// (slots: at most max_pending requests between parsing and durability),
// queues the request on reqs and waits for its done channel. Read takes
// requests off reqs; the AckFunc of their batch, called by the runtime once
// the batch is durable, closes their done channels and gives the slots
// back.
type httpServerSource struct {
	cfg        HTTPServerConfig
	index      int
	batch      int
	logger     *slog.Logger
	now        func() time.Time
	retryAfter string
	addr       net.Addr
	srv        *http.Server
	served     chan struct{} // closed when Serve returned

	auth, basic        bool
	wantAuth           [32]byte // sha256 of the whole Authorization header for bearer
	wantUser, wantPass [32]byte // sha256 of basic auth's user and password

	slots   chan struct{}     // one token per request taken and not yet durable
	reqs    chan *httpRequest // from the handlers to Read; never blocks (a slot is held)
	closing chan struct{}     // closed by Close: waiting handlers answer 503
	once    sync.Once

	// mu guards inflight (requests with an Idempotency-Key not yet answered,
	// by key) and answered (keys of requests answered 204).
	mu       sync.Mutex
	inflight map[string]*httpRequest
	answered *keyRing

	buf []*httpRequest // Read's scratch
}

// httpRequest is one accepted request on its way to durability.
type httpRequest struct {
	key  string
	recs [][]byte
	done chan struct{} // closed once the records are durable
	once sync.Once
}

// Addr returns the address the server listens on (useful with port 0).
func (s *httpServerSource) Addr() net.Addr { return s.addr }

func (s *httpServerSource) fail(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", s.retryAfter)
	}
	http.Error(w, "http_server: "+msg, code)
}

func (s *httpServerSource) authorized(r *http.Request) bool {
	if !s.auth {
		return true
	}
	if s.basic {
		u, p, ok := r.BasicAuth()
		hu, hp := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		return ok && subtle.ConstantTimeCompare(hu[:], s.wantUser[:])&subtle.ConstantTimeCompare(hp[:], s.wantPass[:]) == 1
	}
	h := sha256.Sum256([]byte(r.Header.Get("Authorization")))
	return subtle.ConstantTimeCompare(h[:], s.wantAuth[:]) == 1
}

// handle serves one request; see HTTPServerConfig for what each status
// means.
func (s *httpServerSource) handle(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.cfg.Path {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		s.fail(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if !s.authorized(r) {
		if s.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="weir"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="weir"`)
		}
		s.fail(w, http.StatusUnauthorized, "missing or wrong credentials")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 256 || strings.ContainsFunc(key, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		s.fail(w, http.StatusBadRequest, "Idempotency-Key must be at most 256 printable ASCII characters without spaces")
		return
	}
	enc := r.Header.Get("Content-Encoding")
	if enc != "" && enc != "gzip" && enc != "identity" {
		s.fail(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q is not supported (use gzip or none)", enc))
		return
	}
	if enc != "gzip" && r.ContentLength > int64(s.cfg.MaxBodyBytes) {
		s.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is over max_body_bytes %d", r.ContentLength, s.cfg.MaxBodyBytes))
		return
	}
	if key != "" {
		s.mu.Lock()
		if s.answered.has(key, s.now()) {
			s.mu.Unlock()
			w.WriteHeader(http.StatusNoContent) // a retry of a request already durable
			return
		}
		if prev := s.inflight[key]; prev != nil {
			s.mu.Unlock()
			s.await(w, r, prev) // a retry while the first try still waits: its answer is ours
			return
		}
		s.mu.Unlock()
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.fail(w, http.StatusTooManyRequests, fmt.Sprintf("%d requests are waiting to be durable (max_pending)", s.cfg.MaxPending))
		return
	}
	queued := false
	defer func() {
		if !queued {
			<-s.slots
		}
	}()
	body, code, msg := s.readBody(r, enc)
	if code != 0 {
		s.fail(w, code, msg)
		return
	}
	recs, err := splitBody(s.cfg.Format, body, s.cfg.MaxRecords)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errTooManyRecords) {
			code = http.StatusRequestEntityTooLarge
		}
		s.fail(w, code, err.Error())
		return
	}
	if len(recs) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	req := &httpRequest{key: key, recs: recs, done: make(chan struct{})}
	if key != "" {
		s.mu.Lock()
		if prev := s.inflight[key]; prev != nil { // raced with a retry of the same key
			s.mu.Unlock()
			s.await(w, r, prev)
			return
		}
		s.inflight[key] = req
		s.mu.Unlock()
	}
	select {
	case <-s.closing:
		s.forget(req, false)
		s.fail(w, http.StatusServiceUnavailable, "weir is stopping")
		return
	default:
	}
	s.reqs <- req // a slot is held: never blocks
	queued = true
	s.await(w, r, req)
}

// readBody reads the body within max_body_bytes. A non-zero code is the
// answer to give.
func (s *httpServerSource) readBody(r *http.Request, enc string) (body []byte, code int, msg string) {
	limit := int64(s.cfg.MaxBodyBytes)
	var rd io.Reader = http.MaxBytesReader(nil, r.Body, limit)
	if enc == "gzip" {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, http.StatusBadRequest, "gzip: " + err.Error()
		}
		defer zr.Close()
		rd = io.LimitReader(zr, limit+1)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 && enc != "gzip" {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(rd)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || int64(buf.Len()) > limit:
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is over max_body_bytes %d", limit)
	case err != nil:
		return nil, http.StatusBadRequest, "read body: " + err.Error()
	}
	return buf.Bytes(), 0, ""
}

// await answers r once req is durable, weir stops or ack_timeout passes;
// it returns at once when the client goes away.
func (s *httpServerSource) await(w http.ResponseWriter, r *http.Request, req *httpRequest) {
	t := time.NewTimer(s.cfg.AckTimeout)
	defer t.Stop()
	select {
	case <-req.done:
		w.WriteHeader(http.StatusNoContent)
	case <-r.Context().Done():
		// The client left; the records go on (a retry with the key is dropped).
	case <-t.C:
		s.fail(w, http.StatusServiceUnavailable, fmt.Sprintf("records not durable within ack_timeout %v; retry with the same Idempotency-Key", s.cfg.AckTimeout))
	case <-s.closing:
		select {
		case <-req.done:
			w.WriteHeader(http.StatusNoContent)
		default:
			s.fail(w, http.StatusServiceUnavailable, "weir is stopping; retry with the same Idempotency-Key")
		}
	}
}

// forget ends req's wait: durable says whether its records were kept.
func (s *httpServerSource) forget(req *httpRequest, durable bool) {
	req.once.Do(func() {
		if req.key != "" {
			s.mu.Lock()
			if s.inflight[req.key] == req {
				delete(s.inflight, req.key)
			}
			if durable {
				s.answered.add(req.key, s.now())
			}
			s.mu.Unlock()
		}
		if durable {
			close(req.done)
		}
	})
}

// Read implements pipeline.Source: it waits up to 200ms for a first
// request, then takes more for up to linger while the batch holds fewer
// than the batch size records. A request's records stay together.
func (s *httpServerSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	timer := time.NewTimer(readWait)
	defer timer.Stop()
	buf := s.buf[:0]
	select {
	case req := <-s.reqs:
		buf = append(buf, req)
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closing:
		return nil, errors.New("http_server: source closed")
	}
	n := len(buf[0].recs)
	timer.Reset(s.cfg.Linger)
collect:
	for n < s.batch {
		select {
		case req := <-s.reqs:
			buf = append(buf, req)
			n += len(req.recs)
		case <-timer.C:
			break collect
		case <-ctx.Done():
			break collect
		}
	}
	now := s.now()
	recs := pipeline.NewRecords(n)
	i := 0
	for _, req := range buf {
		for j, v := range req.recs {
			r := recs[i]
			i++
			r.Value, r.Time, r.Source = v, now, s.index
			r.Origin = pipeline.Origin{Name: s.cfg.Path, Offset: int64(j)}
			if req.key != "" {
				r.Origin.ID = req.key + "#" + strconv.Itoa(j)
			}
			b.Records = append(b.Records, r)
		}
	}
	done := append([]*httpRequest(nil), buf...)
	clear(buf)
	s.buf = buf[:0]
	return func(context.Context) error {
		for _, req := range done {
			s.forget(req, true)
			<-s.slots
		}
		return nil
	}, nil
}

// Close implements pipeline.Source: it stops listening, answers every
// waiting request 503 (their records were not made durable, or weir cannot
// tell them so) and waits for the handlers to return.
func (s *httpServerSource) Close(ctx context.Context) error {
	s.once.Do(func() { close(s.closing) })
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.served
	for {
		select {
		case req := <-s.reqs:
			s.forget(req, false)
			<-s.slots
		default:
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("http_server: shut down: %w", err)
			}
			return nil
		}
	}
}

var errTooManyRecords = errors.New("too many records")

// splitBody cuts a body into record values (aliasing body) by format, or
// says why it does not parse.
func splitBody(format string, body []byte, maxRecords int) ([][]byte, error) {
	if format == "json" {
		t := bytes.TrimSpace(body)
		if len(t) == 0 {
			return nil, nil
		}
		if t[0] != '[' {
			if !json.Valid(t) {
				return nil, errors.New("body is not valid JSON")
			}
			return [][]byte{t}, nil
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(t, &elems); err != nil {
			return nil, fmt.Errorf("body is not a valid JSON array: %v", err)
		}
		if len(elems) > maxRecords {
			return nil, fmt.Errorf("%w: %d JSON elements, max_records is %d", errTooManyRecords, len(elems), maxRecords)
		}
		out := make([][]byte, len(elems))
		for i, e := range elems {
			out[i] = e
		}
		return out, nil
	}
	out := make([][]byte, 0, bytes.Count(body, []byte{'\n'})+1)
	line := 0
	for len(body) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			l, body = body[:i], body[i+1:]
		} else {
			l, body = body, nil
		}
		l = bytes.TrimSuffix(l, []byte{'\r'})
		if len(l) == 0 {
			continue
		}
		if format == "ndjson" && !json.Valid(l) {
			return nil, fmt.Errorf("line %d is not valid JSON", line)
		}
		if len(out) == maxRecords {
			return nil, fmt.Errorf("%w: more than max_records %d records", errTooManyRecords, maxRecords)
		}
		out = append(out, l)
	}
	return out, nil
}

// keyRing remembers the last n keys added, each for at most age (when
// positive), for membership tests.
type keyRing struct {
	age  time.Duration
	set  map[string]time.Time // key → when added
	ring []string
	next int
}

func newKeyRing(w pipeline.DedupeWindow) *keyRing {
	n := w.Count
	if n <= 0 {
		n = pipeline.DefaultDedupeCount
	}
	return &keyRing{age: w.Age, set: make(map[string]time.Time, min(n, 1024)), ring: make([]string, n)}
}

func (k *keyRing) has(key string, now time.Time) bool {
	at, ok := k.set[key]
	return ok && (k.age <= 0 || now.Sub(at) <= k.age)
}

func (k *keyRing) add(key string, now time.Time) {
	if _, ok := k.set[key]; ok {
		k.set[key] = now
		return
	}
	if old := k.ring[k.next]; old != "" {
		delete(k.set, old)
	}
	k.ring[k.next] = key
	k.set[key] = now
	k.next = (k.next + 1) % len(k.ring)
}
