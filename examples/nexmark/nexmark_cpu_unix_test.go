//go:build linux || darwin || freebsd || netbsd || openbsd

package nexmark

import "syscall"

// processCPU returns the process's user and system CPU time in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
