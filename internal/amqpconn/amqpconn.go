// Package amqpconn holds what the amqp source and the amqp sink share: their
// connection options (Conn, inlined in both YAML configurations), how
// the connection options of the YAML become amqp091 settings, and which
// errors are final. It is not public API.
//
//	amqp:
//	  url: amqps://rabbit:5671/vhost
//	  username: weir
//	  password_file: /run/secrets/rabbit
//	  tls: { ca_file: /etc/weir/ca.pem }
//
// Passwords are read from files and never logged.
package amqpconn

import (
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

// DialConfig builds the connection settings: credentials (the URL's,
// or username/password_file), TLS, heartbeat, dial timeout and a
// connection name that shows in the management UI.
func DialConfig(rawURL, username, passwordFile string, tlsOpts *pipeline.TLSOptions, heartbeat, timeout time.Duration, component string) (amqp.Config, error) {
	uri, err := amqp.ParseURI(rawURL)
	if err != nil {
		return amqp.Config{}, fmt.Errorf("amqp: %w", connect.URLError(rawURL, err))
	}
	cfg := amqp.Config{Heartbeat: heartbeat, Properties: amqp.NewConnectionProperties()}
	cfg.Properties.SetClientConnectionName("weir " + component)
	cfg.Dial = amqp.DefaultDial(connect.StartWait(timeout))
	if username != "" || passwordFile != "" {
		user, pass := uri.Username, uri.Password
		if username != "" {
			user = username
		}
		if passwordFile != "" {
			if pass, err = connect.ReadSecretFile(passwordFile); err != nil {
				return amqp.Config{}, fmt.Errorf("amqp: %w", err)
			}
		}
		cfg.SASL = []amqp.Authentication{&amqp.PlainAuth{Username: user, Password: pass}}
	}
	if cfg.TLSClientConfig, err = tlsOpts.Config(); err != nil {
		return amqp.Config{}, fmt.Errorf("amqp: %w", err)
	}
	return cfg, nil
}

// Permanent reports whether err will not go away by retrying: refused
// credentials or vhost, a missing queue or exchange, a declaration that
// conflicts with an existing one.
func Permanent(err error) bool {
	if pipeline.IsCertificateError(err) {
		return true
	}
	if errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrVhost) || errors.Is(err, amqp.ErrSASL) {
		return true
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.AccessRefused, amqp.NotFound, amqp.PreconditionFailed, amqp.NotAllowed, amqp.ResourceLocked:
			return true
		}
	}
	return false
}
