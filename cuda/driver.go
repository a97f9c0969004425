package cuda

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// cuResult is the driver API's CUresult; 0 is success.
type cuResult int32

// CUresult values the package looks at.
const (
	cuSuccess               cuResult = 0
	cuErrOutOfMemory        cuResult = 2
	cuStreamNonBlock                 = 1  // CU_STREAM_NON_BLOCKING
	cuAttrCCMajor                    = 75 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
	cuAttrCCMinor                    = 76 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
	cuJitInfoLogBuffer               = 3  // CU_JIT_INFO_LOG_BUFFER
	cuJitInfoLogBufferSize           = 4  // CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES
	cuJitErrorLogBuffer              = 5  // CU_JIT_ERROR_LOG_BUFFER
	cuJitErrorLogBufferSize          = 6  // CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
)

// cuResultNames names the CUresults most likely seen, for when the driver's own
// cuGetErrorName is unavailable.
var cuResultNames = map[cuResult]string{
	0:   "CUDA_SUCCESS",
	1:   "CUDA_ERROR_INVALID_VALUE",
	2:   "CUDA_ERROR_OUT_OF_MEMORY",
	3:   "CUDA_ERROR_NOT_INITIALIZED",
	4:   "CUDA_ERROR_DEINITIALIZED",
	100: "CUDA_ERROR_NO_DEVICE",
	101: "CUDA_ERROR_INVALID_DEVICE",
	200: "CUDA_ERROR_INVALID_IMAGE",
	201: "CUDA_ERROR_INVALID_CONTEXT",
	209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
	218: "CUDA_ERROR_INVALID_PTX",
	222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
	400: "CUDA_ERROR_INVALID_HANDLE",
	500: "CUDA_ERROR_NOT_FOUND",
	700: "CUDA_ERROR_ILLEGAL_ADDRESS",
	701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
	702: "CUDA_ERROR_LAUNCH_TIMEOUT",
	719: "CUDA_ERROR_LAUNCH_FAILED",
	803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
	804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
	999: "CUDA_ERROR_UNKNOWN",
}

// errOutOfMemory is what a failed allocation wraps when the device is full.
var errOutOfMemory = errors.New("cuda: out of device memory")

// cuError is a failed driver call.
type cuError struct {
	call string   // the driver function, e.g. "cuMemAlloc_v2"
	code cuResult // its CUresult
	name string   // e.g. "CUDA_ERROR_OUT_OF_MEMORY"
	text string   // the driver's description, if it gave one
}

func (e *cuError) Error() string {
	if e.text != "" {
		return fmt.Sprintf("cuda: %s: %s (%s)", e.call, e.name, e.text)
	}
	return fmt.Sprintf("cuda: %s: %s", e.call, e.name)
}

// Is makes errors.Is(err, errOutOfMemory) true for CUDA_ERROR_OUT_OF_MEMORY.
func (e *cuError) Is(target error) bool {
	return target == errOutOfMemory && e.code == cuErrOutOfMemory
}

// driver holds the functions of libcuda.so.1 that the package calls (the _v2 names
// where cuda.h maps the plain name to them). Handles (CUcontext, CUstream, CUmodule,
// CUfunction) are uintptr; device addresses (CUdeviceptr) uint64; size_t uint64.
// The tests fill these fields with fakes.
type driver struct {
	path string // the library loaded

	cuInit                    func(flags uint32) cuResult
	cuDriverGetVersion        func(version *int32) cuResult
	cuDeviceGetCount          func(count *int32) cuResult
	cuDeviceGet               func(dev *int32, ordinal int32) cuResult
	cuDeviceGetName           func(name *byte, n int32, dev int32) cuResult
	cuDeviceTotalMem          func(bytes *uint64, dev int32) cuResult
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) cuResult
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) cuResult
	cuDevicePrimaryCtxRelease func(dev int32) cuResult
	cuCtxSetCurrent           func(ctx uintptr) cuResult
	cuMemGetInfo              func(free, total *uint64) cuResult
	cuMemAlloc                func(p *uint64, bytes uint64) cuResult
	cuMemFree                 func(p uint64) cuResult
	cuMemcpyHtoDAsync         func(dst uint64, src unsafe.Pointer, bytes uint64, stream uintptr) cuResult
	cuMemcpyDtoHAsync         func(dst unsafe.Pointer, src uint64, bytes uint64, stream uintptr) cuResult
	cuMemcpyDtoDAsync         func(dst, src uint64, bytes uint64, stream uintptr) cuResult
	cuMemsetD32Async          func(dst uint64, v uint32, n uint64, stream uintptr) cuResult
	cuStreamCreate            func(stream *uintptr, flags uint32) cuResult
	cuStreamDestroy           func(stream uintptr) cuResult
	cuStreamSynchronize       func(stream uintptr) cuResult
	cuModuleLoadDataEx        func(mod *uintptr, image unsafe.Pointer, n uint32, opts *int32, vals *uintptr) cuResult
	cuModuleUnload            func(mod uintptr) cuResult
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name *byte) cuResult
	cuLaunchKernel            func(fn uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params, extra *unsafe.Pointer) cuResult
	cuGetErrorName            func(r cuResult, s **byte) cuResult
	cuGetErrorString          func(r cuResult, s **byte) cuResult
}

