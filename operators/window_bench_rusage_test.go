//go:build linux || darwin || freebsd || netbsd || openbsd

package operators

import "syscall"

// windowBenchCPU returns the process's user and system CPU time in ns, so
// that benchmarks can report CPU time per record, which a loaded machine
// disturbs far less than wall time.
func windowBenchCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
