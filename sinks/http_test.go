package sinks

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// httpReceiver is a real HTTP server on loopback TCP that records what it
// is sent; answer decides each request's status (nil: 204).
type httpReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []httpReceived
	answer func(n int, w http.ResponseWriter) bool // true: answered
}

type httpReceived struct {
	header http.Header
	recs   []map[string]any
}

func newHTTPReceiver(t *testing.T, tls bool, answer func(n int, w http.ResponseWriter) bool) *httpReceiver {
	rc := &httpReceiver{answer: answer}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		n := len(rc.reqs)
		rc.reqs = append(rc.reqs, httpReceived{header: r.Header.Clone()})
		rc.mu.Unlock()
		if rc.answer != nil && rc.answer(n, w) {
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			z, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = z
		}
		data, _ := io.ReadAll(body)
		var recs []map[string]any
		if strings.Contains(r.Header.Get("Content-Type"), "ndjson") {
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					http.Error(w, err.Error(), 400)
					return
				}
				recs = append(recs, m)
			}
		} else if err := json.Unmarshal(data, &recs); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		rc.mu.Lock()
		rc.reqs[n].recs = recs
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	if tls {
		rc.srv = httptest.NewTLSServer(h)
	} else {
		rc.srv = httptest.NewServer(h)
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *httpReceiver) received() []httpReceived {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]httpReceived(nil), rc.reqs...)
}

// accepted returns the i fields of every record of the accepted requests.
func (rc *httpReceiver) accepted() []int {
	var ids []int
	for _, r := range rc.received() {
		for _, m := range r.recs {
			ids = append(ids, int(m["i"].(float64)))
		}
	}
	return ids
}

func httpRecords(from, to int) *pipeline.Batch {
	b := &pipeline.Batch{}
	for i := from; i < to; i++ {
		r := &pipeline.Record{}
		r.SetFields().Set("i", int64(i))
		b.Records = append(b.Records, r)
	}
	return b
}

func newHTTPTestSink(t *testing.T, c *HTTPSinkConfig, g pipeline.Guarantee, dir string) *httpSink {
	t.Helper()
	b, _ := testservices.Build(t, "test/sinks[0]/http", 100, g)
	if dir != "" {
		b.Dir = dir
	}
	s, err := c.NewSink(b)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*httpSink)
}

func TestHTTPSinkConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*HTTPSinkConfig)
		want string
	}{
		{func(c *HTTPSinkConfig) { c.URL = "" }, "url is required"},
		{func(c *HTTPSinkConfig) { c.URL = "ftp://x/y" }, "http://"},
		{func(c *HTTPSinkConfig) { c.Method = "GET" }, "method"},
		{func(c *HTTPSinkConfig) { c.Format = "csv" }, "format"},
		{func(c *HTTPSinkConfig) { c.BearerTokenFile, c.Username = "t", "u" }, "exclude"},
		{func(c *HTTPSinkConfig) { c.PasswordFile = "p" }, "username"},
		{func(c *HTTPSinkConfig) { c.Headers = map[string]string{"bad name": "x"} }, "header"},
		{func(c *HTTPSinkConfig) { c.MaxInFlight = 0 }, "max_in_flight"},
		{func(c *HTTPSinkConfig) { c.Timeout = -1 }, "negative"},
	} {
		c := NewHTTPSinkConfig()
		c.URL = "http://127.0.0.1:1/x"
		tc.mod(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want an error about %q", err, tc.want)
		}
	}
}

