package checkpoint

import (
	"encoding/binary"
	"math"
	"sync"
	"unsafe"
)

// DType names a stored element type using safetensors' spelling: "F64", "F32", "F16", "BF16", "I64", "I32",
// "I16", "I8", "U8", "BOOL" (and, for reading only, "U16", "U32", "U64").
type DType string

// The element types this package reads. WriteSafetensors writes all of them except U16, U32 and U64.
const (
	F64  DType = "F64"  // IEEE binary64
	F32  DType = "F32"  // IEEE binary32
	F16  DType = "F16"  // IEEE binary16 (torch.float16)
	BF16 DType = "BF16" // bfloat16: the upper half of a binary32 (torch.bfloat16)
	I64  DType = "I64"  // signed 64-bit integer (torch.int64 / long)
	I32  DType = "I32"  // signed 32-bit integer
	I16  DType = "I16"  // signed 16-bit integer
	I8   DType = "I8"   // signed 8-bit integer
	U8   DType = "U8"   // unsigned 8-bit integer
	BOOL DType = "BOOL" // one byte per element, 0 is false, anything else true
	U16  DType = "U16"  // unsigned 16-bit integer (read only)
	U32  DType = "U32"  // unsigned 32-bit integer (read only)
	U64  DType = "U64"  // unsigned 64-bit integer (read only)
)

// Size returns the number of bytes one element of d occupies, or 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case F64, I64, U64:
		return 8
	case F32, I32, U32:
		return 4
	case F16, BF16, I16, U16:
		return 2
	case I8, U8, BOOL:
		return 1
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d == F64 || d == F32 || d == F16 || d == BF16 }

// Float16ToFloat32 converts an IEEE 754 binary16 bit pattern to float32. The conversion is exact for every
// input: subnormals become normal float32 values, infinities stay infinite and NaNs keep sign and payload.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: man * 2^-24; normalise
		e := uint32(127 - 15 + 1)
		for man&0x400 == 0 {
			man <<= 1
			e--
		}
		man &= 0x3ff
		return math.Float32frombits(sign | e<<23 | man<<13)
	case exp == 0x1f: // inf or nan
		return math.Float32frombits(sign | 0xff<<23 | man<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// Float32ToFloat16 converts f to the nearest IEEE 754 binary16 value, rounding ties to even. Values beyond the
// binary16 range become ±Inf, tiny values become subnormals or ±0, and NaN stays a (quiet) NaN with its sign.
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7c00 | 0x200 | uint16(man>>13)
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e >= 1 {
		h := uint32(e)<<10 | man>>13
		rem := man & 0x1fff
		if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
			h++ // a carry into the exponent is correct, including 0x7bff -> 0x7c00 (inf)
		}
		return sign | uint16(h)
	}
	if e < -10 {
		return sign
	}
	full := man | 0x800000
	shift := uint(14 - e) // 14..24
	h := full >> shift
	rem := full & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || (rem == half && h&1 == 1) {
		h++
	}
	return sign | uint16(h)
}

// BFloat16ToFloat32 converts a bfloat16 bit pattern to float32 (exact: bfloat16 is the upper half of a float32).
func BFloat16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToBFloat16 converts f to the nearest bfloat16 value, rounding ties to even; NaN stays a quiet NaN.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

var (
	f16TableOnce sync.Once
	f16Table     *[1 << 16]float32 // all binary16 values as float32
)

func f16ToF32Table() *[1 << 16]float32 {
	f16TableOnce.Do(func() {
		t := new([1 << 16]float32)
		for i := range t {
			t[i] = Float16ToFloat32(uint16(i))
		}
		f16Table = t
	})
	return f16Table
}

var le = binary.LittleEndian

// nativeLittle reports whether this machine stores numbers little-endian, which allows reading F32/F64/I64
// data straight into the destination slice.
var nativeLittle = func() bool {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	return b[0] == 1
}()

// asUint16s views the first n little-endian 16-bit elements of src as a []uint16 when this machine is
// little-endian and src is suitably aligned, and returns nil otherwise.
func asUint16s(src []byte, n int) []uint16 {
	if !nativeLittle || n == 0 || len(src) < 2*n || uintptr(unsafe.Pointer(unsafe.SliceData(src)))%2 != 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(src))), n)
}

// swapBytes reverses the byte order of every size-byte element of b in place.
func swapBytes(b []byte, size int) {
	switch size {
	case 2:
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	case 4:
		for i := 0; i+3 < len(b); i += 4 {
			b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
		}
	case 8:
		for i := 0; i+7 < len(b); i += 8 {
			b[i], b[i+1], b[i+2], b[i+3], b[i+4], b[i+5], b[i+6], b[i+7] =
				b[i+7], b[i+6], b[i+5], b[i+4], b[i+3], b[i+2], b[i+1], b[i]
		}
	}
}

