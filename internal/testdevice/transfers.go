package testdevice

import (
	"sync/atomic"

	"egg/tensor"
)

// Transfers counts the elements a device moved between host and device memory.
type Transfers struct {
	up, down atomic.Int64
}

// Elements returns the elements uploaded and downloaded since the last Reset.
func (t *Transfers) Elements() (up, down int64) { return t.up.Load(), t.down.Load() }

// Reset zeroes the counts.
func (t *Transfers) Reset() { t.up.Store(0); t.down.Store(0) }

// counting is an accelerator with kernels whose host transfers are counted.
type counting struct {
	tensor.Accelerator
	tensor.Kernels
	t *Transfers
}

func (c counting) Upload(dst tensor.Buffer, src []float32) {
	c.t.up.Add(int64(len(src)))
	c.Accelerator.Upload(dst, src)
}

func (c counting) Download(dst []float32, src tensor.Buffer) {
	c.t.down.Add(int64(len(dst)))
	c.Accelerator.Download(dst, src)
}

// Counting returns a device on the host reference accelerator with its kernels
// (as hostkernels), whose host transfers are counted: a test can check that a
// workload stays on the device, as it would on a GPU, where every transfer is a
// synchronisation and a trip over PCIe.
func Counting() (*tensor.Device, *Transfers) {
	acc := tensor.NewHostAccelerator(true)
	t := &Transfers{}
	return tensor.NewAccelerated(counting{Accelerator: acc, Kernels: acc.(tensor.Kernels), t: t}, tensor.CPU(2)), t
}
