//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package operators

// parseBenchCPU reports that process CPU time is not available here.
func parseBenchCPU() int64 { return -1 }
