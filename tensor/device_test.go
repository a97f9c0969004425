package tensor_test

import (
	"os"
	"strings"

	"egg/internal/testdevice"
	"egg/tensor"
)

// With EGG_TEST_DEVICE=cuda the package's tests run on the GPU: the device is
// opened here, since package tensor's own test files cannot import package cuda.
func init() {
	if strings.HasPrefix(os.Getenv("EGG_TEST_DEVICE"), "cuda") {
		tensor.SetTestDevice(testdevice.Get())
	}
}
