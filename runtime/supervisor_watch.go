package runtime

import (
	"context"
	"crypto/sha256"
	"os"
	"time"
)

// WatchFile calls onChange each time the content of path changes, checking
// every interval (a content hash, so an editor's write-and-rename, a
// touch without change or a clock skew do not matter), until ctx is done.
// A file that cannot be read is not a change: the last content stands.
// onChange runs on WatchFile's goroutine.
func WatchFile(ctx context.Context, path string, interval time.Duration, onChange func()) {
	hash := func() ([32]byte, bool) {
		data, err := os.ReadFile(path)
		if err != nil {
			return [32]byte{}, false
		}
		return sha256.Sum256(data), true
	}
	last, _ := hash()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h, ok := hash()
			if !ok || h == last {
				continue
			}
			last = h
			onChange()
		}
	}
}
