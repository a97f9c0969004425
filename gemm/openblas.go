//go:build (linux || darwin || freebsd) && (amd64 || arm64)

package gemm

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/ebitengine/purego"
)

// CBLAS enumerations.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

// openBLASPaths lists the shared objects tried, in order.
var openBLASPaths = []string{
	"libopenblas.so.0",
	"/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
	"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
	"/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
	"/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
	"/usr/lib64/libopenblas.so.0",
	"/usr/lib/libopenblas.so.0",
	"/usr/local/lib/libopenblas.so.0",
	"libopenblas.so",
	"libopenblas.dylib",
	"/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
	"/usr/local/opt/openblas/lib/libopenblas.dylib",
}

// openBLASLib is the process-wide loaded library.
type openBLASLib struct {
	path       string
	sgemm      func(order, transA, transB, m, n, k int32, alpha float32, a *float32, lda int32, b *float32, ldb int32, beta float32, c *float32, ldc int32)
	setThreads func(n int32)
	config     string // openblas_get_config(), e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64"
}

var (
	openBLASOnce sync.Once
	openBLAS0    *openBLASLib
	openBLASErr  error
	openBLASMu   sync.Mutex // serializes openblas_set_num_threads

	// openBLASSem bounds the calls in flight: OpenBLAS has a fixed table of
	// per-call buffers (2*NUM_THREADS entries in its build) and crashes when
	// too many threads call it at once. More concurrent calls than cores
	// would not run faster anyway.
	openBLASSem = make(chan struct{}, min(32, max(4, 2*runtime.NumCPU())))
)

func loadOpenBLAS() (*openBLASLib, error) {
	openBLASOnce.Do(func() { openBLAS0, openBLASErr = openLib(openBLASPaths) })
	return openBLAS0, openBLASErr
}

// openLib dlopens the first of paths that loads and has the needed symbols.
func openLib(paths []string) (*openBLASLib, error) {
	var errs []string
	for _, p := range paths {
		h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		lib := &openBLASLib{path: resolvedPath(p)}
		if err := registerOpenBLAS(h, lib); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		return lib, nil
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("cannot load OpenBLAS: no library names")
	}
	return nil, fmt.Errorf("cannot load OpenBLAS (tried %d names; first error: %s)", len(paths), errs[0])
}

// registerOpenBLAS binds the symbols, turning a missing one into an error
// (purego panics).
func registerOpenBLAS(h uintptr, lib *openBLASLib) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	if _, err := purego.Dlsym(h, "cblas_sgemm"); err != nil {
		return err
	}
	if _, err := purego.Dlsym(h, "openblas_set_num_threads"); err != nil {
		return err
	}
	purego.RegisterLibFunc(&lib.sgemm, h, "cblas_sgemm")
	purego.RegisterLibFunc(&lib.setThreads, h, "openblas_set_num_threads")
	if _, err := purego.Dlsym(h, "openblas_get_config"); err == nil {
		var getConfig func() string
		purego.RegisterLibFunc(&getConfig, h, "openblas_get_config")
		lib.config = strings.TrimSpace(getConfig())
	}
	return nil
}

// resolvedPath returns the file that the dynamic loader mapped for name
// (from /proc/self/maps, following symlinks and alternatives), or name.
func resolvedPath(name string) string {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return name
	}
	for _, line := range strings.Split(string(maps), "\n") {
		if i := strings.IndexByte(line, '/'); i >= 0 && strings.Contains(line[i:], "libopenblas") {
			return line[i:]
		}
	}
	return name
}

// openBLAS is the OpenBLAS-backed Impl.
type openBLAS struct {
	lib     *openBLASLib
	path    string
	threads int
	small   Impl // pure-Go serial implementation for tiny products
}

// NewOpenBLAS loads OpenBLAS (once per process) and sets its thread count to
// threads (<= 0 means runtime.NumCPU()). OpenBLAS' thread count is global to
// the process, so the last call wins. It returns an error when the shared
// library cannot be loaded.
func NewOpenBLAS(threads int) (Impl, error) {
	lib, err := loadOpenBLAS()
	if err != nil {
		return nil, err
	}
	threads = normThreads(threads)
	openBLASMu.Lock()
	lib.setThreads(int32(threads))
	openBLASMu.Unlock()
	return &openBLAS{lib: lib, path: lib.path, threads: threads, small: NewGo(1)}, nil
}

// describe returns the library path and its build configuration.
func (o *openBLAS) describe() string {
	if o.lib.config != "" {
		return o.path + ", " + o.lib.config
	}
	return o.path
}

// Name implements Impl.
func (o *openBLAS) Name() string { return "openblas" }

// Serial implements Impl. OpenBLAS cannot limit the threads of a single
// call, so the view is the same implementation.
func (o *openBLAS) Serial() Impl { return o }

// Sgemm implements Impl.
func (o *openBLAS) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	if m*n*k < smallFMAs {
		o.small.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	const maxInt32 = 1<<31 - 1
	if m > maxInt32 || n > maxInt32 || k > maxInt32 || lda > maxInt32 || ldb > maxInt32 || ldc > maxInt32 {
		panic("gemm: OpenBLAS sizes must fit in int32")
	}
	ta, tb := int32(cblasNoTrans), int32(cblasNoTrans)
	if transA {
		ta = cblasTrans
	}
	if transB {
		tb = cblasTrans
	}
	openBLASSem <- struct{}{}
	o.lib.sgemm(cblasRowMajor, ta, tb, int32(m), int32(n), int32(k), alpha, &a[0], int32(lda), &b[0], int32(ldb), beta, &c[0], int32(ldc))
	<-openBLASSem
}
