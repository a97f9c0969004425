package cuda

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"egg/tensor"
)

var _ tensor.Accelerator = (*Device)(nil)

// Options choose the GPU and how it multiplies matrices.
type Options struct {
	// Ordinal is the CUDA device number (0 is the first GPU).
	Ordinal int
	// Precision is "fp32" (the default, also ""): GEMMs in full float32, within
	// float32 rounding of the host's; or "tf32": GEMMs on the tensor cores with
	// TF32 inputs (10-bit mantissas), several times faster and about 1e-3 relative;
	// "fp16" or "bf16": GEMMs (so matrix products and convolutions) with operands
	// rounded to float16 or bfloat16 (converted on the device before each GEMM) on
	// the tensor cores and float32 sums, as PyTorch's autocast does; every other op
	// stays float32.
	Precision string
}

// Device is one CUDA GPU: its primary context, one stream on which every call is
// queued in order, the kernels of kernels.ptx, a cuBLAS handle and a caching
// allocator. It implements tensor.Accelerator and tensor.Kernels and is safe for
// concurrent use: one mutex serialises the calls, each of which makes the context
// current on its OS thread first.
type Device struct {
	mu sync.Mutex

	drv    *driver
	blas   *cublas
	dev    int32   // CUdevice
	ctx    uintptr // CUcontext (the primary context)
	stream uintptr // CUstream
	module uintptr // CUmodule of kernels.ptx
	handle uintptr // cublasHandle_t

	ordinal   int
	versions  [2]int32 // the driver's CUDA version (13000 is 13.0) and cuBLAS's
	name      string   // the GPU's name, e.g. "NVIDIA H200"
	total     uint64   // its memory in bytes
	cc        [2]int   // compute capability
	precision string   // "fp32" or "tf32"

	kernels map[string]*kernel
	mem     *allocator
	closed  bool
}

var (
	libsOnce   sync.Once
	libsDriver *driver
	libsBlas   *cublas
	libsErr    error
)

// loadLibs loads libcuda and cuBLAS once per process.
func loadLibs() (*driver, *cublas, error) {
	libsOnce.Do(func() {
		if !dlSupported {
			_, libsErr = dlopen("")
			return
		}
		dirs := libDirs(os.Getenv, "")
		if libsDriver, libsErr = loadDriver(dirs); libsErr != nil {
			return
		}
		libsBlas, libsErr = loadCublas(dirs)
	})
	return libsDriver, libsBlas, libsErr
}

// Open opens GPU opts.Ordinal: it loads the driver and cuBLAS (see the package
// documentation for where it looks), initialises CUDA, retains the device's primary
// context, creates a stream, JIT-compiles the embedded kernels and creates a cuBLAS
// handle. Every error is one line starting with "cuda:"; Open does not panic.
func Open(opts Options) (dev *Device, err error) {
	defer func() {
		if r := recover(); r != nil {
			dev, err = nil, fmt.Errorf("cuda: Open: %v", r)
		}
	}()
	prec := opts.Precision
	switch prec {
	case "", "fp32":
		prec = "fp32"
	case "tf32", "fp16", "bf16":
	default:
		return nil, fmt.Errorf("cuda: unknown precision %q (want fp32, tf32, fp16 or bf16)", opts.Precision)
	}
	if opts.Ordinal < 0 {
		return nil, fmt.Errorf("cuda: device ordinal %d < 0", opts.Ordinal)
	}
	drv, blas, err := loadLibs()
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := drv.err("cuInit", drv.cuInit(0)); err != nil {
		return nil, fmt.Errorf("%v (driver %s)", err, drv.path)
	}
	var version int32
	if err := drv.err("cuDriverGetVersion", drv.cuDriverGetVersion(&version)); err != nil {
		return nil, err
	}
	var count int32
	if err := drv.err("cuDeviceGetCount", drv.cuDeviceGetCount(&count)); err != nil {
		return nil, err
	}
	if opts.Ordinal >= int(count) {
		return nil, fmt.Errorf("cuda: device %d asked for, but the driver sees %d", opts.Ordinal, count)
	}
	d := &Device{drv: drv, blas: blas, ordinal: opts.Ordinal, precision: prec, versions: [2]int32{version, 0}}
	if err := drv.err("cuDeviceGet", drv.cuDeviceGet(&d.dev, int32(opts.Ordinal))); err != nil {
		return nil, err
	}
	var name [256]byte
	if err := drv.err("cuDeviceGetName", drv.cuDeviceGetName(&name[0], int32(len(name)), d.dev)); err != nil {
		return nil, err
	}
	d.name = goString(&name[0])
	if err := drv.err("cuDeviceTotalMem_v2", drv.cuDeviceTotalMem(&d.total, d.dev)); err != nil {
		return nil, err
	}
	var major, minor int32
	if err := drv.err("cuDeviceGetAttribute", drv.cuDeviceGetAttribute(&major, cuAttrCCMajor, d.dev)); err != nil {
		return nil, err
	}
	if err := drv.err("cuDeviceGetAttribute", drv.cuDeviceGetAttribute(&minor, cuAttrCCMinor, d.dev)); err != nil {
		return nil, err
	}
	d.cc = [2]int{int(major), int(minor)}
	if major < 8 {
		return nil, fmt.Errorf("cuda: %s is sm_%d%d; the kernels need sm_80 or newer", d.name, major, minor)
	}
	if err := drv.err("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain(&d.ctx, d.dev)); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			d.destroy()
		}
	}()
	if err := drv.err("cuCtxSetCurrent", drv.cuCtxSetCurrent(d.ctx)); err != nil {
		return nil, err
	}
	if err := drv.err("cuStreamCreate", drv.cuStreamCreate(&d.stream, cuStreamNonBlock)); err != nil {
		return nil, err
	}
	if err := d.loadModule(); err != nil {
		return nil, err
	}
	if err := d.setup(); err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// loadModule JIT-compiles the embedded PTX, with the compiler's log in the error.
