package mqttconn

import (
	"strings"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

func TestParseURL(t *testing.T) {
	tlsOn := &pipeline.TLSOptions{}
	for _, tc := range []struct {
		raw  string
		tls  *pipeline.TLSOptions
		want string // error substring; "" for a valid URL
	}{
		{"tcp://127.0.0.1:1883", nil, ""},
		{"MQTTS://broker:8883", tlsOn, ""},
		{"wss://broker/mqtt", tlsOn, ""},
		{"", nil, "mqtt: url is required"},
		{"http://broker:1883", nil, `scheme "http" is not one of tcp, mqtt, ssl, tls, mqtts, ws, wss`},
		{"tcp://:1883", nil, "no host"},
		{"tcp://broker:1883", tlsOn, "tls is set but url tcp://broker:1883 is not ssl://"},
		{"tcp://u:s3cret@broker:port", nil, `mqtt: url tcp://xxxxx@broker:port: invalid port`},
	} {
		u, err := ParseURL(tc.raw, tc.tls)
		switch {
		case tc.want == "" && (err != nil || u == nil):
			t.Errorf("%q: %v", tc.raw, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want %q", tc.raw, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("%q: password in error %v", tc.raw, err)
		}
	}
}