func TestHTTPSinkBatchesFormatsAndAuth(t *testing.T) {
	dir := t.TempDir()
	tokenFile, pwFile := filepath.Join(dir, "token"), filepath.Join(dir, "pw")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	os.WriteFile(pwFile, []byte("pw\n"), 0o600)
	for _, tc := range []struct {
		name string
		mod  func(*HTTPSinkConfig)
		auth string
	}{
		{"json bearer", func(c *HTTPSinkConfig) { c.BearerTokenFile = tokenFile }, "Bearer s3cret"},
		{"ndjson gzip basic", func(c *HTTPSinkConfig) { c.Format, c.Gzip, c.Username, c.PasswordFile = "ndjson", true, "u", pwFile }, "Basic dTpwdw=="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newHTTPReceiver(t, false, nil)
			c := NewHTTPSinkConfig()
			c.URL, c.BatchSize, c.Headers = rc.srv.URL+"/in", 500, map[string]string{"X-Team": "data"}
			tc.mod(c)
			s := newHTTPTestSink(t, c, pipeline.AtLeastOnce, "")
			ctx := context.Background()
			if err := s.Write(ctx, httpRecords(0, 700)); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(ctx, httpRecords(700, 1200)); err != nil {
				t.Fatal(err)
			}
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			reqs := rc.received()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3 (1200 records in batches of 500)", len(reqs))
			}
			seen := map[int]bool{}
			for _, id := range rc.accepted() {
				seen[id] = true
			}
			if len(seen) != 1200 || len(rc.accepted()) != 1200 {
				t.Errorf("receiver got %d records, %d distinct, want 1200 of each", len(rc.accepted()), len(seen))
			}
			for i, r := range reqs {
				if got := r.header.Get("Authorization"); got != tc.auth {
					t.Errorf("request %d: Authorization %q, want %q", i, got, tc.auth)
				}
				if r.header.Get("X-Team") != "data" {
					t.Errorf("request %d: configured header missing", i)
				}
				if r.header.Get("Idempotency-Key") != "" {
					t.Errorf("request %d: Idempotency-Key under at_least_once", i)
				}
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHTTPSinkRetries(t *testing.T) {
	// 503, a dropped connection, 429 with Retry-After: 1, then success.
	rc := newHTTPReceiver(t, false, func(n int, w http.ResponseWriter) bool {
		switch n {
		case 0:
			http.Error(w, "busy", 503)
		case 1:
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case 2:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", 429)
		default:
			return false
		}
		return true
	})
	c := NewHTTPSinkConfig()
	c.URL, c.MinRetryDelay, c.MaxRetryDelay = rc.srv.URL, 10*time.Millisecond, 50*time.Millisecond
	s := newHTTPTestSink(t, c, pipeline.AtLeastOnce, "")
	s.Write(context.Background(), httpRecords(0, 10))
	start := time.Now()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("answered after %v: the 429's Retry-After of 1s was not honoured", took)
	}
	if n := len(rc.received()); n != 4 {
		t.Errorf("%d requests, want 4 (three retried failures, then success)", n)
	}
	if got := len(rc.accepted()); got != 10 {
		t.Errorf("%d records accepted, want 10", got)
	}
	if d := httpRetryAfter(time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat), time.Now()); d < time.Second || d > 3*time.Second {
		t.Errorf("Retry-After as an HTTP date gives %v, want about 2-3s", d)
	}
}

func TestHTTPSinkRefusalIsPermanent(t *testing.T) {
	rc := newHTTPReceiver(t, false, func(n int, w http.ResponseWriter) bool {
		http.Error(w, "field x is required", 422)
		return true
	})
	c := NewHTTPSinkConfig()
	c.URL = strings.Replace(rc.srv.URL, "http://", "http://user:topsecret@", 1)
	s := newHTTPTestSink(t, c, pipeline.AtLeastOnce, "")
	s.Write(context.Background(), httpRecords(0, 3))
	err := s.Flush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "field x is required") {
		t.Fatalf("Flush = %v, want an error with the status and the receiver's message", err)
	}
	if strings.Contains(err.Error(), "topsecret") {
		t.Errorf("the error shows the password: %v", err)
	}
	if n := len(rc.received()); n != 1 {
		t.Errorf("%d requests, want 1: a 422 is not retried", n)
	}
	if got := rc.received()[0].header.Get("Authorization"); got != "Basic dXNlcjp0b3BzZWNyZXQ=" {
		t.Errorf("userinfo of the URL not sent as basic auth: %q", got)
	}
}

func TestHTTPSinkBoundsRequestsInFlight(t *testing.T) {
	var cur, peak atomic.Int32
	release := make(chan struct{})
	rc := newHTTPReceiver(t, false, func(n int, w http.ResponseWriter) bool {
		now := cur.Add(1)
		for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
		}
		<-release
		cur.Add(-1)
		return false
	})
	c := NewHTTPSinkConfig()
	c.URL, c.BatchSize, c.MaxInFlight = rc.srv.URL, 10, 3
	s := newHTTPTestSink(t, c, pipeline.AtLeastOnce, "")
	done := make(chan error, 1)
	go func() {
		if err := s.Write(context.Background(), httpRecords(0, 100)); err != nil {
			done <- err
			return
		}
		done <- s.Flush(context.Background())
	}()
	testservices.Eventually(t, 5*time.Second, "3 requests in flight", func() bool { return cur.Load() == 3 })
	time.Sleep(100 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p != 3 {
		t.Errorf("peak of %d requests in flight, want max_in_flight 3", p)
	}
	if got := len(rc.accepted()); got != 100 {
		t.Errorf("%d records accepted, want 100", got)
	}
}

