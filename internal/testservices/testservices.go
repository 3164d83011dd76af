// Package testservices finds the real servers that integration tests run
// against (RabbitMQ, Mosquitto, NATS with JetStream, PostgreSQL) and makes
// unique names for the queues, topics, streams and tables a test creates.
//
// Each server's address comes from an environment variable, with the
// loopback default the development machine and CI use:
//
//	WEIR_TEST_AMQP_URL      amqp://guest:guest@127.0.0.1:5672/
//	WEIR_TEST_MQTT_URL      tcp://127.0.0.1:1883
//	WEIR_TEST_NATS_URL      nats://127.0.0.1:4222
//	WEIR_TEST_POSTGRES_DSN  postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	WEIR_TEST_REDIS_URL     redis://127.0.0.1:6379
//
// When a server does not answer, the test is skipped with the reason, unless
// WEIR_REQUIRE_SERVICES=1, in which case it fails: CI sets that so a missing
// server can never turn the suite green by skipping it.
//
//	func TestRoundTrip(t *testing.T) {
//		url := testservices.AMQP(t)
//		queue := testservices.Name("weir-test")
//		...
//	}
package testservices

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

// Defaults used when the environment variable is unset or empty.
const (
	DefaultAMQPURL     = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultMQTTURL     = "tcp://127.0.0.1:1883"
	DefaultNATSURL     = "nats://127.0.0.1:4222"
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultRedisURL    = "redis://127.0.0.1:6379"
)

// AMQP returns the RabbitMQ URL (WEIR_TEST_AMQP_URL), or skips t.
func AMQP(t testing.TB) string {
	t.Helper()
	return lookup(t, "rabbitmq", "WEIR_TEST_AMQP_URL", DefaultAMQPURL)
}

// MQTT returns the MQTT broker URL (WEIR_TEST_MQTT_URL), or skips t.
func MQTT(t testing.TB) string {
	t.Helper()
	return lookup(t, "mosquitto", "WEIR_TEST_MQTT_URL", DefaultMQTTURL)
}

// NATS returns the NATS server URL (WEIR_TEST_NATS_URL), or skips t.
func NATS(t testing.TB) string {
	t.Helper()
	return lookup(t, "nats", "WEIR_TEST_NATS_URL", DefaultNATSURL)
}

// Postgres returns the PostgreSQL DSN (WEIR_TEST_POSTGRES_DSN), or skips t.
func Postgres(t testing.TB) string {
	t.Helper()
	return lookup(t, "postgresql", "WEIR_TEST_POSTGRES_DSN", DefaultPostgresDSN)
}

// Redis returns the Redis URL (WEIR_TEST_REDIS_URL), or skips t.
func Redis(t testing.TB) string {
	t.Helper()
	return lookup(t, "redis", "WEIR_TEST_REDIS_URL", DefaultRedisURL)
}

// Required reports whether WEIR_REQUIRE_SERVICES=1: a missing server fails
// the test instead of skipping it.
func Required() bool { return os.Getenv("WEIR_REQUIRE_SERVICES") == "1" }

// probes caches reachability per address, so a suite dials each server once.
var probes sync.Map // host:port -> error (nil when reachable)

func lookup(t testing.TB, name, env, def string) string {
	t.Helper()
	addr := os.Getenv(env)
	if addr == "" {
		addr = def
	}
	hostport, err := hostPort(addr)
	if err == nil {
		v, ok := probes.Load(hostport)
		if !ok {
			c, derr := net.DialTimeout("tcp", hostport, 2*time.Second)
			if derr == nil {
				c.Close()
			}
			v, _ = probes.LoadOrStore(hostport, derrOrNil(derr))
		}
		if v != nil {
			err = v.(error)
		}
	}
	if err != nil {
		msg := name + " not reachable at " + connect.RedactURL(addr) + " (set " + env + "): " + err.Error()
		if Required() {
			t.Fatal(msg + " [WEIR_REQUIRE_SERVICES=1]")
		}
		t.Skip(msg)
	}
	return addr
}

// derrOrNil keeps a typed nil out of the sync.Map.
func derrOrNil(err error) any {
	if err == nil {
		return nil
	}
	return err
}

// hostPort extracts host:port from a URL, with the scheme's default port.
func hostPort(addr string) (string, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return "", err
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "amqp":
			port = "5672"
		case "amqps":
			port = "5671"
		case "tcp", "mqtt":
			port = "1883"
		case "nats":
			port = "4222"
		case "postgres", "postgresql":
			port = "5432"
		case "redis", "rediss":
			port = "6379"
		default:
			port = "80"
		}
	}
	return net.JoinHostPort(host, port), nil
}

