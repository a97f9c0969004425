package gemm

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"unsafe"
)

// guarded returns a slice of n float32 that ends right before an
// inaccessible page, so that any read or write past its end faults, and a
// function that unmaps it.
func guarded(t *testing.T, n int) ([]float32, func()) {
	page := syscall.Getpagesize()
	size := (n*4+page-1)/page*page + page
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mprotect(mem[size-page:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	end := size - page
	f := unsafe.Slice((*float32)(unsafe.Pointer(&mem[end-n*4])), n)
	return f, func() { syscall.Munmap(mem) }
}

// TestGuardPages checks that no implementation touches memory past the end
// of A, B or C (the assembly packers copy 8 floats at a time).
func TestGuardPages(t *testing.T) {
	shapes := [][3]int{{6, 16, 8}, {12, 32, 16}, {18, 48, 9}, {7, 17, 13}, {144, 64, 256}, {150, 70, 300}, {36, 1040, 24}, {66, 33, 517}}
	for _, im := range testImpls(t) {
		rng := rand.New(rand.NewPCG(9, 9))
		for _, sh := range shapes {
			m, n, k := sh[0], sh[1], sh[2]
			for tr := 0; tr < 4; tr++ {
				tA, tB := tr&1 != 0, tr&2 != 0
				ar, ac := m, k
				if tA {
					ar, ac = k, m
				}
				br, bc := k, n
				if tB {
					br, bc = n, k
				}
				a, fa := guarded(t, ar*ac)
				b, fb := guarded(t, br*bc)
				c, fc := guarded(t, m*n)
				for i := range a {
					a[i] = rng.Float32()
				}
				for i := range b {
					b[i] = rng.Float32()
				}
				for _, beta := range []float32{0, 1} {
					want, mag := reference(tA, tB, m, n, k, 1, a, ac, b, bc, beta, c, n)
					im.impl.Sgemm(tA, tB, m, n, k, 1, a, ac, b, bc, beta, c, n)
					for i, w := range want {
						if d := float64(c[i]) - w; d > 1e-5*float64(k)*mag[i] || -d > 1e-5*float64(k)*mag[i] {
							t.Fatalf("%s %v m%d n%d k%d: C[%d] = %g, want %g", im.name, tr, m, n, k, i, c[i], w)
						}
					}
				}
				fa()
				fb()
				fc()
			}
		}
	}
}
