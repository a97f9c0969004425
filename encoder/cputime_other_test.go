//go:build !unix

package encoder

// cpuSeconds is not available here.
func cpuSeconds() float64 { return -1 }
