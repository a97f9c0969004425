package backend

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Spec
		bad  bool
	}{
		{"", Spec{Kind: "auto"}, false},
		{"auto", Spec{Kind: "auto"}, false},
		{"cpu", Spec{Kind: "cpu"}, false},
		{"cuda", Spec{Kind: "cuda"}, false},
		{"gpu", Spec{Kind: "cuda"}, false},
		{"cuda:3", Spec{Kind: "cuda", Ordinal: 3}, false},
		{"cuda:-1", Spec{}, true},
		{"cuda:", Spec{}, true},
		{"metal", Spec{}, true},
	} {
		got, err := Parse(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, error %v", c.in, got, err, c.want, c.bad)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "backend: ") {
			t.Errorf("Parse(%q): error %q lacks the package prefix", c.in, err)
		}
	}
}

func TestOpen(t *testing.T) {
	for _, p := range []string{"", "fp32", "tf32", "fp16", "bf16"} {
		if err := CheckPrecision(p); err != nil {
			t.Errorf("CheckPrecision(%q): %v", p, err)
		}
	}
	if err := CheckPrecision("fp8"); err == nil {
		t.Error("CheckPrecision(fp8) accepted")
	}
	dev, line, err := Open(Spec{Kind: "cpu"}, Options{Threads: 1})
	if err != nil || dev.Accelerator() != nil || !strings.HasPrefix(line, "device: cpu(") {
		t.Fatalf("Open(cpu) = %v, %q, %v", dev, line, err)
	}
	// auto always opens something: the GPU, or the CPU with the reason in the line.
	dev, line, err = Open(Spec{Kind: "auto"}, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if dev.Accelerator() == nil && !strings.Contains(line, "no GPU: cuda:") {
		t.Errorf("auto fell back to the CPU without saying why: %q", line)
	}
	if _, _, err := Open(Spec{Kind: "cpu"}, Options{Precision: "fp8"}); err == nil {
		t.Error("Open with precision fp8 accepted")
	}
}
