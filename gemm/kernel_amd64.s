//go:build amd64 && !purego

#include "textflag.h"

// One k step of the 6x16 micro-kernel: B row (16 floats) in Y12:Y13, the
// 6 A values broadcast in turn into Y14/Y15, accumulators Y0..Y11.
#define STEP(ao, bo) \
	VMOVUPS      bo(DI), Y12; \
	VMOVUPS      bo+32(DI), Y13; \
	VBROADCASTSS ao(SI), Y14; \
	VFMADD231PS  Y12, Y14, Y0; \
	VFMADD231PS  Y13, Y14, Y1; \
	VBROADCASTSS ao+4(SI), Y15; \
	VFMADD231PS  Y12, Y15, Y2; \
	VFMADD231PS  Y13, Y15, Y3; \
	VBROADCASTSS ao+8(SI), Y14; \
	VFMADD231PS  Y12, Y14, Y4; \
	VFMADD231PS  Y13, Y14, Y5; \
	VBROADCASTSS ao+12(SI), Y15; \
	VFMADD231PS  Y12, Y15, Y6; \
	VFMADD231PS  Y13, Y15, Y7; \
	VBROADCASTSS ao+16(SI), Y14; \
	VFMADD231PS  Y12, Y14, Y8; \
	VFMADD231PS  Y13, Y14, Y9; \
	VBROADCASTSS ao+20(SI), Y15; \
	VFMADD231PS  Y12, Y15, Y10; \
	VFMADD231PS  Y13, Y15, Y11

// C row update with beta: row (DX) += beta*C, stored back.
#define ROWBETA(r0, r1) \
	VFMADD231PS (DX), Y15, r0; \
	VFMADD231PS 32(DX), Y15, r1; \
	VMOVUPS     r0, (DX); \
	VMOVUPS     r1, 32(DX); \
	ADDQ        R8, DX

#define ROWSTORE(r0, r1) \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 32(DX); \
	ADDQ    R8, DX

// func kernelAVX2(k int, a, b, c *float32, ldc int, alpha, beta float32)
TEXT ·kernelAVX2(SB), NOSPLIT, $0-48
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	// Prefetch the C tile (each 64-byte row may straddle two lines).
	MOVQ       DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   tail

loop4:
	STEP(0, 0)
	STEP(24, 64)
	STEP(48, 128)
	STEP(72, 192)
	ADDQ $96, SI
	ADDQ $256, DI
	DECQ BX
	JNZ  loop4

tail:
	ANDQ $3, CX
	JZ   done