func TestHTTPSinkTLS(t *testing.T) {
	rc := newHTTPReceiver(t, true, nil)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.srv.Certificate().Raw}), 0o644)
	c := NewHTTPSinkConfig()
	c.URL = rc.srv.URL
	untrusted := newHTTPTestSink(t, c, pipeline.AtLeastOnce, "")
	untrusted.Write(context.Background(), httpRecords(0, 1))
	if err := untrusted.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an unknown server certificate: %v, want a certificate error at once", err)
	}
	c.TLS = &pipeline.TLSOptions{CAFile: ca}
	s := newHTTPTestSink(t, c, pipeline.AtLeastOnce, "")
	s.Write(context.Background(), httpRecords(0, 5))
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(rc.accepted()); got != 5 {
		t.Errorf("%d records over TLS, want 5", got)
	}
}

// TestHTTPSinkExactlyOnceKeys: nothing is sent before Commit; Commit sends
// batches with Idempotency-Keys; a commit sent again after a crash (the
// epoch not yet recorded as committed) carries the very same batches and
// keys; one recorded as committed is not sent again.
func TestHTTPSinkExactlyOnceKeys(t *testing.T) {
	rc := newHTTPReceiver(t, false, nil)
	dir := t.TempDir()
	c := NewHTTPSinkConfig()
	c.URL, c.BatchSize = rc.srv.URL, 40
	s := newHTTPTestSink(t, c, pipeline.ExactlyOnce, dir)
	ctx := context.Background()
	if err := s.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	s.Write(ctx, httpRecords(0, 70))
	s.Write(ctx, httpRecords(70, 100))
	tok, err := s.PreCommit(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rc.received()); n != 0 {
		t.Fatalf("%d requests before Commit, want none", n)
	}
	staged := s.stage.Staged()
	if len(staged) != 1 {
		t.Fatalf("staged %v, want one sealed epoch", staged)
	}
	sealed, err := os.ReadFile(filepath.Join(dir, staged[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, tok); err != nil {
		t.Fatal(err)
	}
	first := rc.received()
	if len(first) != 3 {
		t.Fatalf("%d requests, want 3 (100 records in batches of 40)", len(first))
	}
	keys := map[string]int{}
	for i, r := range first {
		k := r.header.Get("Idempotency-Key")
		if k == "" || len(k) > 256 || strings.ContainsAny(k, " \t") {
			t.Fatalf("request %d: Idempotency-Key %q", i, k)
		}
		keys[k] = len(r.recs)
	}
	if len(keys) != 3 {
		t.Fatalf("keys %v are not distinct per batch", keys)
	}
	// A crash before the commit was recorded: a new process recovers the
	// same token and sends the same batches under the same keys.
	os.Remove(filepath.Join(dir, "http-committed.json"))
	os.WriteFile(filepath.Join(dir, staged[0]), sealed, 0o644)
	s2 := newHTTPTestSink(t, c, pipeline.ExactlyOnce, dir)
	if err := s2.Recover(ctx, tok); err != nil {
		t.Fatal(err)
	}
	again := rc.received()[3:]
	if len(again) != 3 {
		t.Fatalf("recovery sent %d requests, want the 3 again", len(again))
	}
	for i, r := range again {
		k := r.header.Get("Idempotency-Key")
		if n, ok := keys[k]; !ok || n != len(r.recs) {
			t.Errorf("recovered request %d: key %q (%d records) is not one of the first commit's %v", i, k, len(r.recs), keys)
		}
	}
	// Recorded now: a third recovery sends nothing.
	s3 := newHTTPTestSink(t, c, pipeline.ExactlyOnce, dir)
	if err := s3.Recover(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if n := len(rc.received()); n != 6 {
		t.Errorf("%d requests after recovering a committed epoch, want still 6", n)
	}
	if got := fmt.Sprint(rc.accepted()[:3]); got != "[0 1 2]" {
		t.Errorf("first records %s, want in order", got)
	}
}
