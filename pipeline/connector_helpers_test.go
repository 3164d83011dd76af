package pipeline

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"amqp://guest:s3cret@127.0.0.1:5672/", "amqp://guest:xxxxx@127.0.0.1:5672/"},
		{"amqp://127.0.0.1:5672/", "amqp://127.0.0.1:5672/"},
		{"postgres://u:s3cret@db:5432/x?sslmode=disable", "postgres://u:xxxxx@db:5432/x?sslmode=disable"},
		{"postgres://u@db/x?password=s3cret&sslmode=disable", "postgres://u@db/x?password=xxxxx&sslmode=disable"},
		{"host=db user=u password=s3cret dbname=x", "host=db user=u password=xxxxx dbname=x"},
		{"host=db password='s3 cret' dbname=x", "host=db password=xxxxx dbname=x"},
		{"amqp://u:s3cret@h:notaport/", "amqp://xxxxx@h:notaport/"},
		{"nats://u:s3cret@a:4222,nats://u:s3cret@b:4222", "nats://u:xxxxx@a:4222,nats://u:xxxxx@b:4222"},
		{"tcp://127.0.0.1:1883", "tcp://127.0.0.1:1883"},
	} {
		got := RedactURL(tc.in)
		if got != tc.want || strings.Contains(got, "s3") {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestURLErrorHidesThePassword(t *testing.T) {
	raw := "amqp://guest:s3cret@host:notaport/vh"
	_, perr := url.Parse(raw)
	if perr == nil {
		t.Fatal("the test URL parses")
	}
	err := URLError(raw, perr)
	if got, want := err.Error(), `url amqp://xxxxx@host:notaport/vh: invalid port ":notaport" after host`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestReadSecretFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte("s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadSecretFile(p); err != nil || got != "s3cret" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := ReadSecretFile(p + ".missing"); err == nil || !strings.Contains(err.Error(), "password_file") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	var prevMax time.Duration
	for i := 0; i < 8; i++ {
		d := b.Next()
		hi := min(10*time.Millisecond<<i, 80*time.Millisecond)
		if d < hi/2 || d > hi {
			t.Fatalf("attempt %d: %v outside [%v, %v]", i, d, hi/2, hi)
		}
		prevMax = hi
	}
	if prevMax != 80*time.Millisecond || b.Attempts() != 8 {
		t.Fatalf("cap %v, attempts %d", prevMax, b.Attempts())
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
	var zero Backoff
	if d := zero.Next(); d < 50*time.Millisecond || d > 100*time.Millisecond {
		t.Fatalf("zero value first delay %v, want 50..100ms", d)
	}
}

// writeTestCert writes a self-signed certificate and key as PEM files.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weir-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func TestTLSOptionsConfig(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	c, err := (&TLSOptions{CAFile: cert, CertFile: cert, KeyFile: key, ServerName: "broker"}).Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.RootCAs == nil || len(c.Certificates) != 1 || c.ServerName != "broker" || c.InsecureSkipVerify {
		t.Fatalf("config %+v", c)
	}
	var nilOpts *TLSOptions
	if c, err := nilOpts.Config(); c != nil || err != nil {
		t.Fatalf("nil options: %v %v", c, err)
	}
	notPEM := filepath.Join(dir, "x.pem")
	_ = os.WriteFile(notPEM, []byte("hello"), 0o600)
	for name, o := range map[string]*TLSOptions{
		"cert without key": {CertFile: cert},
		"missing ca":       {CAFile: filepath.Join(dir, "nope.pem")},
		"ca not pem":       {CAFile: notPEM},
		"key mismatch":     {CertFile: cert, KeyFile: notPEM},
	} {
		if _, err := o.Config(); err == nil || !strings.HasPrefix(err.Error(), "tls: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
