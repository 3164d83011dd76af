package pipeline

import (
	"strconv"
	"time"
)

// Restart is a pipeline's restart policy (`restart: {max_retries,
// backoff, max_backoff}`): what the supervisor does when the pipeline
// fails (a sink that cannot connect, a disk that is full). The pipeline
// is retried from its last checkpoint after Backoff, then after twice
// that, up to MaxBackoff; after MaxRetries failures in a row it stops for
// good. The other pipelines keep running throughout. A run that completed
// a checkpoint before failing starts the count again.
type Restart struct {
	// MaxRetries is how many times in a row a failed pipeline is started
	// again; 0 never, -1 without end. Default 10.
	MaxRetries int
	// Backoff is the first wait; default 1s.
	Backoff time.Duration
	// MaxBackoff bounds the doubled waits; default 1m.
	MaxBackoff time.Duration
}

// DefaultRestart is the policy of a pipeline without `restart:`.
var DefaultRestart = Restart{MaxRetries: 10, Backoff: time.Second, MaxBackoff: time.Minute}

// Delay returns the wait before retry n (1 for the first).
func (r Restart) Delay(n int) time.Duration {
	d := r.Backoff
	for i := 1; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.MaxBackoff)
}

// Retries reports whether a pipeline that failed n times in a row is
// started again.
func (r Restart) Retries(n int) bool { return r.MaxRetries < 0 || n <= r.MaxRetries }

// restart decodes `restart:`.
func (l *loader) restart(p pair) Restart {
	r := DefaultRestart
	ps, ok := l.pairs(p.value, "restart")
	if !ok {
		return r
	}
	for _, q := range ps {
		switch q.key {
		case "max_retries":
			n, err := strconv.Atoi(l.str(q))
			if err != nil || n < -1 {
				l.errorf(valueOr(q), "restart: max_retries: want a whole number, 0 (never retry) or more, or -1 (retry without end), got %q", l.str(q))
			}
			r.MaxRetries = n
		case "backoff", "max_backoff":
			d, err := time.ParseDuration(l.str(q))
			if err != nil || d <= 0 {
				l.errorf(valueOr(q), "restart: %s: want a positive duration such as 1s or 500ms, got %q", q.key, l.str(q))
			}
			if q.key == "backoff" {
				r.Backoff = d
			} else {
				r.MaxBackoff = d
			}
		default:
			l.errorf(q.kn, "restart: unknown key %q (want max_retries, backoff, max_backoff)", q.key)
		}
	}
	if r.MaxBackoff < r.Backoff {
		r.MaxBackoff = r.Backoff
	}
	return r
}
