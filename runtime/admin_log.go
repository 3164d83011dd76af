package runtime

// Logs: weir's slog handler, text for a person at a terminal and JSON for
// everything else, with secrets redacted from every value.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"

	"github.com/weirhq/weir/internal/connect"
)

var (
	urlPattern      = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>]+`)
	passwordPattern = regexp.MustCompile(`(?i)((?:password|passwd|pwd|secret|token)\s*[=:]\s*)("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&]+)`)
)

// RedactSecrets returns s with credentials replaced by "xxxxx": the
// password of every URL in it (amqp://user:xxxxx@host/, via
// connect.RedactURL) and the value of password=, secret=, token= pairs
// (PostgreSQL DSNs, query strings). Text without either is returned as is.
func RedactSecrets(s string) string {
	if strings.Contains(s, "://") {
		s = urlPattern.ReplaceAllStringFunc(s, connect.RedactURL)
	}
	if strings.ContainsAny(s, "=:") {
		s = passwordPattern.ReplaceAllString(s, "${1}xxxxx")
	}
	return s
}

// LogFormat is how logs are written.
type LogFormat string

// The log formats.
const (
	LogText LogFormat = "text" // logfmt-style key=value, for people
	LogJSON LogFormat = "json" // one JSON object per line, for collectors
)

// NewLogHandler returns a slog handler writing format to w at level and
// above, which redacts secrets (RedactSecrets) from the message and from
// every string, error and fmt.Stringer attribute.
func NewLogHandler(w io.Writer, format LogFormat, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr}
	var h slog.Handler
	if format == LogJSON {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return redactingHandler{h}
}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(RedactSecrets(v.String()))
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			a.Value = slog.StringValue(RedactSecrets(x.Error()))
		case fmt.Stringer:
			a.Value = slog.StringValue(RedactSecrets(x.String()))
		case []byte:
			a.Value = slog.StringValue(RedactSecrets(string(x)))
		}
	}
	return a
}

// redactingHandler redacts the message (attributes are redacted by
// ReplaceAttr, which also sees those added with With).
type redactingHandler struct{ slog.Handler }

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Message = RedactSecrets(r.Message)
	return h.Handler.Handle(ctx, r)
}

func (h redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return redactingHandler{h.Handler.WithAttrs(as)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{h.Handler.WithGroup(name)}
}
