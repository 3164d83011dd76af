package sinks_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weirhq/weir/internal/kafkatest"
	"github.com/weirhq/weir/runtime"
)

// selfSigned makes a CA-less self-signed certificate for 127.0.0.1 and
// writes its PEM to dir/ca.pem; it returns the server's TLS config and the
// PEM path.
func selfSigned(t *testing.T, dir string) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weir-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, caPath
}

// A pipeline over TLS with SCRAM-SHA-512, the password from a file for the
// source and from ${ENV} for the sink; a wrong password fails the start
// with an error, and the password is in neither the error nor the logs.
func TestKafkaSecurityTLSAndSASL(t *testing.T) {
	dir := t.TempDir()
	const user, pw = "weir", "s3cret-Passw0rd"
	serverTLS, caPath := selfSigned(t, dir)
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(caPath)
	pool.AppendCertsFromPEM(pem)
	c := kafkatest.NewFakeWithClient(t,
		[]kfake.Opt{kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", user, pw)},
		[]kgo.Opt{kgo.DialTLSConfig(&tls.Config{RootCAs: pool}), kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha512Mechanism())})
	in, out := c.Topic(t, 2), c.Topic(t, 1)
	want := kafkaInput(t, c, in, 300)
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte(pw+"\n"), 0o600)
	t.Setenv("WEIR_TEST_KAFKA_PW", pw)

	yaml := func(sinkPassword, timeout string) string {
		return fmt.Sprintf(`
data_dir: %s
pipelines:
  - name: secure
    checkpoint_interval: 100ms
    sources:
      - kafka:
          brokers: %s
          topics: [%s]
          group: %s
          heartbeat_interval: 100ms
          tls: { ca_file: %s }
          sasl: { mechanism: scram-sha-512, username: %s, password_file: %s }
    operators:
      - parse: { format: json }
      - filter: 'level == "error"'
    sinks:
      - kafka:
          brokers: %s
          topic: %s
          tls: { ca_file: %s }
          sasl: { mechanism: scram-sha-512, username: %s, password: "%s" }
          connect_timeout: %s
`, filepath.Join(dir, "data"), c.BrokerList(), in, kafkatest.Name("g"), caPath, user, pwFile,
			c.BrokerList(), out, caPath, user, sinkPassword, timeout)
	}

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// Wrong password: the start fails, naming the problem, not the password.
	bad := loadYAML(t, yaml("wrong-"+pw, "1s"))
	start := time.Now()
	err := runtime.Run(context.Background(), bad, nil, nil, runtime.Options{Logger: logger})
	t.Logf("wrong password: failed after %s: %v", time.Since(start), err)
	if err == nil {
		t.Fatal("a wrong password started the pipeline")
	}
	if strings.Contains(err.Error(), pw) {
		t.Fatalf("the error shows the password: %v", err)
	}

	cfg := loadYAML(t, yaml("${WEIR_TEST_KAFKA_PW}", "10s"))
	reader := c.NewReader(t, out)
	runUntil(t, cfg, reader, want)
	exactlyOnceField(t, reader.Settle(300*time.Millisecond), want)
	if strings.Contains(logs.String(), pw) {
		t.Fatal("the logs show the password")
	}
	if s := fmt.Sprintf("%v %+v", cfg.Pipelines[0].Sinks[0].Config, cfg.Pipelines[0].Sources[0].Config); strings.Contains(s, pw) {
		t.Fatalf("printing the configuration shows the password: %s", s)
	}
}
