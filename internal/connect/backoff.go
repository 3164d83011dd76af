package connect

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff computes reconnect delays: exponential from Min to Max, each with
// random jitter in [d/2, d] so that many clients do not retry in step. The
// zero value uses Min 100ms and Max 10s. A Backoff is not safe for
// concurrent use.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Next returns the delay before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 10 * time.Second
	}
	if hi < lo {
		hi = lo
	}
	d := lo
	for i := 0; i < b.attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	b.attempt++
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// Attempts returns how many delays Next has handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts again from Min, after a successful connection.
func (b *Backoff) Reset() { b.attempt = 0 }

// StartWait is how long a connector's constructor waits for its first
// connection: connect_timeout, or 10s when it is zero.
func StartWait(connectTimeout time.Duration) time.Duration {
	if connectTimeout <= 0 {
		return 10 * time.Second
	}
	return connectTimeout
}

// SleepContext waits for d or until ctx is done, returning ctx.Err() in
// the latter case.
func SleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
