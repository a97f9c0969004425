package tensor

import (
	"fmt"
	"testing"
)

// TestAcceleratedStorage checks the coherence of host and device copies through
// the public surface: uploads, stale copies, views and collection.
func TestAcceleratedStorage(t *testing.T) {
	d := NewAccelerated(NewHostAccelerator(false), CPU(1))
	x := FromSlice(d, []float32{1, 2, 3, 4}, 2, 2)
	if got := x.Values(); fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("Values = %v", got)
	}
	// A device-side copy, then a host write through Data, then a device copy again.
	y := x.Clone()
	if y.st.hostOK || !y.st.devOK {
		t.Fatalf("Clone should leave the result on the device only: host %v dev %v", y.st.hostOK, y.st.devOK)
	}
	y.Data()[0] = 10
	z := y.Clone()
	if got := fmt.Sprint(z.Values()); got != "[10 2 3 4]" {
		t.Fatalf("a write through Data was lost: %v", got)
	}
	// Views share storage.
	r := Reshape(z, 4)
	r.SetValues([]float32{5, 6, 7, 8})
	if got := fmt.Sprint(z.Values()); got != "[5 6 7 8]" {
		t.Fatalf("a view's SetValues did not reach the viewed tensor: %v", got)
	}
	if got := New(d, 3).Values(); fmt.Sprint(got) != "[0 0 0]" {
		t.Fatalf("New = %v, want zeros", got)
	}
	if got := Full(d, 2.5, 1).Item(); got != 2.5 {
		t.Fatalf("Full: %v", got)
	}
	// An op without a device kernel runs on the host and its result goes back on use.
	s := Sum(Mul(x, x), false)
	if got := s.Item(); got != 30 {
		t.Fatalf("Sum(x*x) = %v, want 30", got)
	}
	if d.String() != "hostaccel" {
		t.Fatalf("String = %q", d.String())
	}
}

// TestCatch checks that a device error becomes an error and other panics go on.
func TestCatch(t *testing.T) {
	err := Catch(func() { panic(&DeviceError{Op: "alloc", Err: fmt.Errorf("out of memory")}) })
	if err == nil || err.Error() != "tensor: device: alloc: out of memory" {
		t.Fatalf("Catch = %v", err)
	}
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want the original panic", r)
		}
	}()
	_ = Catch(func() { panic("boom") })
}
