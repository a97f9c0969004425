// Package testdevice gives tests the device named by EGG_TEST_DEVICE, so that one
// test suite checks the CPU, the host reference of the device seam and a GPU:
//
//	(unset), cpu   the CPU on 2 threads
//	hostaccel      host memory behind the device seam, every op on the host
//	hostkernels    host memory with the reference kernels (tensor.NewHostAccelerator)
//	cuda, cuda:N   a CUDA GPU (the tests fail when none opens: asked for, not optional)
package testdevice

import (
	"fmt"
	"os"

	"egg/backend"
	"egg/tensor"
)

// Get returns the device of EGG_TEST_DEVICE, or panics naming what is wrong.
func Get() *tensor.Device {
	v := os.Getenv("EGG_TEST_DEVICE")
	switch v {
	case "", "cpu":
		return tensor.CPU(2)
	case "hostaccel":
		return tensor.NewAccelerated(tensor.NewHostAccelerator(false), tensor.CPU(2))
	case "hostkernels":
		return tensor.NewAccelerated(tensor.NewHostAccelerator(true), tensor.CPU(2))
	}
	spec, err := backend.Parse(v)
	if err != nil || spec.Kind != "cuda" {
		panic(fmt.Sprintf("testdevice: EGG_TEST_DEVICE=%q: want cpu, hostaccel, hostkernels, cuda or cuda:N", v))
	}
	dev, _, err := backend.Open(spec, backend.Options{Threads: 2, Precision: os.Getenv("EGG_TEST_PRECISION")})
	if err != nil {
		panic(fmt.Sprintf("testdevice: EGG_TEST_DEVICE=%s: %v", v, err))
	}
	return dev
}