loop1:
	STEP(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1

done:
	VBROADCASTSS alpha+40(FP), Y14
	VMULPS       Y14, Y0, Y0
	VMULPS       Y14, Y1, Y1
	VMULPS       Y14, Y2, Y2
	VMULPS       Y14, Y3, Y3
	VMULPS       Y14, Y4, Y4
	VMULPS       Y14, Y5, Y5
	VMULPS       Y14, Y6, Y6
	VMULPS       Y14, Y7, Y7
	VMULPS       Y14, Y8, Y8
	VMULPS       Y14, Y9, Y9
	VMULPS       Y14, Y10, Y10
	VMULPS       Y14, Y11, Y11

	MOVL  beta+44(FP), AX
	TESTL $0x7fffffff, AX
	JZ    nobeta

	VBROADCASTSS beta+44(FP), Y15
	ROWBETA(Y0, Y1)
	ROWBETA(Y2, Y3)
	ROWBETA(Y4, Y5)
	ROWBETA(Y6, Y7)
	ROWBETA(Y8, Y9)
	ROWBETA(Y10, Y11)
	VZEROUPPER
	RET

nobeta:
	ROWSTORE(Y0, Y1)
	ROWSTORE(Y2, Y3)
	ROWSTORE(Y4, Y5)
	ROWSTORE(Y6, Y7)
	ROWSTORE(Y8, Y9)
	ROWSTORE(Y10, Y11)
	VZEROUPPER
	RET

// func packBN16AVX(dst, src *float32, ldb, k int)
TEXT ·packBN16AVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	SHLQ $2, R8
	MOVQ k+24(FP), CX

bn16loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    R8, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     bn16loop
	VZEROUPPER
	RET

// Load an 8x8 block for transposition: rows 0-3 start at R11 and rows 4-7
// at R12 (stride R8, R10 = 3*R8), columns at byte offset off. Each register
// pairs the same 4 columns of rows r and r+4: Y0..Y3 = cols 0-3 of rows
// (0,4),(1,5),(2,6),(3,7) and Y4..Y7 = cols 4-7, so that the transpose
// needs no lane-crossing shuffles (slow on AMD Zen).
#define LOAD8X8(off) \
	VMOVUPS     off(R11), X0; \
	VINSERTF128 $1, off(R12), Y0, Y0; \
	VMOVUPS     off(R11)(R8*1), X1; \
	VINSERTF128 $1, off(R12)(R8*1), Y1, Y1; \
	VMOVUPS     off(R11)(R8*2), X2; \
	VINSERTF128 $1, off(R12)(R8*2), Y2, Y2; \
	VMOVUPS     off(R11)(R10*1), X3; \
	VINSERTF128 $1, off(R12)(R10*1), Y3, Y3; \
	VMOVUPS     off+16(R11), X4; \
	VINSERTF128 $1, off+16(R12), Y4, Y4; \
	VMOVUPS     off+16(R11)(R8*1), X5; \
	VINSERTF128 $1, off+16(R12)(R8*1), Y5, Y5; \
	VMOVUPS     off+16(R11)(R8*2), X6; \
	VINSERTF128 $1, off+16(R12)(R8*2), Y6, Y6; \
	VMOVUPS     off+16(R11)(R10*1), X7; \
	VINSERTF128 $1, off+16(R12)(R10*1), Y7, Y7

// Like LOAD8X8 for 6 rows: rows 0-3 at R11, row 4 at R12 and row 5 at R13;
// rows 6 and 7 repeat row 5.
#define LOAD6X8(off) \
	VMOVUPS     off(R11), X0; \
	VINSERTF128 $1, off(R12), Y0, Y0; \
	VMOVUPS     off(R11)(R8*1), X1; \
	VINSERTF128 $1, off(R13), Y1, Y1; \
	VMOVUPS     off(R11)(R8*2), X2; \
	VINSERTF128 $1, off(R13), Y2, Y2; \
	VMOVUPS     off(R11)(R10*1), X3; \
	VINSERTF128 $1, off(R13), Y3, Y3; \
	VMOVUPS     off+16(R11), X4; \
	VINSERTF128 $1, off+16(R12), Y4, Y4; \
	VMOVUPS     off+16(R11)(R8*1), X5; \
	VINSERTF128 $1, off+16(R13), Y5, Y5; \
	VMOVUPS     off+16(R11)(R8*2), X6; \
	VINSERTF128 $1, off+16(R13), Y6, Y6; \
	VMOVUPS     off+16(R11)(R10*1), X7; \
	VINSERTF128 $1, off+16(R13), Y7, Y7

// Transpose the block loaded by LOAD8X8: afterwards Yq holds column q
// (rows 0..7) for q = 0..7. Uses Y8..Y15.
#define TRANSPOSE8X8 \
	VUNPCKLPS Y1, Y0, Y8; \
	VUNPCKHPS Y1, Y0, Y9; \
	VUNPCKLPS Y3, Y2, Y10; \
	VUNPCKHPS Y3, Y2, Y11; \
	VUNPCKLPS Y5, Y4, Y12; \
	VUNPCKHPS Y5, Y4, Y13; \
	VUNPCKLPS Y7, Y6, Y14; \
	VUNPCKHPS Y7, Y6, Y15; \
	VSHUFPS   $0x44, Y10, Y8, Y0; \
	VSHUFPS   $0xEE, Y10, Y8, Y1; \
	VSHUFPS   $0x44, Y11, Y9, Y2; \
	VSHUFPS   $0xEE, Y11, Y9, Y3; \
	VSHUFPS   $0x44, Y14, Y12, Y4; \
	VSHUFPS   $0xEE, Y14, Y12, Y5; \
	VSHUFPS   $0x44, Y15, Y13, Y6; \
	VSHUFPS   $0xEE, Y15, Y13, Y7

// Store the 8 transposed columns Y0..Y7 at off(DI) with stride st bytes.
#define STORE8(off, st) \
	VMOVUPS Y0, off(DI); \
	VMOVUPS Y1, off+st(DI); \
	VMOVUPS Y2, off+2*st(DI); \
	VMOVUPS Y3, off+3*st(DI); \
	VMOVUPS Y4, off+4*st(DI); \
	VMOVUPS Y5, off+5*st(DI); \
	VMOVUPS Y6, off+6*st(DI); \
	VMOVUPS Y7, off+7*st(DI)

// func packBT16AVX(dst, src *float32, ldb, k8 int)
// Columns are taken 16 at a time, so that every 64-byte line of the 16
// source rows is used completely while it is in L1: with a power-of-two
// ldb all rows map to the same cache set.
TEXT ·packBT16AVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R10
	MOVQ k8+24(FP), CX
	MOVQ CX, BX
	SHRQ $1, BX
	JZ   bt16tail

bt16loop:
	MOVQ SI, R11
	LEAQ (R11)(R8*4), R12
	LOAD8X8(0)
	TRANSPOSE8X8
	STORE8(0, 64)
	LOAD8X8(32)
	TRANSPOSE8X8
	STORE8(512, 64)
	LEAQ (R12)(R8*4), R11
	LEAQ (R11)(R8*4), R12
	LOAD8X8(0)
	TRANSPOSE8X8
	STORE8(32, 64)
	LOAD8X8(32)
	TRANSPOSE8X8
	STORE8(544, 64)
	ADDQ $64, SI
	ADDQ $1024, DI
	DECQ BX
	JNZ  bt16loop

bt16tail:
	ANDQ $1, CX
	JZ   bt16done
	MOVQ SI, R11
	LEAQ (R11)(R8*4), R12
	LOAD8X8(0)
	TRANSPOSE8X8
	STORE8(0, 64)
	LEAQ (R12)(R8*4), R11
	LEAQ (R11)(R8*4), R12
	LOAD8X8(0)
	TRANSPOSE8X8
	STORE8(32, 64)

bt16done:
	VZEROUPPER
	RET

// func packAN6AVX(dst, src *float32, lda, k8 int)
// The 8-float stores of consecutive columns overlap (the 2 extra floats are
// rows 6 and 7, copies of row 5) and the last one writes 2 floats past the
// 48*k8 packed ones. Columns are taken 16 at a time as in packBT16AVX.
TEXT ·packAN6AVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), R11
	MOVQ lda+16(FP), R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R10
	LEAQ (R11)(R8*4), R12
	LEAQ (R12)(R8*1), R13
	MOVQ k8+24(FP), CX
	MOVQ CX, BX
	SHRQ $1, BX
	JZ   an6tail

