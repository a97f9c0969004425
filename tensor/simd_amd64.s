//go:build amd64 && !purego

#include "textflag.h"

// AVX2/FMA kernels of the exp family (simd_amd64.go declares them). Each processes
// 8 floats per iteration and finishes the last n%8 with masked loads and stores, so
// that every element goes through the same instructions wherever it sits.
//
// Registers: DI dst, SI the first input, DX the second, CX the 8-float blocks, BX the
// remainder; Y0 the input x, Y6 the gradient g (or alpha), Y7 the tail mask, Y1 the
// result, Y2-Y5 scratch; Y8-Y15 hold the constants of the exponential (LOADEXP).

// VEC8 defines name<> as 8 copies of the 32-bit pattern bits.
#define VEC8(name, bits) \
	DATA name<>+0(SB)/4, $bits; \
	DATA name<>+4(SB)/4, $bits; \
	DATA name<>+8(SB)/4, $bits; \
	DATA name<>+12(SB)/4, $bits; \
	DATA name<>+16(SB)/4, $bits; \
	DATA name<>+20(SB)/4, $bits; \
	DATA name<>+24(SB)/4, $bits; \
	DATA name<>+28(SB)/4, $bits; \
	GLOBL name<>(SB), RODATA|NOPTR, $32

VEC8(rln2, 0x3fb8aa3b)     // 1/ln2
VEC8(nl2u, 0xbf317200)     // -0.693145751953125 (high part of ln2)
VEC8(nl2l, 0xb5bfbe8e)     // -1.428606765330187045e-06 (low part of ln2)
VEC8(expc0, 0x39502bda)    // 0.000198527617612853646278381
VEC8(expc1, 0x3ab696c9)    // 0.00139304355252534151077271
VEC8(expc2, 0x3c0888a6)    // 0.00833336077630519866943359
VEC8(expc3, 0x3d2aaa7a)    // 0.0416664853692054748535156
VEC8(expc4, 0x3e2aaaab)    // 0.166666671633720397949219
VEC8(half, 0x3f000000)     // 0.5
VEC8(one, 0x3f800000)      // 1
VEC8(two, 0x40000000)      // 2
VEC8(mtwo, 0xc0000000)     // -2
VEC8(explo, 0xc2d00000)    // -104: e^x below it is 0
VEC8(exphi, 0x42c80000)    // 100: e^x above it is +Inf
VEC8(m88, 0xc2b00000)      // -88: expm1 is -1 below it
VEC8(bias, 0x0000007f)     // 127, the exponent bias
VEC8(signbit, 0x80000000)
VEC8(absmask, 0x7fffffff)
VEC8(inf, 0x7f800000)
VEC8(maxf, 0x7f7fffff)     // MaxFloat32
VEC8(lg3, 0x3f2aaaab)      // 2/3
VEC8(lg5, 0x3ecccccd)      // 2/5
VEC8(lg7, 0x3e924925)      // 2/7
VEC8(lg9, 0x3e638e39)      // 2/9
VEC8(lg11, 0x3e3a2e8c)     // 2/11
VEC8(lg13, 0x3e1d89d9)     // 2/13

// tailmask<>+32-4r holds r all-ones lanes followed by zero lanes.
DATA tailmask<>+0(SB)/8, $-1
DATA tailmask<>+8(SB)/8, $-1
DATA tailmask<>+16(SB)/8, $-1
DATA tailmask<>+24(SB)/8, $-1
DATA tailmask<>+32(SB)/8, $0
DATA tailmask<>+40(SB)/8, $0
DATA tailmask<>+48(SB)/8, $0
DATA tailmask<>+56(SB)/8, $0
GLOBL tailmask<>(SB), RODATA|NOPTR, $64

#define LOADEXP \
	VMOVUPS rln2<>(SB), Y15; \
	VMOVUPS nl2u<>(SB), Y14; \
	VMOVUPS nl2l<>(SB), Y13; \
	VMOVUPS expc1<>(SB), Y12; \
	VMOVUPS expc2<>(SB), Y11; \
	VMOVUPS expc3<>(SB), Y10; \
	VMOVUPS expc4<>(SB), Y9; \
	VMOVUPS half<>(SB), Y8