// decodeF32 converts little-endian elements of type dt in src to dst (len(dst) == len(src)/dt.Size()).
func decodeF32(dt DType, src []byte, dst []float32) {
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case F16:
		t := f16ToF32Table()
		if u := asUint16s(src, len(dst)); u != nil {
			dst = dst[:len(u)]
			for i, h := range u {
				dst[i] = t[h]
			}
			return
		}
		for i := range dst {
			s := src[2*i : 2*i+2 : 2*i+2]
			dst[i] = t[uint16(s[0])|uint16(s[1])<<8]
		}
	case BF16:
		if u := asUint16s(src, len(dst)); u != nil {
			dst = dst[:len(u)]
			for i, h := range u {
				dst[i] = math.Float32frombits(uint32(h) << 16)
			}
			return
		}
		for i := range dst {
			s := src[2*i : 2*i+2 : 2*i+2]
			dst[i] = math.Float32frombits(uint32(s[0])<<16 | uint32(s[1])<<24)
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(src[8*i:])))
		}
	case I64:
		for i := range dst {
			dst[i] = float32(int64(le.Uint64(src[8*i:])))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(le.Uint32(src[4*i:])))
		}
	case I16:
		for i := range dst {
			dst[i] = float32(int16(le.Uint16(src[2*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = float32(int8(src[i]))
		}
	case U8:
		for i := range dst {
			dst[i] = float32(src[i])
		}
	case BOOL:
		for i := range dst {
			if src[i] != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	case U16:
		for i := range dst {
			dst[i] = float32(le.Uint16(src[2*i:]))
		}
	case U32:
		for i := range dst {
			dst[i] = float32(le.Uint32(src[4*i:]))
		}
	case U64:
		for i := range dst {
			dst[i] = float32(le.Uint64(src[8*i:]))
		}
	}
}

// decodeF64 is decodeF32 for float64 destinations; every conversion is exact except from I64/U64 beyond 2^53.
func decodeF64(dt DType, src []byte, dst []float64) {
	switch dt {
	case F64:
		for i := range dst {
			dst[i] = math.Float64frombits(le.Uint64(src[8*i:]))
		}
	case F32:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(le.Uint32(src[4*i:])))
		}
	case F16:
		t := f16ToF32Table()
		for i := range dst {
			dst[i] = float64(t[le.Uint16(src[2*i:])])
		}
	case BF16:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(uint32(le.Uint16(src[2*i:])) << 16))
		}
	case I64:
		for i := range dst {
			dst[i] = float64(int64(le.Uint64(src[8*i:])))
		}
	case I32:
		for i := range dst {
			dst[i] = float64(int32(le.Uint32(src[4*i:])))
		}
	case I16:
		for i := range dst {
			dst[i] = float64(int16(le.Uint16(src[2*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = float64(int8(src[i]))
		}
	case U8:
		for i := range dst {
			dst[i] = float64(src[i])
		}
	case BOOL:
		for i := range dst {
			if src[i] != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	case U16:
		for i := range dst {
			dst[i] = float64(le.Uint16(src[2*i:]))
		}
	case U32:
		for i := range dst {
			dst[i] = float64(le.Uint32(src[4*i:]))
		}
	case U64:
		for i := range dst {
			dst[i] = float64(le.Uint64(src[8*i:]))
		}
	}
}

// decodeI64 converts integer or boolean elements to int64. It returns the index of the first U64 element that
// does not fit an int64, or -1.
func decodeI64(dt DType, src []byte, dst []int64) int {
	switch dt {
	case I64:
		for i := range dst {
			dst[i] = int64(le.Uint64(src[8*i:]))
		}
	case I32:
		for i := range dst {
			dst[i] = int64(int32(le.Uint32(src[4*i:])))
		}
	case I16:
		for i := range dst {
			dst[i] = int64(int16(le.Uint16(src[2*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = int64(int8(src[i]))
		}
	case U8:
		for i := range dst {
			dst[i] = int64(src[i])
		}
	case BOOL:
		for i := range dst {
			if src[i] != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	case U16:
		for i := range dst {
			dst[i] = int64(le.Uint16(src[2*i:]))
		}
	case U32:
		for i := range dst {
			dst[i] = int64(le.Uint32(src[4*i:]))
		}
	case U64:
		for i := range dst {
			v := le.Uint64(src[8*i:])
			if v > math.MaxInt64 {
				return i
			}
			dst[i] = int64(v)
		}
	}
	return -1
}
