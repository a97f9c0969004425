package main

import (
	"errors"
	"strings"
	"testing"

	"egg/cuda"
)

// TestDeviceFlags checks --device and --precision: a bad spec is a usage error
// (exit 2); asking for a GPU where none loads is a run error (exit 1) that says
// how to go on; the CPU always opens.
func TestDeviceFlags(t *testing.T) {
	_, gpuErr := cuda.Open(cuda.Options{})
	cases := []struct {
		name, device, precision string
		usage, fails            bool
		want                    string // in the error, or in the device's name
	}{
		{"cpu", "cpu", "fp32", false, false, "cpu("},
		{"auto", "auto", "", false, false, ""},
		{"unknown device", "tpu", "fp32", true, true, `device "tpu"`},
		{"bad ordinal", "cuda:x", "fp32", true, true, "cuda:N"},
		{"unknown precision", "cpu", "fp8", true, true, `precision "fp8"`},
		{"cuda without a GPU", "cuda", "fp32", false, true, "--device cpu"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.device == "cuda" && gpuErr == nil {
				t.Skip("a GPU opens here")
			}
			g := &globalOptions{threads: 1, devSpec: c.device, precision: c.precision}
			dev, err := g.device()
			if c.fails {
				var ue usageError
				if err == nil || errors.As(err, &ue) != c.usage || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v (usage %v), want one containing %q with usage %v", err, errors.As(err, &ue), c.want, c.usage)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error of more than one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(dev.String(), c.want) {
				t.Errorf("device %s, want one containing %q", dev, c.want)
			}
			if again, _ := g.device(); again != dev {
				t.Error("a second call opened another device")
			}
		})
	}
}
