package mqttconn

import (
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Conn is the connection options of the mqtt source and sink, inlined in
// both configurations.
type Conn struct {
	// URL is tcp://host:1883 (or mqtt://), ssl:// / tls:// / mqtts:// for
	// TLS, ws:// or wss:// for WebSocket. user:password in it are used as
	// credentials and never logged. Required.
	URL string `yaml:"url"`
	// Username overrides the user of the URL.
	Username string `yaml:"username"`
	// PasswordFile is a file holding the password; it overrides the URL's.
	PasswordFile string `yaml:"password_file"`
	// TLS configures ssl://, tls://, mqtts:// and wss:// connections.
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// KeepAlive is the MQTT keep-alive interval; default 30s.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// ConnectTimeout bounds the first connection (and the source's
	// subscription) at start-up; default 10s. Later connection losses are
	// retried forever.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxReconnectDelay caps the backoff between reconnect attempts;
	// default 10s.
	MaxReconnectDelay time.Duration `yaml:"max_reconnect_delay"`
}

// DefaultConn returns the defaults of Conn.
func DefaultConn() Conn {
	return Conn{KeepAlive: 30 * time.Second, ConnectTimeout: 10 * time.Second, MaxReconnectDelay: 10 * time.Second}
}
