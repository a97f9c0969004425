//go:build linux && (amd64 || arm64)

package cuda

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ebitengine/purego"
)

// The emulator: testdata/emu.cpp compiles kernels.cu as C++ for the CPU behind
// functions with the driver's signatures, which a Device then drives exactly as it
// drives a GPU (only context, stream and module handles are faked). It needs a C++
// compiler (clang++-14, clang++, c++ or g++); without one the tests skip, unless
// EGG_REQUIRE_CLANG=1 (as in CI).

var (
	emuOnce sync.Once
	emuLib  uintptr
	emuErr  error
)

var errNoCXX = errors.New("no C++ compiler (clang++-14, clang++, c++ or g++) on PATH")

// emuLibrary builds and loads libeggemu.so once per test binary.
func emuLibrary(t *testing.T) uintptr {
	sourceFile(t, "testdata/emu.cpp")
	sourceFile(t, "kernels.cu")
	emuOnce.Do(func() {
		cxx := ""
		for _, c := range []string{"clang++-14", "clang++", "c++", "g++"} {
			if p, err := exec.LookPath(c); err == nil {
				cxx = p
				break
			}
		}
		if cxx == "" {
			emuErr = errNoCXX
			return
		}
		dir, err := os.MkdirTemp("", "eggemu")
		if err != nil {
			emuErr = err
			return
		}
		testCleanup = append(testCleanup, func() { os.RemoveAll(dir) })
		so := filepath.Join(dir, "libeggemu.so")
		cmd := exec.Command(cxx, "-std=c++17", "-O1", "-ffp-contract=fast", "-fno-strict-aliasing", "-shared", "-fPIC",
			"-DEGG_EMU", "-o", so, "testdata/emu.cpp")
		if out, err := cmd.CombinedOutput(); err != nil {
			emuErr = errors.New(cmd.String() + ": " + err.Error() + "\n" + string(out))
			return
		}
		emuLib, emuErr = purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_LOCAL)
	})
	if errors.Is(emuErr, errNoCXX) && os.Getenv("EGG_REQUIRE_CLANG") != "1" {
		t.Skip("kernel emulator: " + emuErr.Error())
	}
	if emuErr != nil {
		t.Fatal(emuErr)
	}
	return emuLib
}

// emuDevice returns a Device whose driver and cuBLAS are the emulator.
func emuDevice(t *testing.T) *Device {
	h := emuLibrary(t)
	drv := &driver{path: "emulator"}
	for _, b := range []struct {
		f    any
		name string
	}{
		{&drv.cuMemAlloc, "emu_mem_alloc"},
		{&drv.cuMemFree, "emu_mem_free"},
		{&drv.cuMemcpyHtoDAsync, "emu_memcpy_htod"},
		{&drv.cuMemcpyDtoHAsync, "emu_memcpy_dtoh"},
		{&drv.cuMemcpyDtoDAsync, "emu_memcpy_dtod"},
		{&drv.cuMemsetD32Async, "emu_memset_d32"},
		{&drv.cuModuleGetFunction, "emu_module_get_function"},
		{&drv.cuLaunchKernel, "emu_launch_kernel"},
	} {
		if err := bind(h, b.f, b.name); err != nil {
			t.Fatal(err)
		}
	}
	ok := func() cuResult { return cuSuccess }
	drv.cuCtxSetCurrent = func(uintptr) cuResult { return ok() }
	drv.cuStreamSynchronize = func(uintptr) cuResult { return ok() }
	drv.cuStreamDestroy = func(uintptr) cuResult { return ok() }
	drv.cuModuleUnload = func(uintptr) cuResult { return ok() }
	drv.cuDevicePrimaryCtxRelease = func(int32) cuResult { return ok() }
	drv.cuMemGetInfo = func(free, total *uint64) cuResult { *free, *total = 1<<30, 1<<30; return ok() }
	blas := &cublas{path: "emulator"}
	if err := bind(h, &blas.sgemmStridedBatched, "emu_sgemm_strided_batched"); err != nil {
		t.Fatal(err)
	}
	if err := bind(h, &blas.gemmStridedBatchedEx, "emu_gemm_strided_batched_ex"); err != nil {
		t.Fatal(err)
	}
	blas.create = func(h *uintptr) cublasStatus { *h = 1; return 0 }
	blas.destroy = func(uintptr) cublasStatus { return 0 }
	blas.setStream = func(uintptr, uintptr) cublasStatus { return 0 }
	blas.setMathMode = func(uintptr, int32) cublasStatus { return 0 }
	d := &Device{drv: drv, blas: blas, ctx: 1, stream: 1, module: 1, name: "CPU emulator", total: 1 << 30,
		cc: [2]int{8, 0}, precision: "fp32"}
	if err := d.setup(); err != nil {
		t.Fatal(err)
	}
	// Exact sizes, so that the guard page after each buffer catches overruns.
	d.mem.round = func(n uint64) uint64 { return max(4, (n+3)/4*4) }
	t.Cleanup(d.Close)
	return d
}

// TestKernelsEmulated runs kernels.cu on the CPU against the host reference.
func TestKernelsEmulated(t *testing.T) {
	checkKernels(t, emuDevice(t))
}

// TestEmulatorLaunchLimits checks that the emulator refuses what a GPU refuses, so
// that the checks above mean something.
func TestEmulatorLaunchLimits(t *testing.T) {
	d := emuDevice(t)
	x, err := d.Alloc(10)
	if err != nil {
		t.Fatal(err)
	}
	d.enter("test")
	defer d.leave()
	a, _ := packArgs(int32(0), x, x, int64(10), float32(1), float32(0))
	for _, c := range []struct{ grid, block [3]uint32 }{
		{[3]uint32{1, 1, 1}, [3]uint32{2048, 1, 1}},
		{[3]uint32{1, 70000, 1}, [3]uint32{32, 1, 1}},
		{[3]uint32{0, 1, 1}, [3]uint32{32, 1, 1}},
	} {
		if err := d.launchPacked(d.kernels["egg_map"], c.grid, c.block, 0, a); err == nil {
			t.Errorf("grid %v block %v accepted", c.grid, c.block)
		}
	}
	if err := d.launchPacked(d.kernels["egg_map"], [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, a); err != nil {
		t.Error(err)
	}
}