func (d *Device) loadModule() error {
	img := cString(kernelsPTX)
	errLog := make([]byte, 16<<10)
	infoLog := make([]byte, 4<<10)
	opts := []int32{cuJitErrorLogBuffer, cuJitErrorLogBufferSize, cuJitInfoLogBuffer, cuJitInfoLogBufferSize}
	vals := []uintptr{
		uintptr(unsafe.Pointer(&errLog[0])), uintptr(len(errLog)),
		uintptr(unsafe.Pointer(&infoLog[0])), uintptr(len(infoLog)),
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&img[0])
	pin.Pin(&errLog[0])
	pin.Pin(&infoLog[0])
	pin.Pin(&opts[0])
	pin.Pin(&vals[0])
	r := d.drv.cuModuleLoadDataEx(&d.module, unsafe.Pointer(&img[0]), uint32(len(opts)), &opts[0], &vals[0])
	runtime.KeepAlive(errLog)
	runtime.KeepAlive(infoLog)
	if err := d.drv.err("cuModuleLoadDataEx", r); err != nil {
		d.module = 0
		if log := oneLine(goString(&errLog[0])); log != "" {
			return fmt.Errorf("%v; JIT log: %s", err, log)
		}
		return err
	}
	return nil
}

// setup looks up every kernel of the module, creates the cuBLAS handle on the
// stream and the allocator. The tests call it on fake drivers.
func (d *Device) setup() error {
	entries, err := ptxEntries(kernelsPTX)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	d.kernels = map[string]*kernel{}
	for _, n := range names {
		k := &kernel{name: n, params: entries[n].params, maxThreads: entries[n].maxThreads}
		cn := cString(n)
		if err := d.drv.err("cuModuleGetFunction("+n+")", d.drv.cuModuleGetFunction(&k.fn, d.module, &cn[0])); err != nil {
			return err
		}
		d.kernels[n] = k
	}
	if err := d.blas.err("cublasCreate_v2", d.blas.create(&d.handle)); err != nil {
		return err
	}
	if err := d.blas.err("cublasSetStream_v2", d.blas.setStream(d.handle, d.stream)); err != nil {
		return err
	}
	if d.blas.getVersion != nil {
		d.blas.getVersion(d.handle, &d.versions[1])
	}
	if _, reduced := halfTypes[d.precision]; reduced && d.blas.gemmStridedBatchedEx == nil {
		return fmt.Errorf("cuda: precision %s needs cublasGemmStridedBatchedEx, which %s lacks", d.precision, d.blas.path)
	}
	mode := int32(cublasDefaultMath)
	if d.precision == "tf32" {
		mode = cublasTF32TensorOps
	}
	if err := d.blas.err("cublasSetMathMode", d.blas.setMathMode(d.handle, mode)); err != nil {
		return err
	}
	d.mem = newAllocator(d.driverMalloc, d.driverFree, d.syncStream)
	return nil
}