// EXPM1R leaves q = rint(X/ln2) (int32) in Q and e^s - 1 in R, for the reduced
// argument s = X - q*ln2 (|s| <= ln2/2, reduced with FMAs in two steps): the
// polynomial of SLEEF's expf, R = s + s^2*P(s). F and S are scratch; X is kept.
#define EXPM1R(X, R, Q, F, S) \
	VMULPS      Y15, X, F; \
	VCVTPS2DQ   F, Q; \
	VCVTDQ2PS   Q, F; \
	VMOVAPS     X, S; \
	VFMADD231PS Y14, F, S; \
	VFMADD231PS Y13, F, S; \
	VMOVUPS     expc0<>(SB), R; \
	VFMADD213PS Y12, S, R; \
	VFMADD213PS Y11, S, R; \
	VFMADD213PS Y10, S, R; \
	VFMADD213PS Y9, S, R; \
	VFMADD213PS Y8, S, R; \
	VMULPS      S, S, F; \
	VFMADD213PS S, F, R

// EXPF sets R = e^X as SLEEF's Sleef_expf8_u10 computes it: 1 + (e^s - 1) scaled by
// 2^q in two steps (so that subnormal results are rounded once), 0 below -104, +Inf
// above 100; NaN propagates through the arithmetic. X is kept; Q, F, S are scratch.
#define EXPF(X, R, Q, F, S) \
	EXPM1R(X, R, Q, F, S); \
	VADDPS      one<>(SB), R, R; \
	VPSRAD      $1, Q, S; \
	VPSUBD      S, Q, Q; \
	VPADDD      bias<>(SB), S, S; \
	VPSLLD      $23, S, S; \
	VMULPS      S, R, R; \
	VPADDD      bias<>(SB), Q, Q; \
	VPSLLD      $23, Q, Q; \
	VMULPS      Q, R, R; \
	VCMPPS      $1, explo<>(SB), X, S; \
	VANDNPS     R, S, R; \
	VCMPPS      $0x1e, exphi<>(SB), X, S; \
	VBLENDVPS   S, inf<>(SB), R, R


// EXPM1F sets R = e^X - 1 for -88 <= X <= 0 (or NaN): 2^q (e^s - 1) + (2^q - 1) with
// one rounding, so that it keeps its relative accuracy near 0. Q, F, S are scratch.
#define EXPM1F(X, R, Q, F, S) \
	EXPM1R(X, R, Q, F, S); \
	VPADDD      bias<>(SB), Q, Q; \
	VPSLLD      $23, Q, Q; \
	VSUBPS      one<>(SB), Q, F; \
	VFMADD213PS F, Q, R

// LOG1P sets R = log(1 + V) for 0 <= V <= 1 as 2 atanh(z) with z = V/(2+V) <= 1/3:
// 2z + z^3 (2/3 + z^2 (2/5 + ... + z^2 2/13)), truncated below 2e-8 relative. Z, W, T
// are scratch; V is overwritten.
#define LOG1P(V, R, Z, W, T) \
	VADDPS      two<>(SB), V, T; \
	VDIVPS      T, V, Z; \
	VMULPS      Z, Z, W; \
	VMOVUPS     lg13<>(SB), R; \
	VFMADD213PS lg11<>(SB), W, R; \
	VFMADD213PS lg9<>(SB), W, R; \
	VFMADD213PS lg7<>(SB), W, R; \
	VFMADD213PS lg5<>(SB), W, R; \
	VFMADD213PS lg3<>(SB), W, R; \
	VMULPS      W, Z, T; \
	VADDPS      Z, Z, Z; \
	VFMADD213PS Z, T, R

// Bodies: read Y0 (x) and Y6 (g or alpha), write Y1; Y2-Y5 scratch.

// e^x.
#define BODY_EXP \
	EXPF(Y0, Y1, Y2, Y3, Y4)

