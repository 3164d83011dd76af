package runtime_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/weirhq/weir/runtime"
)

func TestRedactSecrets(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"dial amqp://weir:hunter2@127.0.0.1:5672/: refused", "dial amqp://weir:xxxxx@127.0.0.1:5672/: refused"},
		{"host=db user=weir password=hunter2 dbname=x", "host=db user=weir password=xxxxx dbname=x"},
		{"postgres://u:hunter2@db/x?sslmode=disable", "postgres://u:xxxxx@db/x?sslmode=disable"},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"token: hunter2", "token: xxxxx"},
		{"plain message", "plain message"},
	} {
		if got := runtime.RedactSecrets(tc.in); got != tc.want {
			t.Errorf("RedactSecrets(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// No secret reaches the log, whether in the message, a string attribute,
// an error, a With attribute or a group, in either format.
func TestLogsNeverShowSecrets(t *testing.T) {
	for _, format := range []runtime.LogFormat{runtime.LogText, runtime.LogJSON} {
		var buf bytes.Buffer
		logger := slog.New(runtime.NewLogHandler(&buf, format, slog.LevelDebug))
		logger = logger.With("url", "amqp://weir:hunter2@127.0.0.1/")
		logger.Info("connect to amqp://weir:hunter2@127.0.0.1/ failed",
			"err", errors.New("dial amqp://weir:hunter2@127.0.0.1:5672/: connection refused"),
			"dsn", "host=db password=hunter2",
			slog.Group("sink", "url", "mqtt://u:hunter2@127.0.0.1:1883"))
		out := buf.String()
		if strings.Contains(out, "hunter2") {
			t.Errorf("%s log shows the password:\n%s", format, out)
		}
		if !strings.Contains(out, "connection refused") || !strings.Contains(out, "xxxxx") {
			t.Errorf("%s log lost the message:\n%s", format, out)
		}
		if format == runtime.LogJSON {
			var m map[string]any
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
				t.Errorf("JSON log is not one JSON object: %v\n%s", err, out)
			}
		}
	}
}
