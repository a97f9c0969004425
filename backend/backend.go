// Package backend opens the device egg computes on: the CPU, or a CUDA GPU
// through package cuda, chosen by a spec such as "auto", "cpu", "cuda" or
// "cuda:1".
//
// "auto" takes the first GPU when its driver and libraries load and the CPU
// otherwise; Open says which it chose and why, in one line, as package gemm does
// for its matrix product.
package backend

import (
	"fmt"
	"strconv"
	"strings"

	"egg/cuda"
	"egg/tensor"
)

// Options are the settings of a device.
type Options struct {
	// Threads is the CPU threads of the host kernels (0: all cores).
	Threads int
	// Precision is the GPU's matrix precision: "fp32" (default, no TF32), "tf32",
	// "fp16" or "bf16" (matrix products and convolutions only; see package cuda).
	Precision string
}

// Spec is a parsed device spec.
type Spec struct {
	Kind    string // "auto", "cpu" or "cuda"
	Ordinal int    // the GPU, for "cuda"
}

// Parse reads a device spec: auto, cpu, cuda or cuda:N.
func Parse(s string) (Spec, error) {
	switch s {
	case "", "auto":
		return Spec{Kind: "auto"}, nil
	case "cpu":
		return Spec{Kind: "cpu"}, nil
	case "cuda", "gpu":
		return Spec{Kind: "cuda"}, nil
	}
	if rest, ok := strings.CutPrefix(s, "cuda:"); ok {
		n, err := strconv.Atoi(rest)
		if err == nil && n >= 0 {
			return Spec{Kind: "cuda", Ordinal: n}, nil
		}
	}
	return Spec{}, fmt.Errorf("backend: device %q: want auto, cpu, cuda or cuda:N", s)
}

// CheckPrecision returns an error unless p is a precision Open takes.
func CheckPrecision(p string) error {
	switch p {
	case "", "fp32", "tf32", "fp16", "bf16":
		return nil
	}
	return fmt.Errorf("backend: precision %q: want fp32, tf32, fp16 or bf16", p)
}

// Open opens the device of spec and returns it with one line for the log that
// names it and, for auto, why it was chosen.
func Open(spec Spec, o Options) (*tensor.Device, string, error) {
	if err := CheckPrecision(o.Precision); err != nil {
		return nil, "", err
	}
	host := tensor.CPU(o.Threads)
	if spec.Kind == "cpu" {
		return host, "device: " + host.String(), nil
	}
	g, err := cuda.Open(cuda.Options{Ordinal: spec.Ordinal, Precision: o.Precision})
	if err != nil {
		if spec.Kind == "cuda" {
			return nil, "", fmt.Errorf("backend: cuda:%d: %w", spec.Ordinal, err)
		}
		return host, fmt.Sprintf("device: %s (no GPU: %s)", host, shortReason(err)), nil
	}
	dev := tensor.NewAccelerated(g, host)
	p := o.Precision
	if p == "" {
		p = "fp32"
	}
	return dev, fmt.Sprintf("device: %s, %s, ops without GPU kernels on %s", dev, p, host), nil
}

// shortReason cuts a library-search error to what failed, for the one log line
// of auto (--device cuda prints the whole of it, with where egg looked).
func shortReason(err error) string {
	r := err.Error()
	if i := strings.Index(r, " found in "); i > 0 {
		return r[:i] + " found; --device cuda says where egg looked"
	}
	return r
}
