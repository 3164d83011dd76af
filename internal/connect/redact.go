package connect

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)`)

// RedactURL returns s with any password replaced by "xxxxx", for errors and
// logs: the userinfo password of a URL (amqp://user:xxxxx@host/), and
// `password=...` in a key=value connection string (PostgreSQL DSNs) or a
// URL query. Text that is not a URL is redacted as well as can be; it is
// never returned with a password-looking part intact. A comma-separated
// list of URLs (NATS servers) is redacted URL by URL.
func RedactURL(s string) string {
	if strings.Count(s, "://") > 1 && strings.Contains(s, ",") {
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = RedactURL(p)
		}
		return strings.Join(parts, ",")
	}
	s = dsnPassword.ReplaceAllString(s, "${1}xxxxx")
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Redacted()
	}
	// Not parseable as a URL (e.g. a bad escape): blank everything between
	// "scheme://" and the last "@" so no userinfo survives.
	if i := strings.Index(s, "://"); i >= 0 {
		if j := strings.LastIndex(s, "@"); j > i {
			return s[:i+3] + "xxxxx" + s[j:]
		}
	}
	return s
}

// URLError reports that raw does not parse as a URL: "url <raw, password
// redacted>: <reason>". The reason is err without the *url.Error wrapper,
// which would repeat the URL, password and all.
func URLError(raw string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("url %s: %w", RedactURL(raw), err)
}
