package sources

import (
	"context"
	"time"
)

// linger fills buf from msgs, up to max items: whatever is queued at once,
// then what arrives until timer fires or ctx ends (the queue sources'
// `linger`). closed reports that msgs was closed.
func linger[T any](ctx context.Context, msgs <-chan T, timer *time.Timer, buf []T, max int) (_ []T, closed bool) {
	for len(buf) < max {
		var m T
		var ok bool
		select {
		case m, ok = <-msgs:
		default:
			// Nothing queued right now: wait briefly for more.
			select {
			case m, ok = <-msgs:
			case <-timer.C:
				return buf, false
			case <-ctx.Done():
				return buf, false
			}
		}
		if !ok {
			return buf, true
		}
		buf = append(buf, m)
	}
	return buf, false
}