// destroy releases what Open made, ignoring errors.
func (d *Device) destroy() {
	if d.handle != 0 {
		d.blas.destroy(d.handle)
		d.handle = 0
	}
	if d.module != 0 {
		d.drv.cuModuleUnload(d.module)
		d.module = 0
	}
	if d.stream != 0 {
		d.drv.cuStreamDestroy(d.stream)
		d.stream = 0
	}
	if d.ctx != 0 {
		d.drv.cuDevicePrimaryCtxRelease(d.dev)
		d.ctx = 0
	}
}

// Close waits for the queued work, gives all memory back to the driver (buffers still
// held by tensors become invalid) and releases the context. Later calls fail, except
// Free, which then does nothing. Close twice is a no-op.
func (d *Device) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d.drv.cuCtxSetCurrent(d.ctx)
	d.drv.cuStreamSynchronize(d.stream)
	if d.mem != nil {
		d.mem.freeAll()
	}
	d.destroy()
	d.closed = true
}

var errClosed = errors.New("cuda: device closed")

// begin takes the device for one call and makes its context current on this OS
// thread (the goroutine stays on it until end).
func (d *Device) begin() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errClosed
	}
	runtime.LockOSThread()
	if err := d.drv.err("cuCtxSetCurrent", d.drv.cuCtxSetCurrent(d.ctx)); err != nil {
		runtime.UnlockOSThread()
		d.mu.Unlock()
		return err
	}
	return nil
}

// end gives the device back.
func (d *Device) end() {
	runtime.UnlockOSThread()
	d.mu.Unlock()
}

// enter is begin for the methods that panic on failure: with a *tensor.DeviceError.
func (d *Device) enter(op string) {
	if err := d.begin(); err != nil {
		panic(&tensor.DeviceError{Op: op, Err: err})
	}
}

// leave is end.
func (d *Device) leave() { d.end() }

// fail panics with a *tensor.DeviceError for a failed call of op.
func fail(op string, err error) {
	if err != nil {
		panic(&tensor.DeviceError{Op: op, Err: err})
	}
}

// Name names the device, e.g. "cuda:0 (NVIDIA H200, 139 GiB, sm_90)", with ", tf32"
// when its GEMMs use TF32.
func (d *Device) Name() string {
	s := fmt.Sprintf("cuda:%d (%s, %.0f GiB, sm_%d%d", d.ordinal, d.name, float64(d.total)/(1<<30), d.cc[0], d.cc[1])
	if d.precision != "fp32" {
		s += ", " + d.precision
	}
	return s + ")"
}

// Libraries returns the paths of the driver and cuBLAS libraries in use.
func (d *Device) Libraries() (driver, cublas string) { return d.drv.path, d.blas.path }

// MemInfo returns the device's free and total memory in bytes: what the driver
// counts as free plus the allocator's cached blocks, which egg's tensors can use.
func (d *Device) MemInfo() (free, total uint64) {
	d.enter("MemInfo")
	defer d.leave()
	fail("MemInfo", d.drv.err("cuMemGetInfo_v2", d.drv.cuMemGetInfo(&free, &total)))
	// Blocks in the allocator's cache are free for egg's tensors too.
	return free + uint64(d.mem.stats.CachedBytes), total
}

// Stats returns the allocator's counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mem == nil {
		return Stats{}
	}
	return d.mem.stats
}

// ReleaseCache gives the allocator's free blocks back to the driver (for other
// processes; the device's own allocations do it by themselves when memory runs out).
func (d *Device) ReleaseCache() error {
	if err := d.begin(); err != nil {
		return err
	}
	defer d.end()
	return d.mem.trim()
}

// driverMalloc is the allocator's cuMemAlloc.
func (d *Device) driverMalloc(bytes uint64) (uint64, error) {
	var p uint64
	if err := d.drv.err("cuMemAlloc_v2", d.drv.cuMemAlloc(&p, bytes)); err != nil {
		return 0, err
	}
	return p, nil
}

// driverFree is the allocator's cuMemFree.
func (d *Device) driverFree(p uint64) error { return d.drv.err("cuMemFree_v2", d.drv.cuMemFree(p)) }

// syncStream waits for the stream.
func (d *Device) syncStream() error {
	return d.drv.err("cuStreamSynchronize", d.drv.cuStreamSynchronize(d.stream))
}

