package cuda

import (
	_ "embed"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"egg/tensor"
)

//go:generate sh gen.sh

// kernelsPTX is kernels.cu compiled by gen.sh (clang-14, sm_80 PTX); the driver
// JIT-compiles it for the GPU when a Device opens.
//
//go:embed kernels.ptx
var kernelsPTX string

// kernel is one __global__ function of the module.
type kernel struct {
	name       string
	fn         uintptr // CUfunction
	params     []int   // the size in bytes of each parameter, from the PTX
	maxThreads int     // the most threads a block (.maxntid), 1024 if the PTX sets none
}

// ptxEntry is what the package reads of a kernel's PTX declaration.
type ptxEntry struct {
	params     []int
	maxThreads int
}

// ptxEntries returns the parameter sizes and thread limits of every .entry of a
// PTX module.
func ptxEntries(ptx string) (map[string]ptxEntry, error) {
	out := map[string]ptxEntry{}
	lines := strings.Split(ptx, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		j := strings.Index(l, ".entry ")
		if j < 0 || strings.HasPrefix(l, "//") {
			continue
		}
		head := strings.TrimSpace(l[j+len(".entry "):])
		name, rest, _ := strings.Cut(head, "(")
		name = strings.TrimSpace(name)
		sizes := []int{}
		if !strings.HasPrefix(strings.TrimSpace(rest), ")") {
			for i++; i < len(lines); i++ {
				p := strings.TrimSpace(lines[i])
				if strings.HasPrefix(p, ")") {
					break
				}
				size, err := ptxParamSize(p)
				if err != nil {
					return nil, fmt.Errorf("cuda: PTX entry %s: %v", name, err)
				}
				sizes = append(sizes, size)
			}
		}
		e := ptxEntry{params: sizes, maxThreads: 1024}
		// Directives between the parameters and the body: .maxntid x, y, z.
		for j := i + 1; j < len(lines) && j < i+8; j++ {
			p := strings.TrimSpace(lines[j])
			if strings.HasPrefix(p, "{") {
				break
			}
			if rest, ok := strings.CutPrefix(p, ".maxntid"); ok {
				n := 1
				for _, f := range strings.Split(rest, ",") {
					v, err := strconv.Atoi(strings.TrimSpace(f))
					if err != nil {
						return nil, fmt.Errorf("cuda: PTX entry %s: bad %q", name, p)
					}
					n *= v
				}
				e.maxThreads = n
			}
		}
		out[name] = e
	}
	return out, nil
}

// ptxParamSize returns the size of one PTX parameter declaration, such as
// ".param .u64 k_param_0," or ".param .align 8 .b8 k_param_6[48]".
func ptxParamSize(decl string) (int, error) {
	f := strings.Fields(strings.TrimSuffix(decl, ","))
	if len(f) < 3 || f[0] != ".param" {
		return 0, fmt.Errorf("unexpected parameter line %q", decl)
	}
	typ, name := f[1], f[len(f)-1]
	if typ == ".align" && len(f) >= 5 {
		typ = f[3]
	}
	elem := 0
	switch typ {
	case ".u8", ".s8", ".b8":
		elem = 1
	case ".u16", ".s16", ".b16", ".f16":
		elem = 2
	case ".u32", ".s32", ".b32", ".f32":
		elem = 4
	case ".u64", ".s64", ".b64", ".f64":
		elem = 8
	default:
		return 0, fmt.Errorf("unexpected parameter type in %q", decl)
	}
	if i := strings.IndexByte(name, '['); i >= 0 && strings.HasSuffix(name, "]") {
		n, err := strconv.Atoi(name[i+1 : len(name)-1])
		if err != nil {
			return 0, fmt.Errorf("bad array size in %q", decl)
		}
		return elem * n, nil
	}
	return elem, nil
}

// dims6 is a kernel's Dims argument (struct Dims in kernels.cu): six 64-bit sizes or
// strides, passed by value.
type dims6 [6]int64

// kernelArgs is a packed kernel argument list: ptrs is cuLaunchKernel's
// kernelParams, an array of pointers to each argument's value; the values live in
// slots, each argument in its own 8-byte-aligned slots (a 4-byte value in the first
// four bytes of its slot).
type kernelArgs struct {
	slots []uint64
	ptrs  []unsafe.Pointer
	sizes []int // the size in bytes of each argument
}

