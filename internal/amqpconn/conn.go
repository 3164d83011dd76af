package amqpconn

import (
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Conn is the connection options of the amqp source and sink, inlined in
// both configurations.
type Conn struct {
	// URL is amqp://user:password@host:port/vhost, or amqps:// for TLS.
	// Required. Credentials in it are never logged.
	URL string `yaml:"url"`
	// Username overrides the user of the URL.
	Username string `yaml:"username"`
	// PasswordFile is a file holding the password (a mounted secret); it
	// overrides the password of the URL.
	PasswordFile string `yaml:"password_file"`
	// TLS configures amqps:// connections (CA, client certificate).
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// ConnectTimeout bounds the first connection at start-up, retries
	// included; default 10s. Later connection losses are retried forever.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Heartbeat is the AMQP heartbeat interval; default 10s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// MaxReconnectDelay caps the exponential backoff between reconnect
	// attempts; default 10s.
	MaxReconnectDelay time.Duration `yaml:"max_reconnect_delay"`
}

// DefaultConn returns the defaults of Conn.
func DefaultConn() Conn {
	return Conn{ConnectTimeout: 10 * time.Second, Heartbeat: 10 * time.Second, MaxReconnectDelay: 10 * time.Second}
}
