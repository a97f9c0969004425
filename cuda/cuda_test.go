package cuda

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"egg/tensor"
)

// testCleanup runs after all tests (the emulator's build directory, the GPU).
var testCleanup []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range testCleanup {
		f()
	}
	os.Exit(code)
}

// sourceFile reads a file of the package's source directory, skipping the test when
// it is absent: a compiled test binary may run elsewhere (on a GPU machine).
func sourceFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s is not here: the test runs outside the package's directory", name)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLibSearch(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	venv := filepath.Join(tmp, "venv")
	wheel := filepath.Join(venv, "lib/python3.12/site-packages/nvidia/cublas/lib")
	touch(t, filepath.Join(wheel, "libcublas.so.12"))
	env := map[string]string{"VIRTUAL_ENV": venv, "HOME": filepath.Join(tmp, "home")}
	getenv := func(k string) string { return env[k] }

	found := findLibs(libDirs(getenv, root), cublasNames)
	if want := filepath.Join(wheel, "libcublas.so.12"); len(found) != 1 || found[0] != want {
		t.Fatalf("found %v, want [%s]", found, want)
	}

	// The newest soname first within a directory.
	touch(t, filepath.Join(wheel, "libcublas.so.13"))
	found = findLibs(libDirs(getenv, root), cublasNames)
	if len(found) != 2 || filepath.Base(found[0]) != "libcublas.so.13" {
		t.Fatalf("found %v, want libcublas.so.13 first", found)
	}

	// The system directories (under root) before Python environments, and
	// LD_LIBRARY_PATH before them, and EGG_CUDA_LIBS before everything.
	sys := filepath.Join(root, "usr/local/cuda/lib64", "libcublas.so.12")
	touch(t, sys)
	if found = findLibs(libDirs(getenv, root), cublasNames); found[0] != sys {
		t.Fatalf("found %v, want %s first", found, sys)
	}
	ld := filepath.Join(tmp, "ld", "libcublas.so.11")
	touch(t, ld)
	env["LD_LIBRARY_PATH"] = filepath.Dir(ld)
	if found = findLibs(libDirs(getenv, root), cublasNames); found[0] != ld {
		t.Fatalf("found %v, want %s first", found, ld)
	}
	mine := filepath.Join(tmp, "mine", "libcublas.so.12")
	touch(t, mine)
	env["EGG_CUDA_LIBS"] = filepath.Join(tmp, "missing") + string(filepath.ListSeparator) + filepath.Dir(mine)
	if found = findLibs(libDirs(getenv, root), cublasNames); found[0] != mine {
		t.Fatalf("found %v, want %s first", found, mine)
	}

	// Other Python prefixes: ~/.local, /opt/*/.venv, /opt/conda, dist-packages.
	for _, p := range []string{
		filepath.Join(tmp, "home", ".local/lib/python3.11/site-packages/nvidia/cu13/lib"),
		filepath.Join(root, "opt/app/.venv/lib/python3.10/site-packages/nvidia/cublas/lib"),
		filepath.Join(root, "opt/conda/lib/python3.12/site-packages/nvidia/cublas/lib"),
		filepath.Join(root, "usr/lib/python3/dist-packages/nvidia/cublas/lib"),
		filepath.Join(root, "usr/local/lib/python3.12/dist-packages/nvidia/cublas/lib"),
	} {
		lib := filepath.Join(p, "libcublas.so.13")
		touch(t, lib)
		found = findLibs(libDirs(getenv, root), cublasNames)
		ok := false
		for _, f := range found {
			ok = ok || f == lib
		}
		if !ok {
			t.Errorf("%s not found (found %v)", lib, found)
		}
	}

	// An environment found through PATH.
	onPath := filepath.Join(tmp, "env2")
	lib := filepath.Join(onPath, "lib/python3.13/site-packages/nvidia/cublas/lib/libcublas.so.12")
	touch(t, lib)
	env["PATH"] = "/nonexistent/bin" + string(filepath.ListSeparator) + filepath.Join(onPath, "bin")
	found = findLibs(libDirs(getenv, root), cublasNames)
	if !contains(found, lib) {
		t.Errorf("%s (through PATH) not found in %v", lib, found)
	}

	// The driver in a system directory.
	drv := filepath.Join(root, "usr/lib/x86_64-linux-gnu", "libcuda.so.1")
	touch(t, drv)
	if found = findLibs(libDirs(getenv, root), driverNames); len(found) != 1 || found[0] != drv {
		t.Fatalf("driver: found %v, want [%s]", found, drv)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestShortNames(t *testing.T) {
	if got, want := shortNames(cublasNames), "libcublas.so.13, .12 or .11"; got != want {
		t.Errorf("shortNames = %q, want %q", got, want)
	}
	if got := shortNames(driverNames); got != "libcuda.so.1" {
		t.Errorf("shortNames = %q", got)
	}
}

// TestOpenWithoutGPU checks Open's errors on a machine without CUDA: one line, with
// the "cuda:" prefix and what to set.
func TestOpenWithoutGPU(t *testing.T) {
	if _, err := Open(Options{Precision: "fp8"}); err == nil || !strings.HasPrefix(err.Error(), "cuda:") {
		t.Errorf("Open with a bad precision: %v", err)
	}
	d, err := Open(Options{})
	if err == nil {
		d.Close()
		t.Skip("a GPU is here: " + d.Name())
	}
	msg := err.Error()
	t.Log(msg)
	if !strings.HasPrefix(msg, "cuda:") || strings.Contains(msg, "\n") {
		t.Errorf("error %q is not one line starting with cuda:", msg)
	}
	if dlSupported && !strings.Contains(msg, "EGG_CUDA_LIBS") && !strings.Contains(msg, "cuInit") {
		t.Errorf("error %q does not say to set EGG_CUDA_LIBS", msg)
	}
	// A search in an empty tree fails the same way (unless the loader has a driver).
	if drv, err := loadDriver(nil); err == nil {
		t.Logf("the dynamic loader has a driver: %s", drv.path)
	} else if !strings.Contains(err.Error(), "EGG_CUDA_LIBS") && dlSupported {
		t.Errorf("loadDriver: %v", err)
	}
}

const genCommand = "-x cuda --cuda-device-only -nocudainc -nocudalib --cuda-gpu-arch=sm_80 -O3 -S -o kernels.ptx kernels.cu"

// TestPTXUpToDate regenerates kernels.ptx with clang-14 and compares it with the
// embedded one. Without clang-14 it skips, unless EGG_REQUIRE_CLANG=1 (as in CI).
func TestPTXUpToDate(t *testing.T) {
	gen := sourceFile(t, "gen.sh")
	sourceFile(t, "kernels.cu")
	if !strings.Contains(string(gen), genCommand) {
		t.Errorf("gen.sh does not run clang-14 %s", genCommand)
	}
	clang, err := exec.LookPath("clang-14")
	if err != nil {
		const msg = "clang-14 is not on PATH, so kernels.ptx cannot be regenerated (apt-get install clang-14)"
		if os.Getenv("EGG_REQUIRE_CLANG") == "1" {
			t.Fatal(msg + "; EGG_REQUIRE_CLANG=1 asks for the check")
		}
		t.Skip(msg)
	}
	out := filepath.Join(t.TempDir(), "kernels.ptx")
	args := strings.Fields(strings.Replace(genCommand, "-o kernels.ptx", "-o "+out, 1))
	if b, err := exec.Command(clang, args...).CombinedOutput(); err != nil {
		t.Fatalf("clang-14: %v\n%s", err, b)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(fresh) != kernelsPTX {
		t.Fatal("kernels.ptx is not what clang-14 makes of kernels.cu: run sh gen.sh (go generate ./cuda) and commit it")
	}
}

func TestPTXEntries(t *testing.T) {
	if strings.Contains(kernelsPTX, ".extern .func") || strings.Contains(kernelsPTX, ".extern") {
		t.Error("kernels.ptx declares external functions: the kernels must not need libdevice")
	}
	if !strings.Contains(kernelsPTX, ".target sm_80") {
		t.Error("kernels.ptx is not sm_80 PTX")
	}
	entries, err := ptxEntries(kernelsPTX)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{
		"egg_map":       {4, 8, 8, 8, 4, 4},
		"egg_binary32":  {4, 8, 8, 8, 8, 4, 48, 48, 48},
		"egg_strided64": {8, 8, 8, 4, 48, 48},
		"egg_im2col":    {8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8},
	}
	for name, sizes := range want {
		if got := entries[name].params; fmt.Sprint(got) != fmt.Sprint(sizes) {
			t.Errorf("%s: parameters %v, want %v", name, got, sizes)
		}
	}
	for name, e := range entries {
		want := 256
		if name == "egg_group_norm" || name == "egg_gn_grad_x" {
			want = 512
		}
		if e.maxThreads != want {
			t.Errorf("%s: .maxntid %d, want %d", name, e.maxThreads, want)
		}
	}
	if len(entries) < 20 {
		t.Errorf("%d entries in kernels.ptx", len(entries))
	}
}

// TestOpCodes checks that kernels.cu numbers the ops as the tensor package does.
func TestOpCodes(t *testing.T) {
	src := sourceFile(t, "kernels.cu")
	want := map[string]int32{
		"MAP_SCALE": int32(tensor.MapScale), "MAP_ADD_SCALAR": int32(tensor.MapAddScalar), "MAP_EXP": int32(tensor.MapExp),
		"MAP_LOG": int32(tensor.MapLog), "MAP_SQRT": int32(tensor.MapSqrt), "MAP_POW": int32(tensor.MapPow),
		"MAP_ABS": int32(tensor.MapAbs), "MAP_CLAMP": int32(tensor.MapClamp), "MAP_SIGMOID": int32(tensor.MapSigmoid),
		"MAP_SILU": int32(tensor.MapSiLU), "MAP_RELU": int32(tensor.MapReLU), "MAP_ELU": int32(tensor.MapELU),
		"MAP_TANH": int32(tensor.MapTanh), "MAP_SOFTPLUS": int32(tensor.MapSoftplus),
		"BINARY_ADD": int32(tensor.BinaryAdd), "BINARY_SUB": int32(tensor.BinarySub),
		"BINARY_MUL": int32(tensor.BinaryMul), "BINARY_DIV": int32(tensor.BinaryDiv),
	}
	got := map[string]int32{}
	for _, m := range regexp.MustCompile(`(?m)^\s*((?:MAP|BINARY)_[A-Z_]+) = (\d+),`).FindAllStringSubmatch(string(src), -1) {
		v, _ := strconv.Atoi(m[2])
		got[m[1]] = int32(v)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("kernels.cu %s = %d (found %v), tensor has %d", k, g, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("kernels.cu has %d op codes, tensor %d", len(got), len(want))
	}
	if tensor.MapSoftplus != 13 || tensor.BinaryDiv != 3 {
		t.Errorf("the tensor package has new ops: teach kernels.cu (MapSoftplus %d, BinaryDiv %d)", tensor.MapSoftplus, tensor.BinaryDiv)
	}
}

func TestPackArgs(t *testing.T) {
	a, err := packArgs(uint64(1<<40+3), int32(-2), float32(1.5), tensor.Buffer(0xdeadbeef00), uint32(7),
		dims6{1, -2, 3, 4, 5, 6}, int64(-9), 11, uintptr(12))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(a.sizes), "[8 4 4 8 4 48 8 8 8]"; got != want {
		t.Errorf("sizes %s, want %s", got, want)
	}
	if len(a.ptrs) != 9 || len(a.slots) != 14 {
		t.Fatalf("%d pointers, %d slots", len(a.ptrs), len(a.slots))
	}
	if v := *(*uint64)(a.ptrs[0]); v != 1<<40+3 {
		t.Errorf("arg 0 = %d", v)
	}
	if v := *(*int32)(a.ptrs[1]); v != -2 {
		t.Errorf("arg 1 = %d", v)
	}
	if v := *(*float32)(a.ptrs[2]); v != 1.5 {
		t.Errorf("arg 2 = %v", v)
	}
	if v := *(*uint64)(a.ptrs[3]); v != 0xdeadbeef00 {
		t.Errorf("arg 3 = %#x", v)
	}
	if v := *(*uint32)(a.ptrs[4]); v != 7 {
		t.Errorf("arg 4 = %d", v)
	}
	if v := *(*dims6)(a.ptrs[5]); v != (dims6{1, -2, 3, 4, 5, 6}) {
		t.Errorf("arg 5 = %v", v)
	}
	if v := *(*int64)(a.ptrs[6]); v != -9 {
		t.Errorf("arg 6 = %d", v)
	}
	if v := *(*int64)(a.ptrs[7]); v != 11 {
		t.Errorf("arg 7 = %d", v)
	}
	for i, p := range a.ptrs {
		if uintptr(p)%8 != 0 {
			t.Errorf("arg %d not 8-byte aligned", i)
		}
	}
	// The 4-byte values do not spill into the next slot.
	if a.slots[1]>>32 != 0 || a.slots[2]>>32 != 0 {
		t.Errorf("4-byte slots %#x %#x", a.slots[1], a.slots[2])
	}
	if _, err := packArgs(1.5); err == nil {
		t.Error("packArgs took a float64")
	}
	k := &kernel{name: "k", params: []int{8, 4}}
	if b, _ := packArgs(uint64(1), int32(2)); b.check(k) != nil {
		t.Error("check rejected matching arguments")
	}
	if b, _ := packArgs(uint64(1), int64(2)); b.check(k) == nil {
		t.Error("check took an 8-byte value for a 4-byte parameter")
	}
	if b, _ := packArgs(uint64(1)); b.check(k) == nil {
		t.Error("check took too few arguments")
	}
}

func TestRoundSize(t *testing.T) {
	for _, c := range []struct{ n, want uint64 }{
		{0, 512}, {1, 512}, {512, 512}, {513, 1024}, {1 << 20, 1 << 20}, {1<<20 + 1, 2 << 20},
		{2 << 20, 2 << 20}, {2<<20 + 1, 4 << 20}, {5 << 30, 5 << 30},
	} {
		if got := roundSize(c.n); got != c.want {
			t.Errorf("roundSize(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

// fakeDriverMem is a counting fake of cuMemAlloc/cuMemFree with a capacity.
type fakeDriverMem struct {
	next, held, capacity uint64
	allocs, frees, idles int
	live                 map[uint64]uint64
}

func (f *fakeDriverMem) malloc(n uint64) (uint64, error) {
	if f.held+n > f.capacity {
		return 0, &cuError{call: "cuMemAlloc_v2", code: cuErrOutOfMemory, name: "CUDA_ERROR_OUT_OF_MEMORY"}
	}
	f.next += n + 4096
	f.held += n
	f.allocs++
	f.live[f.next] = n
	return f.next, nil
}

func (f *fakeDriverMem) free(p uint64) error {
	n, ok := f.live[p]
	if !ok {
		return errors.New("fake: bad free")
	}
	delete(f.live, p)
	f.held -= n
	f.frees++
	return nil
}

func TestAllocator(t *testing.T) {
	f := &fakeDriverMem{capacity: 64 << 20, live: map[uint64]uint64{}}
	a := newAllocator(f.malloc, f.free, func() error { f.idles++; return nil })
	sizes := []uint64{4, 1000, 4000, 1 << 20, 3 << 20, 3 << 20, 10 << 20}
	for iter := 0; iter < 5; iter++ {
		var ps []uint64
		for _, n := range sizes {
			p, err := a.alloc(n)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
		}
		for _, p := range ps {
			if err := a.release(p); err != nil {
				t.Fatal(err)
			}
		}
		if f.allocs != len(sizes) {
			t.Fatalf("iteration %d: %d driver allocations, want %d (the first iteration's)", iter, f.allocs, len(sizes))
		}
	}
	s := a.stats
	if s.LiveBytes != 0 || s.DriverAllocs != int64(len(sizes)) || s.CachedBytes != s.DriverBytes || s.DriverBytes != int64(f.held) {
		t.Errorf("stats %+v, driver holds %d", s, f.held)
	}
	if s.Reuses != int64(4*len(sizes)) {
		t.Errorf("%d reuses", s.Reuses)
	}
	// A different size class does not reuse: 5 MiB is a 6 MiB block.
	held := f.held
	p, err := a.alloc(5 << 20)
	if err != nil || f.held != held+6<<20 {
		t.Fatalf("alloc 5 MiB: %v, driver holds %d more", err, f.held-held)
	}
	if err := a.release(p); err != nil {
		t.Fatal(err)
	}
	if err := a.release(p); err == nil {
		t.Error("double free accepted")
	}
	// Out of memory: the first refusal leaves the cache alone (the caller collects
	// garbage and asks again); on the second the cache (24.5 MiB) goes back to the
	// driver, then it fits.
	if _, err := a.alloc(50 << 20); !errors.Is(err, errOutOfMemory) || f.idles != 0 || a.stats.CachedBytes == 0 {
		t.Fatalf("first refusal: %v, %d idles, %d bytes cached", err, f.idles, a.stats.CachedBytes)
	}
	big, err := a.alloc(50 << 20)
	if err != nil {
		t.Fatalf("alloc after trim: %v", err)
	}
	if f.idles != 1 || a.stats.CachedBytes != 0 || f.frees == 0 {
		t.Errorf("trim: %d idles, stats %+v, %d driver frees", f.idles, a.stats, f.frees)
	}
	// Really out of memory: an error that says so.
	if _, err := a.alloc(32 << 20); err == nil || !errors.Is(err, errOutOfMemory) {
		t.Errorf("alloc beyond capacity: %v", err)
	}
	if err := a.release(big); err != nil {
		t.Fatal(err)
	}
	if err := a.freeAll(); err != nil || f.held != 0 || len(f.live) != 0 {
		t.Errorf("freeAll: %v, driver still holds %d", err, f.held)
	}
}

// fakeGPU is a Device over Go fakes of the driver and cuBLAS: memory is Go slices at
// made-up addresses, launches are recorded with their decoded arguments, and
// cublasSgemmStridedBatched is a column-major reference. It runs everywhere.
type fakeGPU struct {
	t      *testing.T
	slabs  map[uint64][]float32
	next   uint64
	names  []string
	calls  []fakeLaunch
	kparam map[string]ptxEntry
}

type fakeLaunch struct {
	name        string
	grid, block [3]uint32
	args        []int64 // each argument; dims6 as 6 values
}

func (f *fakeGPU) mem(addr uint64, n int) []float32 {
	for base, s := range f.slabs {
		if addr >= base && addr+4*uint64(n) <= base+4*uint64(len(s)) && (addr-base)%4 == 0 {
			return s[(addr-base)/4:][:n]
		}
	}
	f.t.Fatalf("fake: %d elements at %#x are not allocated", n, addr)
	return nil
}

func newFakeGPU(t *testing.T) (*Device, *fakeGPU) {
	entries, err := ptxEntries(kernelsPTX)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeGPU{t: t, slabs: map[uint64][]float32{}, next: 1 << 32, kparam: entries}
	ok := func() cuResult { return cuSuccess }
	drv := &driver{path: "fake"}
	drv.cuCtxSetCurrent = func(uintptr) cuResult { return ok() }
	drv.cuStreamSynchronize = func(uintptr) cuResult { return ok() }
	drv.cuStreamDestroy = func(uintptr) cuResult { return ok() }
	drv.cuModuleUnload = func(uintptr) cuResult { return ok() }
	drv.cuDevicePrimaryCtxRelease = func(int32) cuResult { return ok() }
	drv.cuMemGetInfo = func(free, total *uint64) cuResult { *free, *total = 1<<30, 1<<30; return ok() }
	drv.cuMemAlloc = func(p *uint64, n uint64) cuResult {
		if n%4 != 0 {
			return 1
		}
		*p = f.next
		f.slabs[f.next] = make([]float32, n/4)
		f.next += n + 1<<20
		return ok()
	}
	drv.cuMemFree = func(p uint64) cuResult {
		if _, found := f.slabs[p]; !found {
			return 1
		}
		delete(f.slabs, p)
		return ok()
	}
	drv.cuMemcpyHtoDAsync = func(dst uint64, src unsafe.Pointer, n uint64, _ uintptr) cuResult {
		copy(f.mem(dst, int(n/4)), unsafe.Slice((*float32)(src), n/4))
		return ok()
	}
	drv.cuMemcpyDtoHAsync = func(dst unsafe.Pointer, src uint64, n uint64, _ uintptr) cuResult {
		copy(unsafe.Slice((*float32)(dst), n/4), f.mem(src, int(n/4)))
		return ok()
	}
	drv.cuMemcpyDtoDAsync = func(dst, src uint64, n uint64, _ uintptr) cuResult {
		copy(f.mem(dst, int(n/4)), f.mem(src, int(n/4)))
		return ok()
	}
	drv.cuMemsetD32Async = func(dst uint64, v uint32, n uint64, _ uintptr) cuResult {
		s := f.mem(dst, int(n))
		for i := range s {
			s[i] = math.Float32frombits(v)
		}
		return ok()
	}
	drv.cuModuleGetFunction = func(fn *uintptr, _ uintptr, name *byte) cuResult {
		f.names = append(f.names, goString(name))
		*fn = uintptr(len(f.names))
		return ok()
	}
	drv.cuLaunchKernel = func(fn uintptr, gx, gy, gz, bx, by, bz, shared uint32, _ uintptr, params, extra *unsafe.Pointer) cuResult {
		name := f.names[fn-1]
		if extra != nil || bx*by*bz > 1024 || bx*by*bz == 0 || gx == 0 || gy == 0 || gz == 0 || gy > 65535 || gz > 65535 || gx > 1<<31-1 {
			return 1
		}
		sizes := f.kparam[name].params
		ptrs := unsafe.Slice(params, len(sizes))
		var args []int64
		for i, s := range sizes {
			switch s {
			case 4:
				args = append(args, int64(*(*int32)(ptrs[i])))
			case 8:
				args = append(args, *(*int64)(ptrs[i]))
			case 48:
				d := *(*dims6)(ptrs[i])
				args = append(args, d[:]...)
			}
		}
		f.calls = append(f.calls, fakeLaunch{name, [3]uint32{gx, gy, gz}, [3]uint32{bx, by, bz}, args})
		return ok()
	}
	blas := &cublas{path: "fake"}
	blas.create = func(h *uintptr) cublasStatus { *h = 1; return 0 }
	blas.destroy = func(uintptr) cublasStatus { return 0 }
	blas.setStream = func(uintptr, uintptr) cublasStatus { return 0 }
	blas.setMathMode = func(uintptr, int32) cublasStatus { return 0 }
	blas.sgemmStridedBatched = func(_ uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, sa int64,
		b uint64, ldb int32, sb int64, beta *float32, c uint64, ldc int32, sc int64, batch int32) cublasStatus {
		rowsA, rowsB := m, k
		if ta == cublasOpT {
			rowsA = k
		}
		if tb == cublasOpT {
			rowsB = n
		}
		if lda < max(1, rowsA) || ldb < max(1, rowsB) || ldc < max(1, m) {
			return 7
		}
		at := func(base uint64, i int64) float32 { return f.mem(base+4*uint64(i), 1)[0] }
		for p := int64(0); p < int64(batch); p++ {
			for j := int64(0); j < int64(n); j++ {
				for i := int64(0); i < int64(m); i++ {
					var s float64
					for l := int64(0); l < int64(k); l++ {
						ia, ib := i+l*int64(lda), l+j*int64(ldb)
						if ta == cublasOpT {
							ia = l + i*int64(lda)
						}
						if tb == cublasOpT {
							ib = j + l*int64(ldb)
						}
						s += float64(at(a, p*sa+ia)) * float64(at(b, p*sb+ib))
					}
					cv := f.mem(c+4*uint64(p*sc+i+j*int64(ldc)), 1)
					r := *alpha * float32(s)
					if *beta != 0 {
						r += *beta * cv[0]
					}
					cv[0] = r
				}
			}
		}
		return 0
	}
	d := &Device{drv: drv, blas: blas, ctx: 1, stream: 1, module: 1, name: "fake GPU", total: 1 << 30, cc: [2]int{9, 0}, precision: "fp32"}
	if err := d.setup(); err != nil {
		t.Fatal(err)
	}
	return d, f
}

// TestFakeDevice drives every method through the fake driver: the host-side code of
// the package (argument packing against the PTX signatures, launch shapes, copies,
// the row-major to column-major GEMM mapping) without a GPU.
func TestFakeDevice(t *testing.T) {
	d, f := newFakeGPU(t)
	if d.Name() != "cuda:0 (fake GPU, 1 GiB, sm_90)" {
		t.Errorf("Name %q", d.Name())
	}
	alloc := func(n int) tensor.Buffer {
		b, err := d.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	x, y, z := alloc(1000), alloc(1000), alloc(1000)
	src := make([]float32, 1000)
	for i := range src {
		src[i] = float32(i)
	}
	d.Upload(x, src)
	d.Copy(y.At(10), x, 20)
	d.Fill(z, 1000, 2.5)
	got := make([]float32, 30)
	d.Download(got, y)
	if got[10] != 0 || got[29] != 19 {
		t.Errorf("copy: %v", got)
	}
	d.Download(got, z.At(970))
	if got[0] != 2.5 || got[29] != 2.5 {
		t.Errorf("fill: %v", got)
	}

	last := func() fakeLaunch {
		t.Helper()
		if len(f.calls) == 0 {
			t.Fatal("no launch")
		}
		return f.calls[len(f.calls)-1]
	}
	d.Map(tensor.MapSiLU, y, x, 1000, 0, 0)
	if l := last(); l.name != "egg_map" || l.args[0] != int64(tensor.MapSiLU) || l.args[1] != int64(y) || l.args[2] != int64(x) || l.args[3] != 1000 {
		t.Errorf("Map launched %+v", l)
	}
	d.MapGrad(tensor.MapExp, z, x, x, y, 1000, 0, 0)
	if l := last(); l.name != "egg_map_grad" || l.args[3] != 0 || l.args[4] != int64(y) {
		t.Errorf("MapGrad(Exp) launched %+v (x must be dropped)", l)
	}
	d.Binary(tensor.BinaryMul, z, x, y, []int{4, 1, 5, 10}, []int{50, 0, 10, 1}, []int{0, 0, 10, 1})
	if l := last(); l.name != "egg_binary32" || l.args[5] != 2 || l.args[6] != 4 || l.args[7] != 50 {
		t.Errorf("Binary launched %+v", l)
	}
	force64 = true
	d.Strided(z, x, []int{10, 100}, []int{1, 10})
	force64 = false
	if l := last(); l.name != "egg_strided64" || l.args[3] != 2 {
		t.Errorf("Strided launched %+v", l)
	}
	d.Scatter(z, []int{100, 1}, x, []int{10, 50})
	if l := last(); l.name != "egg_scatter32" || l.args[3] != 2 {
		t.Errorf("Scatter launched %+v", l)
	}
	d.SumAxis(z, x, 10, 100, 1)
	if l := last(); l.name != "egg_sum_axis_block" || l.block[0] != 128 || l.grid[0] != 10 {
		t.Errorf("SumAxis launched %+v", l)
	}
	d.SumAxis(z, x, 10, 10, 10)
	if l := last(); l.name != "egg_sum_axis_thread" {
		t.Errorf("SumAxis launched %+v", l)
	}
	g := tensor.ConvGeometry{N: 2, C: 3, H: 5, W: 6, KH: 3, KW: 3, OH: 5, OW: 6, Stride: 1, Pad: 1, Dil: 1}
	cols := alloc(2 * 27 * 30)
	d.Im2Col(cols, x, g)
	if l := last(); l.name != "egg_im2col" || l.block[0]*l.block[1] != 256 || l.block[0] != 32 || l.grid[1] != 7 {
		t.Errorf("Im2Col launched %+v", l)
	}
	d.Col2Im(x, cols, g)
	if l := last(); l.name != "egg_col2im" {
		t.Errorf("Col2Im launched %+v", l)
	}
	mean, rstd := alloc(6), alloc(6)
	d.GroupNorm(y, mean, rstd, x, 0, 0, 2, 6, 50, 3, 1e-5)
	if l := last(); l.name != "egg_group_norm" || l.block[0] != 128 || l.args[4] != 0 {
		t.Errorf("GroupNorm launched %+v", l)
	}
	n0 := len(f.calls)
	gw := alloc(6)
	d.GroupNormGrad(z, gw, 0, y, x, mean, rstd, 0, 2, 6, 50, 3)
	if names := fmt.Sprint(f.calls[n0:]); !strings.Contains(names, "egg_gn_grad_stats") || !strings.Contains(names, "egg_gn_grad_x") || !strings.Contains(names, "egg_gn_grad_wb") {
		t.Errorf("GroupNormGrad launched %v", names)
	}
	d.Softmax(y, x, 10, 100, 1, false)
	if l := last(); l.name != "egg_softmax_rows" || l.block[0] != 128 {
		t.Errorf("Softmax launched %+v", l)
	}
	d.Softmax(y, x, 10, 10, 10, true)
	if l := last(); l.name != "egg_softmax_cols" || l.args[5] != 1 {
		t.Errorf("Softmax launched %+v", l)
	}
	d.SoftmaxGrad(z, y, x, 10, 100, 1, true)
	if l := last(); l.name != "egg_softmax_grad_rows" {
		t.Errorf("SoftmaxGrad launched %+v", l)
	}
	d.SoftmaxGrad(z, y, x, 10, 10, 10, false)
	if l := last(); l.name != "egg_softmax_grad_cols" {
		t.Errorf("SoftmaxGrad launched %+v", l)
	}
	d.Upsample(z, x, 2, 5, 10, 3)
	if l := last(); l.name != "egg_upsample" || l.args[2] != 30 {
		t.Errorf("Upsample launched %+v", l)
	}
	d.UpsampleGrad(x, z, 2, 5, 10, 3)
	if l := last(); l.name != "egg_upsample_grad" || l.args[2] != 10 {
		t.Errorf("UpsampleGrad launched %+v", l)
	}

	// GEMM: the column-major fake against a row-major reference, every transposition.
	const m, n, k, batch = 3, 4, 5, 2
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			lda, ldb, ldc := k+1, n+2, n+3
			if ta {
				lda = m + 1
			}
			if tb {
				ldb = k + 2
			}
			sa, sb, sc := 40, 0, 40
			av, bv, cv := make([]float32, 100), make([]float32, 100), make([]float32, 100)
			for i := range av {
				av[i], bv[i], cv[i] = float32(i%7)-3, float32(i%5)-2, float32(i%3)
			}
			a, b, c := alloc(100), alloc(100), alloc(100)
			d.Upload(a, av)
			d.Upload(b, bv)
			d.Upload(c, cv)
			d.GEMM(ta, tb, m, n, k, 1.5, a, lda, sa, b, ldb, sb, 0.5, c, ldc, sc, batch)
			res := make([]float32, 100)
			d.Download(res, c)
			for p := 0; p < batch; p++ {
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						var s float32
						for l := 0; l < k; l++ {
							ai, bi := i*lda+l, l*ldb+j
							if ta {
								ai = l*lda + i
							}
							if tb {
								bi = j*ldb + l
							}
							s += av[p*sa+ai] * bv[p*sb+bi]
						}
						want := 1.5*s + 0.5*cv[p*sc+i*ldc+j]
						if got := res[p*sc+i*ldc+j]; got != want {
							t.Fatalf("GEMM ta %v tb %v: C[%d][%d,%d] = %v, want %v", ta, tb, p, i, j, got, want)
						}
					}
				}
			}
		}
	}

	s := d.Stats()
	if s.LiveBytes == 0 || s.DriverAllocs == 0 {
		t.Errorf("stats %+v", s)
	}
	d.Free(x, 1000)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("double Free did not panic")
			}
		}()
		d.Free(x, 1000)
	}()
	d.Close()
	if len(f.slabs) != 0 {
		t.Errorf("Close left %d driver allocations", len(f.slabs))
	}
	d.Free(y, 1000) // after Close: nothing
	if _, err := d.Alloc(10); err == nil {
		t.Error("Alloc after Close succeeded")
	}
	if err := tensor.Catch(func() { d.Map(tensor.MapExp, y, x, 10, 0, 0) }); err == nil {
		t.Error("Map after Close did not fail")
	}
}

func TestCollapseDims(t *testing.T) {
	sizes, st := collapseDims([]int{2, 1, 3, 4}, []int{12, 0, 4, 1}, []int{0, 0, 1, 0})
	if fmt.Sprint(sizes, st) != "[2 3 4] [[12 4 1] [0 1 0]]" {
		t.Errorf("got %v %v", sizes, st)
	}
	sizes, st = collapseDims([]int{2, 3, 4}, []int{12, 4, 1})
	if fmt.Sprint(sizes, st) != "[24] [[1]]" {
		t.Errorf("got %v %v", sizes, st)
	}
	sizes, st = collapseDims([]int{1, 1}, []int{0, 0})
	if fmt.Sprint(sizes, st) != "[1] [[0]]" {
		t.Errorf("got %v %v", sizes, st)
	}
}

func TestCuErrorOneLine(t *testing.T) {
	var d driver
	err := d.err("cuMemAlloc_v2", cuErrOutOfMemory)
	if err == nil || err.Error() != "cuda: cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY" || !errors.Is(err, errOutOfMemory) {
		t.Errorf("err = %v", err)
	}
}

// TestReducedPrecisionNeedsGemmEx checks that a cuBLAS without
// cublasGemmStridedBatchedEx refuses fp16 and bf16 (the products themselves are
// checked on the emulator: TestReducedPrecisionGEMMEmulated).
func TestReducedPrecisionNeedsGemmEx(t *testing.T) {
	for _, p := range []string{"fp16", "bf16"} {
		t.Run(p, func(t *testing.T) {
			d, _ := newFakeGPU(t)
			d.precision = p
			d.blas.gemmStridedBatchedEx = nil
			if err := d.setup(); err == nil || !strings.Contains(err.Error(), "cublasGemmStridedBatchedEx") {
				t.Errorf("setup without GemmEx: %v", err)
			}
		})
	}
}
