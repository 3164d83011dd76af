//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package wal

import "os"

// lockFile is a no-op where flock is unavailable: the caller must ensure
// that only one Log is open per directory.
func lockFile(f *os.File) error { return nil }
