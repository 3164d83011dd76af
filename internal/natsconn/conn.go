package natsconn

import (
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Conn is the connection options of the nats source and sink, inlined in
// both configurations.
type Conn struct {
	// URL is nats://host:4222, or several separated by commas; tls:// for
	// TLS. user:password or a token in it are never logged. Required.
	URL string `yaml:"url"`
	// Username overrides the user of the URL.
	Username string `yaml:"username"`
	// PasswordFile is a file holding the password.
	PasswordFile string `yaml:"password_file"`
	// TokenFile is a file holding an authentication token.
	TokenFile string `yaml:"token_file"`
	// CredentialsFile is a NATS .creds file (JWT and NKey seed).
	CredentialsFile string `yaml:"credentials_file"`
	// TLS configures TLS (CA, client certificate).
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// ConnectTimeout bounds the first connection at start-up; default 10s.
	// Later connection losses are retried forever.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxReconnectDelay caps the backoff between reconnect attempts (and
	// the sink's publish retries); default 10s.
	MaxReconnectDelay time.Duration `yaml:"max_reconnect_delay"`
}

// DefaultConn returns the defaults of Conn.
func DefaultConn() Conn {
	return Conn{ConnectTimeout: 10 * time.Second, MaxReconnectDelay: 10 * time.Second}
}

// Auth returns the connection's credentials, for Options.
func (c *Conn) Auth() Auth {
	return Auth{Username: c.Username, PasswordFile: c.PasswordFile, TokenFile: c.TokenFile,
		CredentialsFile: c.CredentialsFile, TLS: c.TLS}
}
