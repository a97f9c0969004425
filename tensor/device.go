package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"

	"egg/gemm"
)

// Device runs the kernels of the tensors that live on it. The CPU device keeps
// tensors in host memory, splits work over goroutines and multiplies matrices
// with its GEMM. An accelerated device (NewAccelerated) keeps them in an
// Accelerator's memory and runs the ops it has kernels for there; the others run
// on the host, as on the CPU device, on a copy.
// A Device is safe for concurrent use.
type Device struct {
	gemm    gemm.Impl
	serial  gemm.Impl
	threads int
	pool    bufferPool

	acc  Accelerator // nil on the CPU
	kern Kernels     // acc's kernels; nil when it has none
	accelCounters
}

// NewCPU returns a CPU device that runs on threads goroutines (<= 0: all cores)
// and multiplies matrices with g, whose calls must each run on one thread (the
// device splits large products over its goroutines itself).
func NewCPU(g gemm.Impl, threads int) *Device {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	return &Device{gemm: g, serial: g.Serial(), threads: threads}
}

// CPU returns a CPU device on threads goroutines (<= 0: all cores) with the GEMM
// that gemm.New chooses (OpenBLAS when it loads, else pure Go), used one thread per
// call.
func CPU(threads int) *Device { return NewCPU(gemm.New(1), threads) }

// NewAccelerated returns a device that keeps tensors in acc's memory. Ops run on
// acc when it implements Kernels and has a kernel for them; every other op runs
// on the host with host's kernels (threads and GEMM), on a copy of its inputs.
func NewAccelerated(acc Accelerator, host *Device) *Device {
	d := &Device{gemm: host.gemm, serial: host.serial, threads: host.threads, acc: acc}
	d.kern, _ = acc.(Kernels)
	d.gcEvery = gcEvery(acc)
	return d
}

// Accelerator returns the accelerator the device keeps tensors on, or nil for the
// CPU.
func (d *Device) Accelerator() Accelerator { return d.acc }

// Sync waits until the device has finished every op issued so far (a no-op on
// the CPU, whose ops finish before they return); for timing.
func (d *Device) Sync() {
	if d.acc != nil {
		d.acc.Sync()
	}
}

// Threads reports how many goroutines the device's kernels use.
func (d *Device) Threads() int { return d.threads }

// GEMM returns the device's matrix multiply.
func (d *Device) GEMM() gemm.Impl { return d.gemm }

// String names the device, for logs.
func (d *Device) String() string {
	if d.acc != nil {
		return d.acc.Name()
	}
	return "cpu(" + d.gemm.Name() + ")"
}

// parallel runs f over [0, n) split into at most d.threads contiguous chunks, each
// at least grain long, and waits for all of them.
func (d *Device) parallel(n, grain int, f func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	chunks := d.threads
	if c := (n + grain - 1) / grain; c < chunks {
		chunks = c
	}
	if chunks <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + chunks - 1) / chunks
	for lo := per; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			f(lo, hi)
		}(lo, hi)
	}
	f(0, min(per, n))
	wg.Wait()
}

// parallelDynamic runs f(0..n-1) on the device's goroutines, which take the next
// index as they finish, so a slow core does not hold the others up.
func (d *Device) parallelDynamic(n int, f func(i int)) {
	workers := min(d.threads, n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			f(i)
		}
	}
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}

// bufferPool recycles float32 buffers by exact length, so that a loop repeating the
// same shapes (a diffusion run) stops allocating after its first iteration.
type bufferPool struct {
	mu   sync.Mutex
	free map[int][][]float32
	held int
}

const poolLimit = 1 << 28 // floats held at most (1 GiB)

func (p *bufferPool) get(n int) []float32 {
	p.mu.Lock()
	if l := p.free[n]; len(l) > 0 {
		b := l[len(l)-1]
		p.free[n] = l[:len(l)-1]
		p.held -= n
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	return nil
}

func (p *bufferPool) put(b []float32) {
	n := cap(b)
	if n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held+n > poolLimit {
		return
	}
	if p.free == nil {
		p.free = map[int][][]float32{}
	}
	p.free[n] = append(p.free[n], b[:n])
	p.held += n
}

// scratch returns a buffer of n floats with unspecified contents; give it back with
// release when done.
func (d *Device) scratch(n int) []float32 {
	if b := d.pool.get(n); b != nil {
		return b
	}
	return make([]float32, n)
}

// release returns a scratch buffer to the device's pool.
func (d *Device) release(b []float32) { d.pool.put(b) }