// packArgs lays out a kernel's arguments. It takes uint64, int64, int, uintptr and
// tensor.Buffer as 8-byte values (a C long long or pointer), int32, uint32 and
// float32 as 4-byte values, and dims6 as a 48-byte struct.
func packArgs(args ...any) (*kernelArgs, error) {
	sizes := make([]int, len(args))
	n := 0
	for i, a := range args {
		switch a.(type) {
		case uint64, int64, int, uintptr, tensor.Buffer:
			sizes[i] = 8
		case int32, uint32, float32:
			sizes[i] = 4
		case dims6:
			sizes[i] = 48
		default:
			return nil, fmt.Errorf("cuda: kernel argument %d has type %T", i, a)
		}
		n += (sizes[i] + 7) / 8
	}
	ka := &kernelArgs{slots: make([]uint64, max(n, 1)), ptrs: make([]unsafe.Pointer, max(len(args), 1)), sizes: sizes}
	k := 0
	for i, a := range args {
		s := &ka.slots[k]
		switch v := a.(type) {
		case uint64:
			*s = v
		case int64:
			*s = uint64(v)
		case int:
			*s = uint64(int64(v))
		case uintptr:
			*s = uint64(v)
		case tensor.Buffer:
			*s = uint64(v)
		case int32:
			*(*int32)(unsafe.Pointer(s)) = v
		case uint32:
			*(*uint32)(unsafe.Pointer(s)) = v
		case float32:
			*(*float32)(unsafe.Pointer(s)) = v
		case dims6:
			for j, x := range v {
				ka.slots[k+j] = uint64(x)
			}
		}
		ka.ptrs[i] = unsafe.Pointer(s)
		k += (sizes[i] + 7) / 8
	}
	return ka, nil
}

// check reports whether the arguments match the kernel's parameters in number and
// size: a mismatch would read garbage on the device.
func (a *kernelArgs) check(k *kernel) error {
	if k == nil {
		return fmt.Errorf("cuda: no kernel")
	}
	if len(a.sizes) != len(k.params) {
		return fmt.Errorf("cuda: %s takes %d arguments, got %d", k.name, len(k.params), len(a.sizes))
	}
	for i, s := range a.sizes {
		if s != k.params[i] {
			return fmt.Errorf("cuda: %s: argument %d has %d bytes, the kernel's parameter %d", k.name, i, s, k.params[i])
		}
	}
	return nil
}

// Launch shapes: blocks of blockThreads threads; grids capped (the kernels loop).
const (
	blockThreads = 256
	maxGridX     = 65535 * 8
	maxGridY     = 65535
)

// grid1 covers n elements with a 1-D grid.
func grid1(n int) (grid, block [3]uint32) {
	g := min(max((n+blockThreads-1)/blockThreads, 1), maxGridX)
	return [3]uint32{uint32(g), 1, 1}, [3]uint32{blockThreads, 1, 1}
}

// grid2 covers rows x cols with a 2-D grid: columns along x in blocks no wider than
// needed (at least a warp), rows along y.
func grid2(rows, cols int) (grid, block [3]uint32) {
	bx := blockThreads
	for bx > 32 && bx/2 >= cols {
		bx /= 2
	}
	by := blockThreads / bx
	gx := min(max((cols+bx-1)/bx, 1), maxGridY)
	gy := min(max((rows+by-1)/by, 1), maxGridY)
	return [3]uint32{uint32(gx), uint32(gy), 1}, [3]uint32{uint32(bx), uint32(by), 1}
}

// gridRows gives each of rows one block of threads threads (a power of two).
func gridRows(rows, threads int) (grid, block [3]uint32) {
	g := min(max(rows, 1), maxGridX)
	return [3]uint32{uint32(g), 1, 1}, [3]uint32{uint32(threads), 1, 1}
}

// pow2Threads returns the smallest power of two in [32, limit] that is at least n
// (limit if none is).
func pow2Threads(n, limit int) int {
	t := 32
	for t < limit && t < n {
		t *= 2
	}
	return t
}

// launch queues kernel name on the stream, panicking with a *tensor.DeviceError when
// the arguments do not fit it or the driver refuses. The caller holds the device.
func (d *Device) launch(name string, grid, block [3]uint32, shared uint32, args ...any) {
	k := d.kernels[name]
	err := error(nil)
	if k == nil {
		err = fmt.Errorf("cuda: no kernel %s in the module", name)
	}
	var a *kernelArgs
	if err == nil {
		a, err = packArgs(args...)
	}
	if err == nil {
		err = a.check(k)
	}
	if t := int(block[0]) * int(block[1]) * int(block[2]); err == nil && t > k.maxThreads {
		err = fmt.Errorf("cuda: %s takes at most %d threads a block, launched with %d", name, k.maxThreads, t)
	}
	if err == nil {
		err = d.launchPacked(k, grid, block, shared, a)
	}
	if err != nil {
		panic(&tensor.DeviceError{Op: "launch " + name, Err: err})
	}
}

// launchPacked calls cuLaunchKernel with the packed arguments, pinned for the call
// (the driver copies the values before it returns).
func (d *Device) launchPacked(k *kernel, grid, block [3]uint32, shared uint32, a *kernelArgs) error {
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&a.slots[0])
	pin.Pin(&a.ptrs[0])
	r := d.drv.cuLaunchKernel(k.fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], shared, d.stream, &a.ptrs[0], nil)
	return d.drv.err("cuLaunchKernel("+k.name+")", r)
}
