//go:build !(linux && (amd64 || arm64))

package cuda

import (
	"errors"
	"runtime"
)

// dlSupported reports whether this build can load shared libraries.
const dlSupported = false

var errNoDlopen = errors.New("cuda: the CUDA backend runs on linux/amd64 and linux/arm64, not " +
	runtime.GOOS + "/" + runtime.GOARCH)

// dlopen fails: this platform has no loader for the CUDA libraries.
func dlopen(path string) (uintptr, error) { return 0, errNoDlopen }

// bind fails: this platform has no loader for the CUDA libraries.
func bind(h uintptr, fptr any, names ...string) error { return errNoDlopen }
