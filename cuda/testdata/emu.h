// emu.h maps kernels.cu onto emu.cpp's CPU model of CUDA: every thread of a block is
// a fiber, __syncthreads switches to the next fiber, and __shared__ variables are the
// function's statics (blocks run one after another). Test use only.
#pragma once

#define __global__
#define __device__
#define __shared__ static

struct emu_dim3 {
	unsigned x, y, z;
};

extern emu_dim3 emu_tid, emu_ntid, emu_ctaid, emu_nctaid;
void emu_sync();

#define tid_x() (emu_tid.x)
#define tid_y() (emu_tid.y)
#define ntid_x() (emu_ntid.x)
#define ntid_y() (emu_ntid.y)
#define ctaid_x() (emu_ctaid.x)
#define ctaid_y() (emu_ctaid.y)
#define nctaid_x() (emu_nctaid.x)
#define nctaid_y() (emu_nctaid.y)
#define SYNC() emu_sync()
#define BOUNDS(n)
