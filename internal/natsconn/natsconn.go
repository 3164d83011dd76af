// Package natsconn holds what the nats source and the nats sink share: their
// connection options (Conn, inlined in both YAML configurations), how
// the connection options of the YAML become nats.go options, connecting
// with retries, and which connect errors are final. It is not public API.
//
//	nats:
//	  url: nats://nats-1:4222
//	  credentials_file: /run/secrets/weir.creds
//	  tls: { ca_file: /etc/weir/ca.pem }
//
// Secrets are read from files and never logged.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

// Auth is how a connector authenticates: the YAML's `username`,
// `password_file`, `token_file`, `credentials_file` and `tls`.
type Auth struct {
	Username, PasswordFile, TokenFile, CredentialsFile string
	TLS                                                *pipeline.TLSOptions
}

// Options builds the connection options: name, credentials, TLS, endless
// reconnects with capped exponential backoff, and logging of disconnects
// (with safeURL, the URL with its password redacted).
func Options(name string, a Auth, timeout, maxDelay time.Duration, logger *slog.Logger, safeURL string) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(connect.StartWait(timeout)),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			b := connect.Backoff{Max: maxDelay}
			var d time.Duration
			for range min(attempts, 32) {
				d = b.Next()
			}
			return d
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats: disconnected; reconnecting", "url", safeURL, "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { logger.Info("nats: reconnected", "url", safeURL) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			logger.Warn("nats: asynchronous error", "url", safeURL, "err", err)
		}),
	}
	if a.Username != "" || a.PasswordFile != "" {
		pass := ""
		if a.PasswordFile != "" {
			var err error
			if pass, err = connect.ReadSecretFile(a.PasswordFile); err != nil {
				return nil, fmt.Errorf("nats: %w", err)
			}
		}
		opts = append(opts, nats.UserInfo(a.Username, pass))
	}
	if a.TokenFile != "" {
		tok, err := connect.ReadSecretFile(a.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("nats: token_file: %w", err)
		}
		opts = append(opts, nats.Token(tok))
	}
	if a.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(a.CredentialsFile))
	}
	tlsCfg, err := a.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg))
	}
	return opts, nil
}

// Connect connects, retrying transient failures until ctx ends (then it
// returns the last attempt's error); refused credentials fail at once.
func Connect(ctx context.Context, url, safeURL string, opts []nats.Option, logger *slog.Logger, maxDelay time.Duration) (*nats.Conn, error) {
	bo := connect.Backoff{Max: maxDelay}
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		err = fmt.Errorf("nats: connect to %s: %w", safeURL, err)
		if Permanent(err) {
			return nil, err
		}
		d := bo.Next()
		logger.Warn("nats: connect failed; retrying", "url", safeURL, "attempt", bo.Attempts(), "in", d, "err", err)
		if connect.SleepContext(ctx, d) != nil {
			return nil, err
		}
	}
}

// Permanent reports whether a connect error will not go away by retrying:
// a certificate or credentials refused, a missing credentials file.
func Permanent(err error) bool {
	return pipeline.IsCertificateError(err) || errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) ||
		strings.Contains(strings.ToLower(err.Error()), "authorization violation") ||
		strings.Contains(err.Error(), "no such file")
}
