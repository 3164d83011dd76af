//go:build unix

package sources

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user + system) the process has used, for
// benchmarks on shared machines where wall time says little.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