an6loop:
	LOAD6X8(0)
	TRANSPOSE8X8
	STORE8(0, 24)
	LOAD6X8(32)
	TRANSPOSE8X8
	STORE8(192, 24)
	ADDQ $64, R11
	ADDQ $64, R12
	ADDQ $64, R13
	ADDQ $384, DI
	DECQ BX
	JNZ  an6loop

an6tail:
	ANDQ $1, CX
	JZ   an6done
	LOAD6X8(0)
	TRANSPOSE8X8
	STORE8(0, 24)

an6done:
	VZEROUPPER
	RET

// func packAT6Block(dst, src *float32, lda, kk, np int)
// For p < kk and q < np: dst[q*6*kk + p*6 + r] = src[p*lda + q*6 + r], r < 6.
// Rows p < kk-1 are copied 8 floats at a time (the 2 extra floats land in
// the next entry of the same panel, which is written later); the last row
// is copied exactly.
TEXT ·packAT6Block(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), R8
	SHLQ $2, R8
	MOVQ kk+24(FP), CX
	MOVQ np+32(FP), R9
	LEAQ (CX)(CX*2), R10
	SHLQ $3, R10 // panel stride in bytes: 24*kk
	DECQ CX
	JZ   at6last

at6row:
	MOVQ SI, R11
	MOVQ DI, R12
	MOVQ R9, BX

at6col:
	VMOVUPS (R11), Y0
	VMOVUPS Y0, (R12)
	ADDQ    $24, R11
	ADDQ    R10, R12
	DECQ    BX
	JNZ     at6col
	ADDQ    R8, SI
	ADDQ    $24, DI
	DECQ    CX
	JNZ     at6row

at6last:
	VMOVUPS (SI), X0
	VMOVSD  16(SI), X1
	VMOVUPS X0, (DI)
	VMOVSD  X1, 16(DI)
	ADDQ    $24, SI
	ADDQ    R10, DI
	DECQ    R9
	JNZ     at6last
	VZEROUPPER
	RET
