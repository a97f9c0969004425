package tensor

// SetTestDevice replaces the device the package's tests run on (for
// device_test.go, an external test that can open a GPU).
func SetTestDevice(d *Device) { testDev = d }
