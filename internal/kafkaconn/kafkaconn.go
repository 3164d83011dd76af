// Package kafkaconn holds what the kafka source and the kafka sink share:
// the connection options of the YAML (`brokers`, `tls`, `sasl`, ...) and
// how they become franz-go client options. It is not public API.
//
//	kafka:
//	  brokers: ["kafka-1:9093", "kafka-2:9093"]
//	  tls: { ca_file: /etc/weir/ca.pem }
//	  sasl: { mechanism: scram-sha-512, username: weir, password_file: /run/secrets/kafka }
//
// Credentials never reach a log line or an error message: Secret prints as
// "xxxxx", and franz-go is given the password only inside its SASL
// mechanism.
package kafkaconn

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

// Conn is the connection part of a kafka source's or sink's options. It is
// meant to be embedded inline (`yaml:",inline"`).
type Conn struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string `yaml:"brokers"`
	// ClientID is the client id the brokers see (quotas, logs); default
	// "weir".
	ClientID string `yaml:"client_id"`
	// TLS turns on TLS to the brokers; an empty block (`tls: {}`) means TLS
	// with the system's CAs.
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// SASL authenticates to the brokers.
	SASL *SASL `yaml:"sasl"`
	// ConnectTimeout bounds the start-up check that the brokers answer,
	// and each dial; default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// SASL is the `sasl:` block.
type SASL struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512.
	Mechanism string `yaml:"mechanism"`
	// Username to authenticate as.
	Username string `yaml:"username"`
	// Password; prefer password_file or ${ENV} interpolation over a
	// literal in the file.
	Password Secret `yaml:"password"`
	// PasswordFile is a file holding the password (a mounted secret); it
	// wins over password.
	PasswordFile string `yaml:"password_file"`
}

// Secret is a string that never prints: String, GoString, LogValue and
// MarshalText all give "xxxxx", so a config dumped with %v or slog does not
// leak it. Convert with string(s) where the value itself is needed.
type Secret string

const redacted = "xxxxx"

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return redacted }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (JSON and YAML output).
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Validate checks the options; prefix names the component in errors
// ("kafka").
func (c *Conn) Validate(prefix string) error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("%s: brokers is required (a list of host:port)", prefix)
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("%s: broker %q: want host:port", prefix, b)
		}
	}
	if c.ConnectTimeout < 0 {
		return fmt.Errorf("%s: connect_timeout must not be negative", prefix)
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	if s := c.SASL; s != nil {
		switch strings.ToLower(s.Mechanism) {
		case "plain", "scram-sha-256", "scram-sha-512":
		case "":
			return fmt.Errorf("%s: sasl.mechanism is required (plain, scram-sha-256 or scram-sha-512)", prefix)
		default:
			return fmt.Errorf("%s: sasl.mechanism %q is not one of plain, scram-sha-256, scram-sha-512", prefix, s.Mechanism)
		}
		if s.Username == "" {
			return fmt.Errorf("%s: sasl.username is required", prefix)
		}
		if s.Password == "" && s.PasswordFile == "" {
			return fmt.Errorf("%s: sasl needs password or password_file", prefix)
		}
	}
	return nil
}

// Timeout returns ConnectTimeout or its default.
func (c *Conn) Timeout() time.Duration {
	if c.ConnectTimeout > 0 {
		return c.ConnectTimeout
	}
	return 10 * time.Second
}

// Options returns the franz-go options for the connection: seed brokers,
// client id, dial timeout, TLS, SASL, and a logger that forwards franz-go's
// warnings and errors to logger (nil: discarded). Files named by the
// options (CA, certificate, password) are read now.
func (c *Conn) Options(logger *slog.Logger) ([]kgo.Opt, error) {
	id := c.ClientID
	if id == "" {
		id = "weir"
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(id),
		kgo.DialTimeout(c.Timeout()),
	}
	if logger != nil {
		opts = append(opts, kgo.WithLogger(Logger{L: logger}))
	}
	if c.TLS != nil {
		tc, err := c.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if s := c.SASL; s != nil {
		m, err := s.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (s *SASL) mechanism() (sasl.Mechanism, error) {
	pass := string(s.Password)
	if s.PasswordFile != "" {
		p, err := connect.ReadSecretFile(s.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: sasl: %w", err)
		}
		pass = p
	}
	switch strings.ToLower(s.Mechanism) {
	case "plain":
		return plain.Auth{User: s.Username, Pass: pass}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: s.Username, Pass: pass}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: s.Username, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka: sasl.mechanism %q is not one of plain, scram-sha-256, scram-sha-512", s.Mechanism)
}

// Ping checks that the brokers answer (and accept the credentials) within
// the connect timeout, so a wrong address fails the start with a clear
// error instead of a pipeline that waits forever.
func Ping(ctx context.Context, cl *kgo.Client, c *Conn) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout())
	defer cancel()
	var last error
	for {
		err := cl.Ping(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		if isAuthError(err) {
			return fmt.Errorf("kafka: brokers %s: %w", strings.Join(c.Brokers, ","), err)
		}
		if ctx.Err() != nil {
			hint := ""
			if c.SASL != nil || c.TLS != nil {
				hint = " (a broker that closes the connection at once usually refused the credentials or the TLS settings)"
			}
			return fmt.Errorf("kafka: brokers %s did not answer within %s: %w%s", strings.Join(c.Brokers, ","), c.Timeout(), last, hint)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// isAuthError reports failures that retrying cannot fix: refused
// credentials and certificates that do not verify.
func isAuthError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	return errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) ||
		errors.Is(err, kerr.IllegalSaslState) || errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn)
}

var (
	topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	slugBad   = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)
)

// ValidTopic reports whether s is a legal Kafka topic name.
func ValidTopic(s string) bool { return topicName.MatchString(s) && s != "." && s != ".." }

// ErrInvalidTopic is returned (wrapped) for a topic name Kafka would refuse.
var ErrInvalidTopic = errors.New("not a valid topic name (1-249 of a-z A-Z 0-9 . _ -)")

// Slug turns a component id ("app/sinks[0]/kafka") into a string usable in
// Kafka ids (transactional ids, group names): "app.sinks-0.kafka".
func Slug(s string) string {
	s = strings.NewReplacer("/", ".", "[", "-", "]", "").Replace(s)
	return slugBad.ReplaceAllString(s, "-")
}

// Logger adapts slog to franz-go's logger: franz-go's warnings and errors
// become slog records at the same level; its info and debug chatter is
// dropped. franz-go never logs SASL credentials.
type Logger struct{ L *slog.Logger }

// Level implements kgo.Logger.
func (Logger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

// Log implements kgo.Logger.
func (l Logger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	l.L.Log(context.Background(), lv, "kafka: "+msg, keyvals...)
}

// RandomHex returns n random bytes as hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
