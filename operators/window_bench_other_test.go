//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package operators

// windowBenchCPU reports that process CPU time is not available here.
func windowBenchCPU() int64 { return -1 }
