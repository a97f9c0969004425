package cuda

import (
	"math"
	"sync"
	"testing"

	"egg/tensor"
)

// The tests of this file need a GPU: they skip, naming Open's error, where there is
// none.

var (
	gpuOnce sync.Once
	gpuDev  *Device
	gpuErr  error
)

// gpuDevice opens GPU 0 once for all the tests.
func gpuDevice(t *testing.T) *Device {
	gpuOnce.Do(func() {
		gpuDev, gpuErr = Open(Options{})
		if gpuErr == nil {
			testCleanup = append(testCleanup, gpuDev.Close)
		}
	})
	if gpuErr != nil {
		t.Skip("cuda: no GPU here: " + gpuErr.Error())
	}
	t.Log(gpuDev.describe())
	return gpuDev
}

// TestKernelsMatchHost runs every Kernels method on the GPU against the host
// reference.
func TestKernelsMatchHost(t *testing.T) {
	checkKernels(t, gpuDevice(t))
}

// TestGPUAllocatorSteady checks that a loop over the same sizes stops allocating
// from the driver after its first iteration.
func TestGPUAllocatorSteady(t *testing.T) {
	d := gpuDevice(t)
	sizes := []int{1, 1000, 300000, 1 << 20, 5 << 20}
	var after1 int64
	for iter := 0; iter < 5; iter++ {
		var bufs []tensor.Buffer
		for _, n := range sizes {
			b, err := d.Alloc(n)
			if err != nil {
				t.Fatal(err)
			}
			d.Fill(b, n, 1)
			bufs = append(bufs, b)
		}
		for i, b := range bufs {
			d.Free(b, sizes[i])
		}
		if iter == 0 {
			after1 = d.Stats().DriverAllocs
		}
	}
	if s := d.Stats(); s.DriverAllocs != after1 {
		t.Errorf("driver allocations went from %d to %d after the first iteration (%+v)", after1, s.DriverAllocs, s)
	}
	free, total := d.MemInfo()
	if total == 0 || free > total {
		t.Errorf("MemInfo %d of %d", free, total)
	}
	if err := d.ReleaseCache(); err != nil {
		t.Fatal(err)
	}
	if s := d.Stats(); s.CachedBytes != 0 {
		t.Errorf("after ReleaseCache: %+v", s)
	}
}

// TestGPUBigIndex runs kernels past 2^31 elements (8.6 GB), where 32-bit indices
// would wrap.
func TestGPUBigIndex(t *testing.T) {
	d := gpuDevice(t)
	if testing.Short() {
		t.Skip("-short: no 8.6 GB buffers")
	}
	free, _ := d.MemInfo()
	big := uint64(1) << 31
	n := int(big) + 4099 // (a variable: the constant does not fit a 32-bit int)
	if free < 3*4*uint64(n)/2 {
		t.Skipf("%d bytes free", free)
	}
	x, err := d.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(x, n)
	d.Fill(x, n, 1.5)
	tail := make([]float32, 8)
	for i := range tail {
		tail[i] = float32(i)
	}
	d.Upload(x.At(n-8), tail)
	d.Map(tensor.MapScale, x, x, n, 2, 0)
	got := make([]float32, 8)
	d.Download(got, x.At(n-8))
	for i, v := range got {
		if v != 2*float32(i) {
			t.Fatalf("Map past 2^31: [n-8+%d] = %v, want %v", i, v, 2*float32(i))
		}
	}
	d.Download(got, x.At(int(big)-4))
	for _, v := range got {
		if v != 3 {
			t.Fatalf("Map around 2^31: %v", got)
		}
	}
	// The 64-bit strided kernel: the last 8 of the buffer, reversed, through a
	// negative stride from its end.
	y, err := d.Alloc(8)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(y, 8)
	d.Strided(y, x.At(n-1), []int{2, 4}, []int{-(n - 4), -1})
	d.Download(got, y)
	if got[0] != 14 || got[3] != 8 || got[4] != 1.5*2 {
		t.Errorf("Strided past 2^31: %v", got)
	}
}

// TestGPUTF32 checks that "tf32" opens and multiplies within TF32's precision.
func TestGPUTF32(t *testing.T) {
	gpuDevice(t)
	d, err := Open(Options{Precision: "tf32"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const m, n, k = 64, 64, 256
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for i := range a {
		a[i] = float32(math.Sin(float64(i)))
	}
	for i := range b {
		b[i] = float32(math.Cos(float64(i)))
	}
	bufs := make([]tensor.Buffer, 3)
	for i, s := range [][]float32{a, b, c} {
		if bufs[i], err = d.Alloc(len(s)); err != nil {
			t.Fatal(err)
		}
		d.Upload(bufs[i], s)
	}
	d.GEMM(false, false, m, n, k, 1, bufs[0], k, 0, bufs[1], n, 0, 0, bufs[2], n, 0, 1)
	d.Download(c, bufs[2])
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for l := 0; l < k; l++ {
				s += float64(a[i*k+l]) * float64(b[l*n+j])
			}
			if math.Abs(float64(c[i*n+j])-s) > 0.05 {
				t.Fatalf("C[%d,%d] = %v, want %v", i, j, c[i*n+j], s)
			}
		}
	}
	t.Log(d.Name())
}