// Name returns prefix followed by a random suffix of 12 hex digits, unique
// across test runs: a queue, topic, stream, consumer or table name that no
// other test (or earlier run) uses. The result has only [a-z0-9_] after the
// prefix, so it is valid in every one of those namespaces.
func Name(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// Eventually polls cond every 20ms until it returns true or timeout passes,
// then fails t with msg. It is the deadline-bound alternative to sleeping.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Proxy is a TCP proxy in front of a real server, for tests of connection
// loss: Cut severs every open connection (both directions, as a crashed
// server or a broken network would) and SetDown makes new connections fail
// until SetDown(false), as a server that is restarting does. It forwards
// bytes unchanged.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex            // guards conns, down
	conns map[net.Conn]struct{} // both ends of every open forwarding pair
	down  bool
	wg    sync.WaitGroup
}

// StartProxy listens on a free loopback port and forwards to target
// (host:port, or a URL with one). It is closed when t ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	if strings.Contains(target, "://") {
		hp, err := hostPort(target)
		if err != nil {
			t.Fatalf("proxy target %s: %v", connect.RedactURL(target), err)
		}
		target = hp
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// StartTLSProxy is StartProxy with a TLS listener: clients connect with
// TLS and the proxy forwards the plain bytes to target, for testing a
// connector's TLS options against a server that has none. The certificate
// is self-signed for 127.0.0.1 and localhost; caFile is its PEM, to trust.
func StartTLSProxy(t testing.TB, target string) (p *Proxy, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "weir test proxy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	p = StartProxy(t, target)
	p.ln.Close() // replace the plain listener by a TLS one on a new port
	p.wg.Wait()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	p.wg.Add(1)
	go p.accept()
	return p, caFile
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns rawURL with its host:port replaced by the proxy's.
func (p *Proxy) URL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	u.Host = p.Addr()
	return u.String()
}

// Cut closes every connection open through the proxy.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// SetDown(true) cuts every connection and refuses new ones (they are
// accepted and closed at once); SetDown(false) forwards again.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
	if down {
		p.Cut()
	}
}

// Conns returns how many client connections are open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

// Close stops the proxy and cuts every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
	src.Close()
	dst.Close()
}

// Logs is a concurrency-safe buffer that a test's component logger writes
// to, so a test can assert what was (and was not) logged — e.g. that no
// password ever appears.
type Logs struct {
	mu  sync.Mutex // guards buf
	buf strings.Builder
}

// Write implements io.Writer.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Build returns a pipeline.Build for a component under test: pipeline
// "test", the given component id, index 0, a fresh t.TempDir, the batch size
// and guarantee, and a debug-level logger writing to the returned Logs.
func Build(t testing.TB, component string, batch int, g pipeline.Guarantee) (pipeline.Build, *Logs) {
	logs := &Logs{}
	return pipeline.Build{
		Pipeline: "test", Component: component, Guarantee: g, Dir: t.TempDir(),
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		BatchSize: batch, Now: time.Now, CheckpointInterval: time.Second,
	}, logs
}

// Read calls src.Read until at least n records arrived or timeout passed,
// and returns the records and the AckFuncs of the batches, in order,
// without calling them. Read errors fail t.
func Read(t testing.TB, src pipeline.Source, n int, timeout time.Duration) ([]*pipeline.Record, []pipeline.AckFunc) {
	t.Helper()
	var recs []*pipeline.Record
	var acks []pipeline.AckFunc
	deadline := time.Now().Add(timeout)
	for len(recs) < n && time.Now().Before(deadline) {
		var b pipeline.Batch
		ack, err := src.Read(context.Background(), &b)
		if err != nil {
			t.Fatalf("Read after %d records: %v", len(recs), err)
		}
		recs = append(recs, b.Records...)
		if ack != nil {
			acks = append(acks, ack)
		}
	}
	return recs, acks
}

// Ack calls every AckFunc in order and fails t on an error.
func Ack(t testing.TB, acks []pipeline.AckFunc) {
	t.Helper()
	for i, a := range acks {
		if err := a(context.Background()); err != nil {
			t.Fatalf("ack %d: %v", i, err)
		}
	}
}

// Close closes c with a 10s deadline and fails t on an error.
func Close(t testing.TB, c interface{ Close(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// ReadBatch calls src.Read until it returns a non-empty batch (or timeout
// passes, failing t) and returns that one batch and its AckFunc.
func ReadBatch(t testing.TB, src pipeline.Source, timeout time.Duration) (*pipeline.Batch, pipeline.AckFunc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b := &pipeline.Batch{}
		ack, err := src.Read(context.Background(), b)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if len(b.Records) > 0 {
			return b, ack
		}
	}
	t.Fatalf("no records within %v", timeout)
	return nil, nil
}