// 1 / (1 + e^-x), as PyTorch's sigmoid.
#define BODY_SIGMOID \
	VXORPS  signbit<>(SB), Y0, Y2; \
	EXPF(Y2, Y3, Y4, Y5, Y1); \
	VADDPS  one<>(SB), Y3, Y3; \
	VMOVUPS one<>(SB), Y1; \
	VDIVPS  Y3, Y1, Y1

// g / (1 + e^-x).
#define BODY_MULSIGMOID \
	BODY_SIGMOID; \
	VMULPS Y6, Y1, Y1

// x / (1 + e^-x), as PyTorch's silu.
#define BODY_SILU \
	VXORPS signbit<>(SB), Y0, Y2; \
	EXPF(Y2, Y3, Y4, Y5, Y1); \
	VADDPS one<>(SB), Y3, Y3; \
	VDIVPS Y3, Y0, Y1

// g * s * (1 + x (1 - s)) with s = 1 / (1 + e^-x), as PyTorch's silu_backward but
// with 1 - s = min(e^-x, MaxFloat32) s, which keeps the small term x (1 - s)
// accurate where s rounds to 1 (the cap makes it 0, not NaN, where e^-x overflows
// and s is 0).
#define BODY_SILUGRAD \
	VXORPS  signbit<>(SB), Y0, Y2; \
	EXPF(Y2, Y3, Y4, Y5, Y1); \
	VADDPS  one<>(SB), Y3, Y2; \
	VMOVUPS one<>(SB), Y4; \
	VDIVPS  Y2, Y4, Y2; \
	VMINPS  maxf<>(SB), Y3, Y3; \
	VMULPS  Y2, Y3, Y3; \
	VMULPS  Y3, Y0, Y5; \
	VADDPS  Y4, Y5, Y5; \
	VMULPS  Y2, Y6, Y3; \
	VMULPS  Y5, Y3, Y1

// x for x > 0, else alpha * expm1(x) (Y6 = alpha). The max and min put x second so
// that a NaN passes through them.
#define BODY_ELU \
	VMOVUPS   m88<>(SB), Y2; \
	VMAXPS    Y0, Y2, Y2; \
	VXORPS    Y3, Y3, Y3; \
	VMINPS    Y2, Y3, Y2; \
	EXPM1F(Y2, Y3, Y4, Y5, Y1); \
	VMULPS    Y6, Y3, Y3; \
	VXORPS    Y4, Y4, Y4; \
	VCMPPS    $0x1e, Y4, Y0, Y4; \
	VBLENDVPS Y4, Y0, Y3, Y1

// g for x > 0, else g * alpha * e^x (Y6 = g, Y2 = alpha).
#define BODY_ELUGRAD \
	EXPF(Y0, Y3, Y4, Y5, Y1); \
	VMULPS    Y2, Y6, Y4; \
	VMULPS    Y3, Y4, Y4; \
	VXORPS    Y5, Y5, Y5; \
	VCMPPS    $0x1e, Y5, Y0, Y5; \
	VBLENDVPS Y5, Y6, Y4, Y1

// tanh x = sign(x) * -t / (t + 2) with t = expm1(-2|x|) >= -1 (|x| capped at 44).
#define BODY_TANH \
	VANDPS  absmask<>(SB), Y0, Y2; \
	VMULPS  mtwo<>(SB), Y2, Y2; \
	VMOVUPS m88<>(SB), Y3; \
	VMAXPS  Y2, Y3, Y2; \
	EXPM1F(Y2, Y3, Y4, Y5, Y1); \
	VADDPS  two<>(SB), Y3, Y4; \
	VDIVPS  Y4, Y3, Y3; \
	VANDPS  absmask<>(SB), Y3, Y3; \
	VANDPS  signbit<>(SB), Y0, Y4; \
	VORPS   Y4, Y3, Y1