// alloc allocates bytes with the device held, explaining an out-of-memory failure.
func (d *Device) alloc(bytes uint64) (uint64, error) {
	p, err := d.mem.alloc(bytes)
	if err == nil {
		return p, nil
	}
	if errors.Is(err, errOutOfMemory) {
		var free, total uint64
		d.drv.cuMemGetInfo(&free, &total)
		return 0, fmt.Errorf("cuda: out of memory on %s allocating %s (%s free of %s; this device holds %s): %w",
			d.Name(), bytesString(bytes), bytesString(free), bytesString(total), bytesString(uint64(d.mem.stats.DriverBytes)), err)
	}
	return 0, err
}

// bytesString writes a size in B, KiB, MiB or GiB.
func bytesString(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// Alloc returns room for n float32 elements (Free gives it back to the allocator's
// cache), or an error when the device is full even after releasing the cache.
func (d *Device) Alloc(n int) (tensor.Buffer, error) {
	if n < 0 {
		panic(fmt.Sprintf("cuda: Alloc(%d)", n))
	}
	if err := d.begin(); err != nil {
		return 0, err
	}
	defer d.end()
	p, err := d.alloc(4 * uint64(n))
	return tensor.Buffer(p), err
}

// Free gives back a buffer of n elements made by Alloc. It panics on a buffer that
// Alloc did not make or that is already free, and does nothing after Close.
func (d *Device) Free(b tensor.Buffer, n int) {
	if b == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if size, ok := d.mem.live[uint64(b)]; ok && size != d.mem.round(4*uint64(max(n, 0))) {
		panic(fmt.Sprintf("cuda: Free(%#x, %d): the buffer has %d bytes", uint64(b), n, size))
	}
	if err := d.mem.release(uint64(b)); err != nil {
		panic(err.Error())
	}
}

// Upload copies src into dst and waits for the copy.
func (d *Device) Upload(dst tensor.Buffer, src []float32) {
	if len(src) == 0 {
		return
	}
	d.enter("upload")
	defer d.leave()
	r := d.drv.cuMemcpyHtoDAsync(uint64(dst), unsafe.Pointer(&src[0]), 4*uint64(len(src)), d.stream)
	fail("upload "+bytesString(4*uint64(len(src))), d.drv.err("cuMemcpyHtoDAsync_v2", r))
	fail("upload", d.syncStream())
	runtime.KeepAlive(src)
}

// Download copies len(dst) elements of src to the host once the queued work is done.
func (d *Device) Download(dst []float32, src tensor.Buffer) {
	if len(dst) == 0 {
		return
	}
	d.enter("download")
	defer d.leave()
	r := d.drv.cuMemcpyDtoHAsync(unsafe.Pointer(&dst[0]), uint64(src), 4*uint64(len(dst)), d.stream)
	fail("download "+bytesString(4*uint64(len(dst))), d.drv.err("cuMemcpyDtoHAsync_v2", r))
	fail("download", d.syncStream())
	runtime.KeepAlive(dst)
}

// Fill sets n elements of dst to v.
func (d *Device) Fill(dst tensor.Buffer, n int, v float32) {
	if n <= 0 {
		return
	}
	d.enter("fill")
	defer d.leave()
	r := d.drv.cuMemsetD32Async(uint64(dst), math.Float32bits(v), uint64(n), d.stream)
	fail("fill", d.drv.err("cuMemsetD32Async", r))
}

// Copy copies n elements from src to dst.
func (d *Device) Copy(dst, src tensor.Buffer, n int) {
	if n <= 0 {
		return
	}
	d.enter("copy")
	defer d.leave()
	r := d.drv.cuMemcpyDtoDAsync(uint64(dst), uint64(src), 4*uint64(n), d.stream)
	fail("copy", d.drv.err("cuMemcpyDtoDAsync_v2", r))
}

// Sync waits until every call made so far has finished; a kernel's failure shows
// here (or at the next download) as a *tensor.DeviceError.
func (d *Device) Sync() {
	d.enter("sync")
	defer d.leave()
	fail("sync", d.syncStream())
}

// String is Name.
func (d *Device) String() string { return d.Name() }

// describe is for tests and logs: the device, the libraries and their versions, the
// allocator.
func (d *Device) describe() string {
	s := d.Stats()
	return strings.Join([]string{d.Name(), fmt.Sprintf("CUDA %d (%s)", d.versions[0], d.drv.path),
		fmt.Sprintf("cuBLAS %d (%s)", d.versions[1], d.blas.path),
		fmt.Sprintf("allocs %d, %s held", s.DriverAllocs, bytesString(uint64(s.DriverBytes)))}, "; ")
}
