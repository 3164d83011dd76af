package sources

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

func newHTTPTestSource(t *testing.T, edit func(c *HTTPServerConfig)) *httpServerSource {
	t.Helper()
	c := NewHTTPServerConfig()
	c.Address = "127.0.0.1:0"
	c.Path = "/ingest"
	if edit != nil {
		edit(c)
	}
	src, err := c.NewSource(pipeline.Build{Index: 0, BatchSize: 1000, Guarantee: pipeline.ExactlyOnce})
	if err != nil {
		t.Fatal(err)
	}
	s := src.(*httpServerSource)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func (s *httpServerSource) testURL() string { return "http://" + s.Addr().String() + s.cfg.Path }

// post sends body and returns the status and the answer's body.
func httpTestPost(t *testing.T, c *http.Client, url, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readAck reads one batch and returns its record values and AckFunc.
func readAck(t *testing.T, s *httpServerSource) ([]string, pipeline.AckFunc) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var b pipeline.Batch
		ack, err := s.Read(context.Background(), &b)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if len(b.Records) == 0 {
			continue
		}
		var out []string
		for _, r := range b.Records {
			out = append(out, string(r.Value))
		}
		return out, ack
	}
	t.Fatal("no records read within 10s")
	return nil, nil
}

// serveReads acks every batch, setting acked before the AckFunc runs.
func serveReads(t *testing.T, s *httpServerSource, acked *atomic.Int64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var b pipeline.Batch
			ack, err := s.Read(ctx, &b)
			if err != nil {
				return
			}
			acked.Add(int64(len(b.Records)))
			if ack != nil {
				_ = ack(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

func TestHTTPServerAnswersOnlyAfterAck(t *testing.T) {
	s := newHTTPTestSource(t, nil)
	var acked atomic.Int64
	defer serveReads(t, s, &acked)()
	code, _ := httpTestPost(t, http.DefaultClient, s.testURL(), "a\nb\r\n\nc")
	if code != http.StatusNoContent {
		t.Fatalf("status %d, want 204", code)
	}
	if n := acked.Load(); n != 3 {
		t.Fatalf("answered 204 when %d records had been acked, want 3 (lines a, b, c; the empty line skipped)", n)
	}
}

func TestHTTPServerStatusCodes(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	s := newHTTPTestSource(t, func(c *HTTPServerConfig) {
		c.Format = "ndjson"
		c.MaxBodyBytes = 64
		c.MaxRecords = 3
		c.BearerTokenFile = tokenFile
	})
	var acked atomic.Int64
	defer serveReads(t, s, &acked)()
	auth := []string{"Authorization", "Bearer s3cret"}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"z":1}` + "\n" + strings.Repeat(" ", 100) + "\n"))
	zw.Close()
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		want                     int
	}{
		{"ok", "POST", "/ingest", `{"a":1}` + "\n" + `{"a":2}`, auth, 204},
		{"empty body", "POST", "/ingest", "", auth, 204},
		{"not json", "POST", "/ingest", `{"a":1}` + "\nnope\n", auth, 400},
		{"too long", "POST", "/ingest", strings.Repeat("x", 65), auth, 413},
		{"too many records", "POST", "/ingest", "1\n2\n3\n4\n", auth, 413},
		{"no token", "POST", "/ingest", `{"a":1}`, nil, 401},
		{"wrong token", "POST", "/ingest", `{"a":1}`, []string{"Authorization", "Bearer s3cre"}, 401},
		{"GET", "GET", "/ingest", "", auth, 405},
		{"other path", "POST", "/other", `{"a":1}`, auth, 404},
		{"brotli", "POST", "/ingest", `{"a":1}`, append([]string{"Content-Encoding", "br"}, auth...), 415},
		{"gzip over the limit once decoded", "POST", "/ingest", gz.String(), append([]string{"Content-Encoding", "gzip"}, auth...), 413},
		{"bad key", "POST", "/ingest", `{"a":1}`, append([]string{"Idempotency-Key", "has space"}, auth...), 400},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+s.Addr().String()+tc.path, strings.NewReader(tc.body))
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			req.Header.Set(tc.hdr[i], tc.hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d (%s), want %d", tc.name, resp.StatusCode, msg, tc.want)
		}
	}
	if n := acked.Load(); n != 2 {
		t.Errorf("%d records ingested, want 2 (only the ok request's; refused requests keep nothing)", n)
	}
}

func TestHTTPServerChunkedBodyOverLimit(t *testing.T) {
	s := newHTTPTestSource(t, func(c *HTTPServerConfig) { c.MaxBodyBytes = 1000 })
	pr, pw := io.Pipe()
	go func() {
		for range 100 {
			if _, err := pw.Write([]byte(strings.Repeat("y", 99) + "\n")); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp, err := http.Post(s.testURL(), "text/plain", pr) // no Content-Length: chunked
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

func TestHTTPServerFormats(t *testing.T) {
	for _, tc := range []struct {
		format, body string
		want         []string
		err          bool
	}{
		{"lines", "a\n\nb\r\nc\n", []string{"a", "b", "c"}, false},
		{"ndjson", "{\"a\":1}\n[2]\n", []string{`{"a":1}`, `[2]`}, false},
		{"ndjson", "{\"a\":1}\n{bad\n", nil, true},
		{"json", ` {"a":1} `, []string{`{"a":1}`}, false},
		{"json", `[{"a":1}, {"b":[2,3]}]`, []string{`{"a":1}`, `{"b":[2,3]}`}, false},
		{"json", `[{"a":1},`, nil, true},
		{"json", `{"a":1} {"b":2}`, nil, true},
		{"json", "  ", nil, false},
	} {
		got, err := splitBody(tc.format, []byte(tc.body), 100)
		if (err != nil) != tc.err {
			t.Errorf("%s %q: err %v, want error %v", tc.format, tc.body, err, tc.err)
			continue
		}
		var gs []string
		for _, g := range got {
			gs = append(gs, string(g))
		}
		if fmt.Sprint(gs) != fmt.Sprint(tc.want) {
			t.Errorf("%s %q: %q, want %q", tc.format, tc.body, gs, tc.want)
		}
	}
	if _, err := splitBody("json", []byte(`[1,2,3]`), 2); err == nil {
		t.Error("3 JSON elements passed max_records 2")
	}
}

func TestHTTPServerBackpressure429(t *testing.T) {
	s := newHTTPTestSource(t, func(c *HTTPServerConfig) { c.MaxPending = 1; c.RetryAfter = 3 * time.Second })
	first := make(chan int, 1)
	go func() {
		resp, err := http.Post(s.testURL(), "text/plain", strings.NewReader("one"))
		if err != nil {
			first <- -1
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	recs, ack := readAck(t, s) // the first request holds the only slot until acked
	if fmt.Sprint(recs) != "[one]" {
		t.Fatalf("read %q", recs)
	}
	resp, err := http.Post(s.testURL(), "text/plain", strings.NewReader("two"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("second request: status %d Retry-After %q, want 429 and 3", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	ack(context.Background())
	if code := <-first; code != http.StatusNoContent {
		t.Fatalf("first request: status %d, want 204", code)
	}
	// The ack gave the slot back: the next request is taken.
	var acked atomic.Int64
	defer serveReads(t, s, &acked)()
	if code, _ := httpTestPost(t, http.DefaultClient, s.testURL(), "three"); code != http.StatusNoContent {
		t.Fatalf("third request after the ack: status %d, want 204", code)
	}
}

func TestHTTPServerAckTimeout503(t *testing.T) {
	s := newHTTPTestSource(t, func(c *HTTPServerConfig) { c.AckTimeout = 50 * time.Millisecond })
	got := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Post(s.testURL(), "text/plain", strings.NewReader("slow"))
		if err == nil {
			resp.Body.Close()
		}
		got <- resp
	}()
	_, ack := readAck(t, s) // read, never acked in time
	resp := <-got
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("got %v, want 503 with Retry-After", resp)
	}
	ack(context.Background()) // late: gives the slot back without a waiter
	if len(s.slots) != 0 {
		t.Fatalf("%d slots still held after the late ack", len(s.slots))
	}
}

func TestHTTPServerIdempotencyKey(t *testing.T) {
	s := newHTTPTestSource(t, nil)
	post := func(key, body string) chan int {
		ch := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, s.testURL(), strings.NewReader(body))
			req.Header.Set("Idempotency-Key", key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				ch <- -1
				return
			}
			resp.Body.Close()
			ch <- resp.StatusCode
		}()
		return ch
	}
	first := post("k1", "a\nb")
	var b pipeline.Batch
	for len(b.Records) == 0 {
		ack, err := s.Read(context.Background(), &b)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Records) > 0 {
			if got := []string{b.Records[0].Origin.ID, b.Records[1].Origin.ID}; fmt.Sprint(got) != "[k1#0 k1#1]" {
				t.Fatalf("record ids %q, want k1#0 k1#1", got)
			}
			retry := post("k1", "a\nb") // joins the waiting request, or finds it answered
			ack(context.Background())
			if c1, c2 := <-first, <-retry; c1 != 204 || c2 != 204 {
				t.Fatalf("statuses %d and %d, want 204 twice", c1, c2)
			}
		}
	}
	again := post("k1", "a\nb") // already answered: 204 at once, nothing read
	if c := <-again; c != 204 {
		t.Fatalf("retry after the answer: status %d", c)
	}
	other := post("k2", "c")
	recs, ack := readAck(t, s)
	if fmt.Sprint(recs) != "[c]" {
		t.Fatalf("next batch %q, want only k2's record c (k1's retries add nothing)", recs)
	}
	ack(context.Background())
	<-other
}

func TestHTTPServerClientGoneAndSlowloris(t *testing.T) {
	s := newHTTPTestSource(t, func(c *HTTPServerConfig) { c.ReadHeaderTimeout = 200 * time.Millisecond })
	// A slowloris client: half a request head, then nothing.
	slow, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "POST /ingest HTTP/1.1\r\nHost: x\r\n")
	// A client that gives up while its request waits for durability.
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.testURL(), strings.NewReader("left"))
		_, err := http.DefaultClient.Do(req)
		gone <- err
	}()
	recs, ack := readAck(t, s)
	cancel()
	if err := <-gone; err == nil {
		t.Fatal("cancelled request returned no error")
	}
	// Others are served meanwhile.
	var acked atomic.Int64
	stop := serveReads(t, s, &acked)
	if code, _ := httpTestPost(t, http.DefaultClient, s.testURL(), "other"); code != 204 {
		t.Fatalf("a normal client behind a slowloris and a gone client: status %d", code)
	}
	stop()
	// The server hangs up on the slowloris client after read_header_timeout.
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(slow).ReadString('\n')
	if err == nil && !strings.Contains(line, "408") {
		t.Fatalf("slowloris connection: read %q, want it answered 408 or closed", line)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("slowloris connection still open 10s after read_header_timeout")
	}
	if fmt.Sprint(recs) != "[left]" {
		t.Fatalf("read %q", recs)
	}
	ack(context.Background()) // the gone client's records are still ingested
	if len(s.slots) != 0 {
		t.Fatalf("%d slots held after every request was acked", len(s.slots))
	}
	// Close waits for every handler (http.Server.Shutdown): a handler left
	// blocked would make it fail at its deadline (see the Cleanup).
}

func TestHTTPServerCloseAnswers503(t *testing.T) {
	c := NewHTTPServerConfig()
	c.Address = "127.0.0.1:0"
	src, err := c.NewSource(pipeline.Build{BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	s := src.(*httpServerSource)
	got := make(chan int, 1)
	go func() {
		resp, err := http.Post(s.testURL(), "text/plain", strings.NewReader("x"))
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	readAck(t, s) // read, never acked
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if code := <-got; code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
}

func TestHTTPServerBasicAuthAndTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := httpTestCert(t, dir)
	passFile := filepath.Join(dir, "pass")
	os.WriteFile(passFile, []byte("pw"), 0o600)
	s := newHTTPTestSource(t, func(c *HTTPServerConfig) {
		c.Username, c.PasswordFile = "ingest", passFile
		c.TLS = &pipeline.TLSOptions{CertFile: certFile, KeyFile: keyFile}
	})
	var acked atomic.Int64
	defer serveReads(t, s, &acked)()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	url := "https://" + s.Addr().String() + "/ingest"
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"ingest", "pw", 204}, {"ingest", "wrong", 401}, {"other", "pw", 401}} {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("x"))
		req.SetBasicAuth(tc.user, tc.pass)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s:%s: status %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.want)
		}
	}
	resp, err := http.Post("http://"+s.Addr().String()+"/ingest", "text/plain", strings.NewReader("x"))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: status %d, want 400 from the TLS layer", resp.StatusCode)
		}
	}
	if n := acked.Load(); n != 1 {
		t.Errorf("%d records ingested, want 1 (the authorized request only)", n)
	}
}

func TestHTTPServerConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(c *HTTPServerConfig)
		want string
	}{
		{func(c *HTTPServerConfig) { c.Address = "" }, "address is required"},
		{func(c *HTTPServerConfig) { c.Address = "8080" }, "address"},
		{func(c *HTTPServerConfig) { c.Format = "xml" }, "format"},
		{func(c *HTTPServerConfig) { c.Path = "ingest" }, "must start with /"},
		{func(c *HTTPServerConfig) { c.Username = "u" }, "go together"},
		{func(c *HTTPServerConfig) { c.BearerTokenFile, c.Username, c.PasswordFile = "t", "u", "p" }, "set one"},
		{func(c *HTTPServerConfig) { c.TLS = &pipeline.TLSOptions{CAFile: "ca.pem"} }, "cert_file and key_file"},
		{func(c *HTTPServerConfig) { c.MaxPending = 0 }, "max_pending"},
	} {
		c := NewHTTPServerConfig()
		c.Address = ":8080"
		tc.edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate: %v, want an error containing %q", err, tc.want)
		}
	}
	// An address in use fails the start.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := NewHTTPServerConfig()
	c.Address = ln.Addr().String()
	if _, err := c.NewSource(pipeline.Build{}); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("NewSource on a used port: %v", err)
	}
}

func TestHTTPServerConfigFromYAML(t *testing.T) {
	cfg, err := pipeline.Default.Load("h.yaml", []byte(`
pipelines:
  - name: h
    guarantee: at_least_once
    sources:
      - http_server: { address: ":8080", path: /in, format: json, max_body_bytes: 1048576, dedupe_window: { count: 1000 } }
    sinks:
      - stdout: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Pipelines[0].Sources[0].Config.(*HTTPServerConfig)
	if c.Path != "/in" || c.Format != "json" || c.MaxBodyBytes != 1<<20 || c.DedupeWindow.Count != 1000 || c.MaxPending != 256 {
		t.Fatalf("decoded %+v", c)
	}
	_, err = pipeline.Default.Load("h.yaml", []byte(`
pipelines:
  - name: h
    guarantee: at_least_once
    sources:
      - http_server: { address: ":8080", format: xml }
    sinks:
      - stdout: {}
`))
	if err == nil || !strings.Contains(err.Error(), "h.yaml:6") {
		t.Fatalf("bad format: %v, want an error at h.yaml:6", err)
	}
}

// httpTestCert writes a self-signed certificate for localhost and
// 127.0.0.1 and returns its files and a pool trusting it.
func httpTestCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestHTTPServerKeyRing(t *testing.T) {
	now := time.Unix(1000, 0)
	k := newKeyRing(pipeline.DedupeWindow{Count: 2, Age: time.Minute})
	k.add("a", now)
	k.add("b", now)
	if !k.has("a", now) || !k.has("b", now.Add(time.Minute)) {
		t.Fatal("keys within count and age forgotten")
	}
	if k.has("a", now.Add(time.Minute+1)) {
		t.Error("key older than age still remembered")
	}
	k.add("c", now)
	if k.has("a", now) || !k.has("b", now) || !k.has("c", now) {
		t.Error("count 2: want a forgotten, b and c remembered")
	}
}