// bindAll binds every function of the driver from library h.
func (d *driver) bindAll(h uintptr) error {
	for _, s := range []struct {
		f     any
		names []string
	}{
		{&d.cuInit, []string{"cuInit"}},
		{&d.cuDriverGetVersion, []string{"cuDriverGetVersion"}},
		{&d.cuDeviceGetCount, []string{"cuDeviceGetCount"}},
		{&d.cuDeviceGet, []string{"cuDeviceGet"}},
		{&d.cuDeviceGetName, []string{"cuDeviceGetName"}},
		{&d.cuDeviceTotalMem, []string{"cuDeviceTotalMem_v2"}},
		{&d.cuDeviceGetAttribute, []string{"cuDeviceGetAttribute"}},
		{&d.cuDevicePrimaryCtxRetain, []string{"cuDevicePrimaryCtxRetain"}},
		{&d.cuDevicePrimaryCtxRelease, []string{"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"}},
		{&d.cuCtxSetCurrent, []string{"cuCtxSetCurrent"}},
		{&d.cuMemGetInfo, []string{"cuMemGetInfo_v2"}},
		{&d.cuMemAlloc, []string{"cuMemAlloc_v2"}},
		{&d.cuMemFree, []string{"cuMemFree_v2"}},
		{&d.cuMemcpyHtoDAsync, []string{"cuMemcpyHtoDAsync_v2"}},
		{&d.cuMemcpyDtoHAsync, []string{"cuMemcpyDtoHAsync_v2"}},
		{&d.cuMemcpyDtoDAsync, []string{"cuMemcpyDtoDAsync_v2"}},
		{&d.cuMemsetD32Async, []string{"cuMemsetD32Async"}},
		{&d.cuStreamCreate, []string{"cuStreamCreate"}},
		{&d.cuStreamDestroy, []string{"cuStreamDestroy_v2", "cuStreamDestroy"}},
		{&d.cuStreamSynchronize, []string{"cuStreamSynchronize"}},
		{&d.cuModuleLoadDataEx, []string{"cuModuleLoadDataEx"}},
		{&d.cuModuleUnload, []string{"cuModuleUnload"}},
		{&d.cuModuleGetFunction, []string{"cuModuleGetFunction"}},
		{&d.cuLaunchKernel, []string{"cuLaunchKernel"}},
		{&d.cuGetErrorName, []string{"cuGetErrorName"}},
		{&d.cuGetErrorString, []string{"cuGetErrorString"}},
	} {
		if err := bind(h, s.f, s.names...); err != nil {
			return err
		}
	}
	return nil
}

// loadDriver loads the first libcuda.so.1 of dirs, else the loader's.
func loadDriver(dirs []string) (*driver, error) {
	var why string
	for _, p := range append(findLibs(dirs, driverNames), driverNames...) {
		h, err := dlopen(p)
		if err != nil {
			if why == "" && strings.ContainsRune(p, '/') {
				why = err.Error()
			}
			continue
		}
		d := &driver{path: p}
		if err := d.bindAll(h); err != nil {
			if why == "" {
				why = p + ": " + err.Error()
			}
			continue
		}
		return d, nil
	}
	if why != "" {
		why = " (" + oneLine(why) + ")"
	}
	return nil, fmt.Errorf("cuda: no CUDA driver (%s) found in %s%s; install the NVIDIA driver "+
		"or set EGG_CUDA_LIBS to the directory that holds %s", shortNames(driverNames), searchedWhere, why, driverNames[0])
}

// err turns a CUresult of call into an error (nil for success).
func (d *driver) err(call string, r cuResult) error {
	if r == cuSuccess {
		return nil
	}
	e := &cuError{call: call, code: r, name: cuResultNames[r]}
	if d.cuGetErrorName != nil {
		var s *byte
		if d.cuGetErrorName(r, &s) == cuSuccess && s != nil {
			e.name = goString(s)
		}
	}
	if d.cuGetErrorString != nil {
		var s *byte
		if d.cuGetErrorString(r, &s) == cuSuccess && s != nil {
			e.text = goString(s)
		}
	}
	if e.name == "" {
		e.name = fmt.Sprintf("CUresult %d", int32(r))
	}
	return e
}

// goString copies the NUL-terminated C string at p.
func goString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// cString returns s as a NUL-terminated byte slice.
func cString(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// oneLine squeezes a message onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
