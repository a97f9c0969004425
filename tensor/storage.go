package tensor

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// storage holds the elements of a tensor on an accelerator, with a host copy made
// on demand. Views of a tensor (Reshape, Detach) share one storage.
//
// Coherence: each side is either valid or stale. An op that runs on the device
// reads dev (uploading the host copy first when only it is valid) and makes the
// host copy stale when it writes; host access (an op without a device kernel,
// Data) downloads when only the device is valid and makes the device copy stale,
// since the caller may write to the slice. With neither valid, the elements are
// zeros.
type storage struct {
	d   *Device
	n   int
	mu  sync.Mutex
	hst []float32
	mem Buffer
	// hostOK and devOK say which copies hold the current elements.
	hostOK, devOK bool
	cleanup       runtime.Cleanup // frees mem when the storage is collected
}

// newStorage returns n elements on d's accelerator: host (which it keeps) when it
// is non-nil, zeros when zero, else unspecified.
func newStorage(d *Device, n int, host []float32, zero bool) *storage {
	s := &storage{d: d, n: n, hst: host, hostOK: host != nil}
	_ = zero // zeros and unspecified contents are both zeros until written
	return s
}

// host returns the host copy for reading and writing: the device copy goes stale.
func (s *storage) host() []float32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hostOK {
		if s.hst == nil {
			s.hst = make([]float32, s.n)
		}
		if s.devOK {
			s.d.acc.Download(s.hst, s.mem)
		} else {
			clear(s.hst)
		}
		s.hostOK = true
	}
	s.devOK = false
	return s.hst
}

// values returns a copy of the elements without making either side stale.
func (s *storage) values() []float32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := make([]float32, s.n)
	switch {
	case s.hostOK:
		copy(v, s.hst)
	case s.devOK:
		s.d.acc.Download(v, s.mem)
	}
	return v
}

// setValues overwrites the elements from the host.
func (s *storage) setValues(src []float32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		return
	}
	s.alloc()
	s.d.acc.Upload(s.mem, src)
	s.devOK, s.hostOK = true, false
}

// fill sets every element to v on the device.
func (s *storage) fill(v float32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		return
	}
	s.alloc()
	s.d.acc.Fill(s.mem, s.n, v)
	s.devOK, s.hostOK = true, false
}

// copyFrom overwrites the elements with those of src (same length).
func (s *storage) copyFrom(src *storage) {
	if s.n == 0 {
		return
	}
	in := src.in()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alloc()
	s.d.acc.Copy(s.mem, in, s.n)
	s.devOK, s.hostOK = true, false
	runtime.KeepAlive(src)
}

// in returns the device copy for a kernel to read.
func (s *storage) in() Buffer {
	s.d.recent.hold(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.devOK || s.n == 0 {
		return s.mem
	}
	s.alloc()
	if s.hostOK {
		s.d.acc.Upload(s.mem, s.hst)
	} else {
		s.d.acc.Fill(s.mem, s.n, 0)
	}
	s.devOK = true
	return s.mem
}

// out returns the device copy for a kernel to overwrite: the host copy goes stale.
func (s *storage) out() Buffer {
	s.d.recent.hold(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		return 0
	}
	s.alloc()
	s.devOK, s.hostOK = true, false
	return s.mem
}

// inout returns the device copy for a kernel to read and update in place.
func (s *storage) inout() Buffer {
	b := s.in()
	s.mu.Lock()
	s.hostOK = false
	s.mu.Unlock()
	return b
}

// alloc makes room on the device (s.mu held). The room goes back to the
// accelerator when the storage is collected.
func (s *storage) alloc() {
	if s.mem != 0 {
		return
	}
	s.mem = s.d.accAlloc(s.n)
	acc, n, live := s.d.acc, s.n, &s.d.accLive
	s.cleanup = runtime.AddCleanup(s, func(b Buffer) {
		live.Add(-int64(n))
		acc.Free(b, n)
	}, s.mem)
}

// release gives t's device memory back at once, for scratch tensors whose end
// is known (a convolution's column matrix), rather than when they are collected.
// Kernels queued before still run first (one stream). t must not be used again;
// a nil t or one on the host is left alone.
func release(t *Tensor) {
	if t == nil || t.st == nil {
		return
	}
	s := t.st
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem == 0 {
		return
	}
	s.cleanup.Stop()
	s.d.accLive.Add(-int64(s.n))
	s.d.acc.Free(s.mem, s.n)
	s.mem, s.devOK = 0, false
}

// gcEvery returns how many float32 elements may be allocated on an accelerator
// between two forced collections: Go's collector sees only the small host headers
// of device tensors, so without this dead tensors would hold device memory long
// after they died. It is a tenth of the device's memory (at least 1 GiB), so that
// a large GPU collects a few times per guided step, not hundreds.
func gcEvery(acc Accelerator) int64 {
	const least = 1 << 28 // 1 GiB of float32
	if mi, ok := acc.(memInfoer); ok {
		if _, total := mi.MemInfo(); total > 0 {
			return max(least, int64(total/4/10))
		}
	}
	return least
}

// accAlloc allocates n elements on the accelerator. When the device is full it
// collects garbage (which frees dead tensors' memory) and tries again; when it
// still fails it panics with a *DeviceError.
func (d *Device) accAlloc(n int) Buffer {
	if d.accSince.Add(int64(n)) > d.gcEvery {
		d.accSince.Store(0)
		runtime.GC()
	}
	b, err := d.acc.Alloc(n)
	for try := 0; err != nil && try < 3; try++ {
		runtime.GC()
		time.Sleep(time.Duration(10<<try) * time.Millisecond) // let the cleanups run
		b, err = d.acc.Alloc(n)
	}
	if err != nil {
		panic(&DeviceError{Op: fmt.Sprintf("allocate %s on %s (%s live in tensors)", bytesString(4*n), d.acc.Name(), bytesString(4*int(d.accLive.Load()))),
			Err: errors.Join(err, errors.New("use a smaller --batch-size"))})
	}
	live := d.accLive.Add(int64(n))
	for p := d.accPeak.Load(); live > p && !d.accPeak.CompareAndSwap(p, live); p = d.accPeak.Load() {
	}
	return b
}

func bytesString(b int) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	default:
		return fmt.Sprintf("%d B", b)
	}
}

