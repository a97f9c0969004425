//go:build unix

package encoder

import "syscall"

// cpuSeconds returns the user + system CPU time of the process so far (every
// thread, OpenBLAS's included), or -1 when it cannot be read.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
