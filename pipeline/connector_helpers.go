package pipeline

// Helpers shared by the network connectors (amqp, mqtt, nats, postgres, in
// both the sources and the sinks package): the `tls:` option block, secrets
// read from files, credential redaction for errors and logs, and reconnect
// backoff.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// TLSOptions is the `tls:` block of a network connector:
//
//	tls: { ca_file: ca.pem, cert_file: client.pem, key_file: client.key,
//	       server_name: broker.internal, insecure_skip_verify: false }
//
// A nil *TLSOptions means "no TLS unless the URL scheme asks for it".
type TLSOptions struct {
	// CAFile is a PEM bundle of CAs to trust instead of the system pool.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// mutual TLS; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the host name the server certificate is
	// checked against (default: the host of the URL).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Validate implements Validator: cert_file and key_file go together.
func (o *TLSOptions) Validate() error {
	if o == nil {
		return nil
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("tls: cert_file and key_file must be set together")
	}
	return nil
}

// Config builds a *tls.Config from the options, reading the files now. It
// returns nil, nil for nil options. Errors name the file, never its content.
func (o *TLSOptions) Config() (*tls.Config, error) {
	if o == nil {
		return nil, nil
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in, documented
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: ca_file %s: no PEM certificate found", o.CAFile)
		}
		c.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: load cert_file %s / key_file %s: %w", o.CertFile, o.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// IsCertificateError reports whether err is a TLS certificate
// verification failure (unknown authority, wrong host name, expired):
// retrying the connection cannot fix it, so connectors fail at once.
func IsCertificateError(err error) bool {
	var ve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// ReadSecretFile reads a password or token from a file (a Kubernetes or
// Docker secret), dropping one trailing newline. The error names the path,
// never the content.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read password_file: %w", err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)`)

// RedactURL returns s with any password replaced by "xxxxx", for errors and
// logs: the userinfo password of a URL (amqp://user:xxxxx@host/), and
// `password=...` in a key=value connection string (PostgreSQL DSNs) or a
// URL query. Text that is not a URL is redacted as well as can be; it is
// never returned with a password-looking part intact. A comma-separated
// list of URLs (NATS servers) is redacted URL by URL.
func RedactURL(s string) string {
	if strings.Count(s, "://") > 1 && strings.Contains(s, ",") {
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = RedactURL(p)
		}
		return strings.Join(parts, ",")
	}
	s = dsnPassword.ReplaceAllString(s, "${1}xxxxx")
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Redacted()
	}
	// Not parseable as a URL (e.g. a bad escape): blank everything between
	// "scheme://" and the last "@" so no userinfo survives.
	if i := strings.Index(s, "://"); i >= 0 {
		if j := strings.LastIndex(s, "@"); j > i {
			return s[:i+3] + "xxxxx" + s[j:]
		}
	}
	return s
}

// URLError reports that raw does not parse as a URL: "url <raw, password
// redacted>: <reason>". The reason is err without the *url.Error wrapper,
// which would repeat the URL, password and all.
func URLError(raw string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("url %s: %w", RedactURL(raw), err)
}

// Backoff computes reconnect delays: exponential from Min to Max, each with
// random jitter in [d/2, d] so that many clients do not retry in step. The
// zero value uses Min 100ms and Max 10s. A Backoff is not safe for
// concurrent use.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Next returns the delay before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 10 * time.Second
	}
	if hi < lo {
		hi = lo
	}
	d := lo
	for i := 0; i < b.attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	b.attempt++
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// Attempts returns how many delays Next has handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts again from Min, after a successful connection.
func (b *Backoff) Reset() { b.attempt = 0 }

// StartWait is how long a connector's constructor waits for its first
// connection: connect_timeout, or 10s when it is zero.
func StartWait(connectTimeout time.Duration) time.Duration {
	if connectTimeout <= 0 {
		return 10 * time.Second
	}
	return connectTimeout
}

// SleepContext waits for d or until ctx is done, returning ctx.Err() in
// the latter case.
func SleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