// recentRing is how many storages whose buffers were last handed to kernels a
// device keeps reachable.
const recentRing = 64

// recent keeps the storages whose buffers were handed out last reachable: a
// Buffer is a plain address, so without this a tensor could be collected (and its
// memory reused) between in() and the launch of the kernel that reads it. An op
// hands out a few buffers before its launch, far fewer than the ring holds.
type recent struct {
	mu   sync.Mutex
	ring [recentRing]*storage
	i    int
}

func (r *recent) hold(s *storage) {
	r.mu.Lock()
	r.ring[r.i] = s
	r.i = (r.i + 1) % recentRing
	r.mu.Unlock()
}

// accelCounters are a device's allocation counters (elements).
type accelCounters struct {
	recent   recent
	gcEvery  int64        // see gcEvery
	accSince atomic.Int64 // allocated since the last forced collection
	accLive  atomic.Int64 // held by tensors not yet collected
	accPeak  atomic.Int64 // the most accLive has been since ResetPeak
}

// MemoryInfo describes an accelerator's memory.
type MemoryInfo struct {
	Free, Total uint64 // the device's, as its driver reports them (0 when unknown)
	Live, Peak  int64  // bytes held by tensors not yet collected, now and at most since ResetPeak
}

// memInfoer is an Accelerator that reports its free and total memory.
type memInfoer interface{ MemInfo() (free, total uint64) }

// Memory reports the device's memory, or false for the CPU.
func (d *Device) Memory() (MemoryInfo, bool) {
	if d.acc == nil {
		return MemoryInfo{}, false
	}
	m := MemoryInfo{Live: 4 * d.accLive.Load(), Peak: 4 * d.accPeak.Load()}
	if mi, ok := d.acc.(memInfoer); ok {
		m.Free, m.Total = mi.MemInfo()
	}
	return m, true
}

// ResetPeak starts the peak of Memory afresh from what is live now.
func (d *Device) ResetPeak() { d.accPeak.Store(d.accLive.Load()) }

// SetCollectEvery makes the device collect garbage after every bytes it
// allocates (0: the default, a tenth of its memory) and returns the previous
// setting. A small value makes Memory's peak close to what was really needed, at
// the cost of frequent collections: for measuring, not for runs.
func (d *Device) SetCollectEvery(bytes int64) (previous int64) {
	previous = 4 * d.gcEvery
	if bytes <= 0 && d.acc != nil {
		d.gcEvery = gcEvery(d.acc)
	} else {
		d.gcEvery = max(1, bytes/4)
	}
	runtime.GC() // start from what is live
	return previous
}

// h returns the tensor's host elements for reading and writing (on an
// accelerator, a host copy; see storage).
func (t *Tensor) h() []float32 {
	if t.st != nil {
		return t.st.host()
	}
	return t.data
}

// view returns a tensor of the given shape (the same number of elements) sharing
// t's elements, with no history.
func (t *Tensor) view(shape []int) *Tensor {
	return &Tensor{dev: t.dev, shape: shape, data: t.data, st: t.st}
}