// log(1 + e^x) = max(x, 0) + log1p(e^-|x|), which is x itself above 17.
#define BODY_SOFTPLUS \
	VORPS  signbit<>(SB), Y0, Y2; \
	EXPF(Y2, Y3, Y4, Y5, Y1); \
	LOG1P(Y3, Y4, Y5, Y1, Y2); \
	VXORPS Y3, Y3, Y3; \
	VMAXPS Y0, Y3, Y3; \
	VADDPS Y4, Y3, Y1

// TAILMASK sets Y7 to BX all-ones lanes (1 <= BX <= 7).
#define TAILMASK \
	LEAQ    tailmask<>+32(SB), AX; \
	SHLQ    $2, BX; \
	SUBQ    BX, AX; \
	VMOVUPS (AX), Y7

// UNARY runs BODY over n = CX floats from SI to DI.
#define UNARY(BODY) \
	MOVQ       CX, BX; \
	ANDQ       $7, BX; \
	SHRQ       $3, CX; \
	JZ         tail; \
loop: \
	VMOVUPS    (SI), Y0; \
	BODY; \
	VMOVUPS    Y1, (DI); \
	ADDQ       $32, SI; \
	ADDQ       $32, DI; \
	DECQ       CX; \
	JNZ        loop; \
tail: \
	TESTQ      BX, BX; \
	JZ         done; \
	TAILMASK; \
	VMASKMOVPS (SI), Y7, Y0; \
	BODY; \
	VMASKMOVPS Y1, Y7, (DI); \
done: \
	VZEROUPPER; \
	RET

// BINARY runs BODY over n = CX floats of x (SI) and g (DX) to DI.
#define BINARY(BODY) \
	MOVQ       CX, BX; \
	ANDQ       $7, BX; \
	SHRQ       $3, CX; \
	JZ         tail; \
loop: \
	VMOVUPS    (SI), Y0; \
	VMOVUPS    (DX), Y6; \
	BODY; \
	VMOVUPS    Y1, (DI); \
	ADDQ       $32, SI; \
	ADDQ       $32, DX; \
	ADDQ       $32, DI; \
	DECQ       CX; \
	JNZ        loop; \
tail: \
	TESTQ      BX, BX; \
	JZ         done; \
	TAILMASK; \
	VMASKMOVPS (SI), Y7, Y0; \
	VMASKMOVPS (DX), Y7, Y6; \
	BODY; \
	VMASKMOVPS Y1, Y7, (DI); \
done: \
	VZEROUPPER; \
	RET

// func expAVX2(dst, src *float32, n int)
TEXT ·expAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	LOADEXP
	UNARY(BODY_EXP)

// func sigmoidAVX2(dst, src *float32, n int)
TEXT ·sigmoidAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	LOADEXP
	UNARY(BODY_SIGMOID)

// func siluAVX2(dst, src *float32, n int)
TEXT ·siluAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	LOADEXP
	UNARY(BODY_SILU)

// func tanhAVX2(dst, src *float32, n int)
TEXT ·tanhAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	LOADEXP
	UNARY(BODY_TANH)

// func softplusAVX2(dst, src *float32, n int)
TEXT ·softplusAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	LOADEXP
	UNARY(BODY_SOFTPLUS)

// func eluAVX2(dst, src *float32, n int, alpha float32)
TEXT ·eluAVX2(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS alpha+24(FP), Y6
	LOADEXP
	UNARY(BODY_ELU)

// func mulSigmoidAVX2(dst, x, grad *float32, n int)
TEXT ·mulSigmoidAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ grad+16(FP), DX
	MOVQ n+24(FP), CX
	LOADEXP
	BINARY(BODY_MULSIGMOID)

// func siluGradAVX2(dst, x, grad *float32, n int)
TEXT ·siluGradAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ grad+16(FP), DX
	MOVQ n+24(FP), CX
	LOADEXP
	BINARY(BODY_SILUGRAD)

// func eluGradAVX2(dst, x, grad *float32, n int, alpha float32)
TEXT ·eluGradAVX2(SB), NOSPLIT, $0-36
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         grad+16(FP), DX
	MOVQ         n+24(FP), CX
	VBROADCASTSS alpha+32(FP), Y2
	LOADEXP
	BINARY(BODY_ELUGRAD)
