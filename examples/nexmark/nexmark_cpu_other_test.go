//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package nexmark

// processCPU reports that process CPU time is not available here.
func processCPU() int64 { return 0 }
