// Package mqttconn holds what the mqtt source and the mqtt sink share: their
// connection options (Conn, inlined in both YAML configurations), and
// checking the server URL of the YAML against its scheme and `tls:`. It is
// not public API.
//
//	mqtt:
//	  url: mqtts://broker:8883   # tcp, mqtt, ws; or ssl, tls, mqtts, wss with tls:
//
// Errors show the URL with its password redacted.
package mqttconn

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

// ParseURL checks an MQTT server URL: a known scheme, a host, and a secure
// scheme when tlsOpts is set.
func ParseURL(raw string, tlsOpts *pipeline.TLSOptions) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("mqtt: url is required (tcp://host:1883)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", connect.URLError(raw, err))
	}
	secure := false
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt", "ws":
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps", "wss":
		secure = true
	default:
		return nil, fmt.Errorf("mqtt: url %s: scheme %q is not one of tcp, mqtt, ssl, tls, mqtts, ws, wss", connect.RedactURL(raw), u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("mqtt: url %s: no host", connect.RedactURL(raw))
	}
	if tlsOpts != nil && !secure {
		return nil, fmt.Errorf("mqtt: tls is set but url %s is not ssl://, tls://, mqtts:// or wss://", connect.RedactURL(raw))
	}
	return u, nil
}
