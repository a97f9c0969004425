//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"

	"github.com/ebitengine/purego"
)

// dlSupported reports whether this build can load shared libraries.
const dlSupported = true

// dlopen loads a shared object by path, or by soname through the dynamic loader's
// search, with its symbols global (so that libcublas finds the libcublasLt loaded
// beside it).
func dlopen(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// bind points the function variable *fptr at the first of names that library h
// exports.
func bind(h uintptr, fptr any, names ...string) (err error) {
	for _, n := range names {
		addr, e := purego.Dlsym(h, n)
		if e != nil || addr == 0 {
			continue
		}
		defer func() {
			if r := recover(); r != nil { // purego rejects a signature it cannot call
				err = fmt.Errorf("%s: %v", n, r)
			}
		}()
		purego.RegisterFunc(fptr, addr)
		return nil
	}
	return fmt.Errorf("no symbol %s", names[0])
}
