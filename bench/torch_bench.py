#!/usr/bin/env python3
"""PyTorch baselines for egg's benchmarks (benchmark-only, not part of egg).

Each workload here times exactly what the Go benchmark of the same name times,
so that bench/run.sh can print egg/PyTorch ratios:

  conv_stack/B{1,4}/{forward,inputgrad}       <-> BenchmarkConvStack
  attention_block/B{1,4}/{forward,inputgrad}  <-> BenchmarkAttentionBlock
  egg_step/B{1,4}                             <-> BenchmarkEGGStep
  v4_model/B1/inputgrad, v4_model/B16/train   <-> BenchmarkV4Model
  egg_step_256/B1  (only with --big; PyTorch only, one step, plus peak RSS)

egg_step and egg_step_256 take other batch sizes with --batch (egg_step/B8,
egg_step_256/B8, ...). By default everything runs on the CPU in float32, as
egg does; --device cuda runs the same cases on a GPU (see "GPU" below).

conv_stack
    6 x [Conv2d 3x3 64->64 pad 1 with bias -> GroupNorm(32, 64, eps 1e-5,
    affine) -> SiLU] on a Bx64x64x64 input.
attention_block
    The ADM (openai/guided-diffusion) attention block, written here in plain
    torch: GroupNorm(32, 256) -> conv1d 1x1 256->768 (qkv) -> legacy QKV
    attention with 4 heads of 64 channels -> conv1d 1x1 256->256 (proj_out)
    -> residual add, on a Bx256x16x16 input (T = 256 positions).
    "forward" runs under torch.no_grad(); "inputgrad" is the forward plus the
    gradient of output.sum() w.r.t. the input (weights do not require grad).
egg_step
    One energy-guided step through guided-diffusion's own UNetModel (64x64
    config, random weights, seed 0): x_t ~ N(0, I) requires grad,
    eps = unet(x_t, t=500)[:, :3],
    x0_hat = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps  (linear betas 1e-4..0.02,
    1000 steps, float64 alphas_cumprod), energy = -(W * x0_hat.mean(1)).sum()
    for a fixed random 64x64 map W, grad = d energy / d x_t.
    Needs --guided-diffusion PATH (a checkout of openai/guided-diffusion);
    skipped with a message otherwise.
egg_step_256
    The same step with the 256x256 unconditional ADM config, batch 1, run in
    a subprocess so that its peak RSS (ru_maxrss) is its own (on --device
    cuda: in-process, timed like the other cases, with peak GPU memory).
v4_model
    The data-driven attention encoding model of the EGG paper, in plain torch:
    a conv core (9x9 conv 1->96, BN, ELU, then 4 depth-separable layers
    [1x1, 5x5 depthwise, 1x1] each followed by BN and ELU) on 1x100x100 images
    (map 96x92x92), and an attention readout for 1244 neurons.
    "B1/inputgrad": eval mode, gradient of y[0, 7] w.r.t. the input.
    "B16/train": train mode, Poisson loss, backward, AdamW(lr 1e-3) step.

Timing: torch.set_num_threads(2) on the CPU; each case runs --warmup untimed calls, then
--reps timed calls (time.perf_counter; fewer, but at least --min-reps, when a
case would exceed --max-seconds), and the median is reported.

GPU: --device cuda puts modules and inputs on the GPU (same seeds, built on the
CPU then moved, so the weights equal the CPU run's), calls
torch.cuda.synchronize() before reading the clock at the start and the end of
each timed call, and leaves the thread count alone. --precision picks the
arithmetic: fp32 (default; TF32 off for cuBLAS matmuls and cuDNN convs, i.e.
float32 parity), tf32 (TF32 on for both), fp16 or bf16 (the model's forward
runs under torch.autocast("cuda", dtype), TF32 off for what stays float32;
the guided step's x_t, x0_hat, energy and input gradient stay float32). Each
case reports its peak torch.cuda.max_memory_allocated() (reset before the
case's warm-up; it includes the weights and anything else still allocated).

Output: one line per case, "name<TAB>milliseconds" (egg_step_256 on the CPU
adds a third field "peak_rss_kib=N"; on cuda every line adds
"peak_gpu_mem_mib=X"); with --json a single JSON object instead, which also
records the device, precision, torch, CUDA and cuDNN versions and GPU name.
A header line on stderr says the same.

Examples:
  python3 bench/torch_bench.py
  python3 bench/torch_bench.py --only conv_stack,v4_model --json
  python3 bench/torch_bench.py --guided-diffusion /tmp/gd --big
  python3 bench/torch_bench.py --device cuda --precision fp16 \\
      --guided-diffusion /tmp/gd --big --batch 1,8 --json
"""

import argparse
import contextlib
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import types
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

WORKLOADS = ("conv_stack", "attention_block", "egg_step", "v4_model")
NUM_THREADS = 2
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class Run:
    """Where and in what precision the cases run (set once by main)."""

    device = torch.device("cpu")
    amp_dtype = None  # torch.float16 / torch.bfloat16 under --precision fp16/bf16

    @classmethod
    def cuda(cls):
        return cls.device.type == "cuda"

    @classmethod
    def to(cls, t):
        """A CPU-built module or tensor moved to the run's device."""
        return t.to(cls.device)

    @classmethod
    def amp(cls):
        """Context of a model forward: torch.autocast under fp16/bf16."""
        if cls.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(cls.device.type, dtype=cls.amp_dtype)

    @classmethod
    def sync(cls):
        if cls.cuda():
            torch.cuda.synchronize()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Timing


def time_case(fn, warmup, reps, min_reps, max_seconds, sync=None):
    """Median and min wall ms, median CPU s and count of timed fn() calls,
    and the value the last call returned.

    sync (torch.cuda.synchronize on a GPU) runs before the clock is read at
    the start and at the end of each timed call, so that a call's time covers
    its queued kernels and none of the previous call's."""
    out = None
    for _ in range(warmup):
        out = fn()
    times, cpu = [], []
    start = time.perf_counter()
    while len(times) < reps:
        if sync is not None:
            sync()
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if len(times) >= min_reps and time.perf_counter() - start > max_seconds:
            break
    return {
        "ms": statistics.median(times) * 1e3,
        "min_ms": min(times) * 1e3,
        # CPU seconds of the whole process per call: inflated less than wall
        # time by other work on the machine (Go's V4 benchmark reports cpu-s/op).
        "cpu_s": statistics.median(cpu),
        "reps": len(times),
    }, out


# --------------------------------------------------------------------------
# conv_stack


class ConvStack(nn.Module):
    """6 x [Conv2d 3x3 64->64 pad 1 -> GroupNorm(32) -> SiLU]."""

    def __init__(self, depth=6, ch=64):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [
                nn.Conv2d(ch, ch, 3, padding=1, bias=True),
                nn.GroupNorm(32, ch, eps=1e-5, affine=True),
                nn.SiLU(),
            ]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


# --------------------------------------------------------------------------
# attention_block (ADM attention block, legacy QKV order)


class AttentionBlock(nn.Module):
    """GroupNorm -> qkv 1x1 conv -> legacy QKV attention -> proj_out -> +x."""

    def __init__(self, channels=256, num_heads=4):
        super().__init__()
        self.channels = channels
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(32, channels, eps=1e-5)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def attention(self, qkv):
        # Legacy order: qkv is (B, heads*3*ch, T), reshaped to (B*heads, 3*ch, T).
        bs, width, length = qkv.shape
        ch = width // (3 * self.num_heads)
        q, k, v = qkv.reshape(bs * self.num_heads, 3 * ch, length).split(ch, dim=1)
        scale = 1.0 / math.sqrt(math.sqrt(ch))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        a = torch.einsum("bts,bcs->bct", weight, v)
        return a.reshape(bs, -1, length)

    def forward(self, x):
        b, c = x.shape[:2]
        xf = x.reshape(b, c, -1)
        h = self.attention(self.qkv(self.norm(xf)))
        h = self.proj_out(h)
        return (xf + h).reshape(x.shape)


def frozen(module):
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def layer_cases(name, module, shape):
    """forward / inputgrad cases of a module with frozen weights."""
    torch.manual_seed(1)
    x = Run.to(torch.randn(*shape))

    def forward():
        with torch.no_grad(), Run.amp():
            return module(x)

    def inputgrad():
        xi = x.detach().requires_grad_(True)
        with Run.amp():
            y = module(xi)
        (g,) = torch.autograd.grad(y.float().sum(), xi)
        return g

    b = shape[0]
    return [(f"{name}/B{b}/forward", forward), (f"{name}/B{b}/inputgrad", inputgrad)]


def conv_stack_cases():
    torch.manual_seed(0)
    m = Run.to(frozen(ConvStack()))
    return layer_cases("conv_stack", m, (1, 64, 64, 64)) + layer_cases(
        "conv_stack", m, (4, 64, 64, 64)
    )


def attention_block_cases():
    torch.manual_seed(0)
    m = Run.to(frozen(AttentionBlock()))
    return layer_cases("attention_block", m, (1, 256, 16, 16)) + layer_cases(
        "attention_block", m, (4, 256, 16, 16)
    )


# --------------------------------------------------------------------------
# egg_step (guided-diffusion UNetModel)

UNET_64 = dict(
    image_size=64,
    in_channels=3,
    model_channels=64,
    out_channels=6,
    num_res_blocks=2,
    attention_resolutions=(4, 8),  # 64/16, 64/8
    dropout=0.0,
    channel_mult=(1, 2, 3, 4),
    use_checkpoint=False,
    use_fp16=False,
    num_head_channels=32,
    use_scale_shift_norm=True,
    resblock_updown=True,
    use_new_attention_order=False,
)

UNET_256 = dict(
    image_size=256,
    in_channels=3,
    model_channels=256,
    out_channels=6,
    num_res_blocks=2,
    attention_resolutions=(8, 16, 32),  # 256/32, 256/16, 256/8
    dropout=0.0,
    channel_mult=(1, 1, 2, 2, 4, 4),
    use_checkpoint=False,
    use_fp16=False,
    num_head_channels=64,
    use_scale_shift_norm=True,
    resblock_updown=True,
    use_new_attention_order=False,
)


def import_unet(gd_path):
    """Import guided_diffusion.unet.UNetModel from a checkout, or return None."""
    if not gd_path:
        return None
    if not os.path.isfile(os.path.join(gd_path, "guided_diffusion", "unet.py")):
        log(f"# no guided_diffusion/unet.py under {gd_path!r}")
        return None
    sys.path.insert(0, os.path.abspath(gd_path))
    # unet -> fp16_util -> logger uses only the standard library; other modules
    # of the package (dist_util, image_datasets) need blobfile/mpi4py. Stub
    # them in case a checkout's import chain reaches them.
    for mod in ("blobfile", "mpi4py", "mpi4py.MPI"):
        try:
            __import__(mod)
        except ImportError:
            sys.modules[mod] = types.ModuleType(mod)
    try:
        from guided_diffusion.unet import UNetModel
    except Exception as e:  # pragma: no cover - depends on the checkout
        log(f"# cannot import guided_diffusion.unet from {gd_path!r}: {e}")
        return None
    return UNetModel


def disable_attention_checkpoint():
    """Make guided-diffusion's AttentionBlock honour use_checkpoint=False.

    Upstream's AttentionBlock.forward calls checkpoint(..., True)
    unconditionally, so its forward is recomputed during the backward pass
    even with use_checkpoint=False. This replaces the module-level
    `checkpoint` helper of guided_diffusion.unet by a plain call."""
    import guided_diffusion.unet as gd_unet

    gd_unet.checkpoint = lambda func, inputs, params, flag: func(*inputs)


def autocast_attention_checkpoint():
    """Make upstream's checkpoint recompute under autocast too.

    guided_diffusion.nn.CheckpointFunction reruns the block's forward in its
    backward, where the autocast state of the forward is gone (autograd runs
    backward outside the `with torch.autocast(...)` block): the recomputation
    would mix half activations with float32 weights and fail. Wrapping the
    checkpointed function in the run's autocast keeps the recomputation (and
    so its cost) and makes it run in the forward's precision, as
    torch.utils.checkpoint does."""
    import guided_diffusion.unet as gd_unet

    orig = gd_unet.checkpoint
    if getattr(orig, "_torch_bench_autocast", False):
        return

    def checkpoint(func, inputs, params, flag):
        if not flag:
            return func(*inputs)

        def run(*args):
            with Run.amp():
                return func(*args)

        return orig(run, inputs, params, flag)

    checkpoint._torch_bench_autocast = True
    gd_unet.checkpoint = checkpoint


def prepare_unet_module(attn_checkpoint):
    """Apply the AttentionBlock checkpoint adjustments to guided_diffusion."""
    if not attn_checkpoint:
        disable_attention_checkpoint()
    elif Run.amp_dtype is not None:
        autocast_attention_checkpoint()


def build_unet(UNetModel, config):
    torch.manual_seed(0)
    model = UNetModel(**config)
    # ADM zero-initialises the last conv of every block and the output conv;
    # give those random values too so that the guidance gradient is not
    # trivially zero. (Dense kernels cost the same either way.)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                fan_in = p[0].numel()
                p.normal_(0.0, 1.0 / math.sqrt(fan_in))
    # Parameters keep requires_grad=True: upstream's checkpointed
    # AttentionBlock differentiates w.r.t. its parameters in the backward
    # pass and fails on frozen ones. torch.autograd.grad(energy, x_t) still
    # skips the weight gradients of every other layer.
    return Run.to(model.eval())


def abar(t):
    """Linear-schedule alphas_cumprod[t] in float64."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)[t].item()


def egg_step_fn(model, batch, size, t=500):
    """One guided step: returns a closure computing d energy / d x_t."""
    a = abar(t)
    c_x, c_eps = math.sqrt(1.0 / a), math.sqrt(1.0 / a - 1.0)
    g = torch.Generator().manual_seed(2)
    x0 = Run.to(torch.randn(batch, 3, size, size, generator=g))
    w_map = Run.to(torch.randn(size, size, generator=g))
    ts = Run.to(torch.full((batch,), float(t)))

    def step():
        # x_t is float32; under fp16/bf16 only the UNet runs in autocast, and
        # eps is cast back so that x0_hat, the energy and grad are float32.
        x_t = x0.detach().requires_grad_(True)
        with Run.amp():
            eps = model(x_t, ts)[:, :3]
        x0_hat = c_x * x_t - c_eps * eps.float()
        energy = -(w_map * x0_hat.mean(1)).sum()
        (grad,) = torch.autograd.grad(energy, x_t)
        return grad

    return step


EGG_STEP_BATCHES = (1, 4)
EGG_STEP_256_BATCHES = (1,)


def egg_step_cases(gd_path, attn_checkpoint, batches=None):
    UNetModel = import_unet(gd_path)
    if UNetModel is None:
        log("# egg_step skipped: pass --guided-diffusion PATH (an openai/guided-diffusion checkout)")
        return []
    prepare_unet_module(attn_checkpoint)
    model = build_unet(UNetModel, UNET_64)
    return [(f"egg_step/B{b}", egg_step_fn(model, b, 64))
            for b in (batches or EGG_STEP_BATCHES)]


def egg_step_256_cuda_cases(gd_path, attn_checkpoint, batches=None):
    """egg_step_256 on the GPU: in-process cases, timed like the others."""
    UNetModel = import_unet(gd_path)
    if UNetModel is None:
        log("# egg_step_256 skipped: pass --guided-diffusion PATH")
        return []
    prepare_unet_module(attn_checkpoint)
    model = build_unet(UNetModel, UNET_256)
    return [(f"egg_step_256/B{b}", egg_step_fn(model, b, 256))
            for b in (batches or EGG_STEP_256_BATCHES)]


def egg_step_256_child(gd_path, steps, attn_checkpoint, batch=1):
    """Runs in a subprocess: prints one JSON line with ms and peak RSS."""
    torch.set_num_threads(NUM_THREADS)
    UNetModel = import_unet(gd_path)
    if UNetModel is None:
        sys.exit(3)
    if not attn_checkpoint:
        disable_attention_checkpoint()
    model = build_unet(UNetModel, UNET_256)
    step = egg_step_fn(model, batch, 256)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    nparams = sum(p.numel() for p in model.parameters())
    print(json.dumps({"ms": statistics.median(times) * 1e3, "steps": steps,
                      "peak_rss_kib": rss, "params": nparams, "batch": batch}))


def egg_step_256(gd_path, steps, attn_checkpoint, batch=1):
    """egg_step_256 on the CPU, in a subprocess (its own peak RSS)."""
    if import_unet(gd_path) is None:
        log("# egg_step_256 skipped: pass --guided-diffusion PATH")
        return None
    cmd = [sys.executable, os.path.abspath(__file__), "--guided-diffusion", gd_path,
           "--_big-child", "--big-steps", str(steps), "--batch", str(batch)]
    if not attn_checkpoint:
        cmd.append("--no-attn-checkpoint")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        log(f"# egg_step_256/B{batch} failed (exit {res.returncode}):\n{res.stderr}")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# v4_model (data-driven attention encoding model)


def positional_encoding_2d(channels, height, width):
    """Fixed 2D sinusoidal encoding (C, H*W): first half of the channels
    encode the row, second half the column, each as interleaved sin/cos."""
    half = channels // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(0, half, 2).float() / half)

    def enc(n):
        pos = torch.arange(n).float()[:, None] * freqs[None]  # (n, half/2)
        return torch.stack([pos.sin(), pos.cos()], dim=-1).reshape(n, half)  # (n, half)

    ey = enc(height)[:, None, :].expand(height, width, half)
    ex = enc(width)[None, :, :].expand(height, width, half)
    pe = torch.cat([ey, ex], dim=-1)  # (H, W, C)
    return pe.reshape(height * width, channels).t().contiguous()


class V4Model(nn.Module):
    def __init__(self, n_neurons=1244, channels=96, image=100, d_kv=128,
                 temperature=1.0):
        super().__init__()
        layers = [nn.Conv2d(1, channels, 9, bias=False), nn.BatchNorm2d(channels), nn.ELU()]
        for _ in range(4):
            layers += [
                nn.Conv2d(channels, channels, 1, bias=False),
                nn.Conv2d(channels, channels, 5, padding=2, groups=channels, bias=False),
                nn.Conv2d(channels, channels, 1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ELU(),
            ]
        self.core = nn.Sequential(*layers)
        side = image - 8
        self.register_buffer("pos", positional_encoding_2d(channels, side, side))
        self.to_kv = nn.Linear(channels, 2 * d_kv, bias=False)
        self.query = nn.Parameter(torch.randn(d_kv, n_neurons) / math.sqrt(d_kv))
        self.features = nn.Parameter(torch.randn(d_kv, n_neurons) / math.sqrt(d_kv))
        self.bias = nn.Parameter(torch.zeros(n_neurons))
        self.d_kv = d_kv
        self.scale = channels ** -0.5 / temperature

    def forward(self, x):
        feats = self.core(x)                         # (B, C, H, W)
        X = feats.flatten(2) + self.pos              # (B, C, S)
        kv = self.to_kv(X.transpose(1, 2))           # (B, S, 2D)
        k, v = kv.split(self.d_kv, dim=-1)           # (B, S, D) each
        # logits[b, s, n] = k[b, s, :] . query[:, n] * scale, kept as (B, N, S)
        # so that the softmax over positions runs along the contiguous last
        # dim (torch 1.13's softmax over a strided dim is ~7x slower).
        logits = torch.matmul(self.query.t(), k.transpose(1, 2)) * self.scale
        att = torch.softmax(logits, dim=-1)                # (B, N, S)
        pooled = torch.matmul(att, v)                      # (B, N, D)
        out = (pooled * self.features.t()).sum(-1) + self.bias  # (B, N)
        return F.elu(out) + 1.0


def v4_model_cases():
    torch.manual_seed(0)
    model = V4Model()

    # B1/inputgrad: eval mode, weights frozen, d y[0, 7] / d x.
    eval_model = V4Model()
    eval_model.load_state_dict(model.state_dict())
    eval_model = Run.to(frozen(eval_model))
    x1 = Run.to(torch.randn(1, 1, 100, 100))

    def inputgrad():
        xi = x1.detach().requires_grad_(True)
        with Run.amp():
            y = eval_model(xi)
        (g,) = torch.autograd.grad(y[0, 7].float(), xi)
        return g

    # B16/train: train mode, Poisson loss, backward, AdamW step.
    model = Run.to(model.train())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x16 = Run.to(torch.randn(16, 1, 100, 100))
    target = Run.to(torch.poisson(torch.full((16, 1244), 1.0)))
    # fp16 training needs loss scaling (bf16 does not); a moderate initial
    # scale so that the timed steps are not skipped as overflowing.
    scaler = make_grad_scaler(init_scale=2.0 ** 10) if Run.amp_dtype == torch.float16 else None

    def train():
        opt.zero_grad(set_to_none=True)
        with Run.amp():
            y = model(x16)
        y = y.float()
        loss = (y - target * torch.log(y + 1e-12)).sum()
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return loss

    return [("v4_model/B1/inputgrad", inputgrad), ("v4_model/B16/train", train)]


def make_grad_scaler(**kw):
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda", **kw)
    return torch.cuda.amp.GradScaler(**kw)


# --------------------------------------------------------------------------


# Device and precision setup


def die(msg):
    """One-line error and exit status 2 (argparse's usage-error status)."""
    print(f"{os.path.basename(sys.argv[0])}: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def cuda_unavailable_reason():
    """None when a CUDA device can be used, else why not (one line)."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = torch.cuda.is_available() and torch.cuda.device_count() > 0
    if ok:
        return None
    why = f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
    if caught:
        why += ": " + " ".join(str(caught[0].message).split())[:300]
    elif "CUDA_VISIBLE_DEVICES" in os.environ:
        why += f" (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r})"
    return why


def set_tf32(enabled):
    """TF32 for cuBLAS matmuls and cuDNN convolutions.

    Only the legacy allow_tf32 flags are set (torch >= 2.9 maps them onto its
    fp32_precision settings; setting both APIs would leave torch in a "mixed"
    state that it refuses to report). torch >= 2.9 warns once that these
    flags are to be deprecated; that warning is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TF32.*")
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def tf32_state():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TF32.*")
        state = {"matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                 "cudnn": bool(torch.backends.cudnn.allow_tf32)}
        # torch >= 2.9: the same settings as the new API reports them.
        try:
            state["matmul_fp32_precision"] = torch.backends.cuda.matmul.fp32_precision
            state["cudnn_conv_fp32_precision"] = torch.backends.cudnn.conv.fp32_precision
        except Exception:  # older torch: no such attribute (AssertionError in 1.13)
            pass
        return state


def setup(device, precision):
    """Configure Run for --device/--precision; returns the environment facts
    that go into the JSON output and the stderr header."""
    if device == "cpu":
        if precision != "fp32":
            die(f"--precision {precision} needs --device cuda (the CPU baselines are float32)")
        torch.set_num_threads(NUM_THREADS)
        return {"device": "cpu", "precision": precision, "gpu": None}
    why = cuda_unavailable_reason()
    if why is not None:
        die(f"--device cuda: no usable CUDA GPU: {why}")
    Run.device = torch.device("cuda", torch.cuda.current_device())
    # fp32: float32 parity with egg; fp16/bf16: what autocast leaves in float32
    # stays float32 too.
    set_tf32(precision == "tf32")
    Run.amp_dtype = AMP_DTYPES.get(precision)
    if Run.amp_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        die(f"--precision bf16: {torch.cuda.get_device_name(Run.device)} does not support bfloat16")
    props = torch.cuda.get_device_properties(Run.device)
    return {
        "device": "cuda",
        "precision": precision,
        "gpu": torch.cuda.get_device_name(Run.device),
        "gpu_capability": f"{props.major}.{props.minor}",
        "gpu_total_mem_bytes": props.total_memory,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32": tf32_state(),
        "autocast_dtype": str(Run.amp_dtype).replace("torch.", "") if Run.amp_dtype else None,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def describe(env):
    """One-line summary of the run's setup for the stderr log."""
    parts = [f"torch {torch.__version__}"]
    if env["device"] == "cpu":
        parts.append("device cpu")
    else:
        parts.append(f"CUDA {env['cuda']}, cuDNN {env['cudnn']}")
        parts.append(f"device cuda ({env['gpu']}, sm {env['gpu_capability']}, "
                     f"{env['gpu_total_mem_bytes'] / 2**30:.0f} GiB)")
    prec = f"precision {env['precision']}"
    if env["device"] == "cuda":
        extra = []
        if env["autocast_dtype"]:
            extra.append(f"autocast {env['autocast_dtype']}")
        extra.append("tf32 matmul " + ("on" if env["tf32"]["matmul"] else "off"))
        extra.append("cudnn " + ("on" if env["tf32"]["cudnn"] else "off"))
        prec += " (" + ", ".join(extra) + ")"
    parts.append(prec)
    parts.append(f"threads {torch.get_num_threads()}")
    return "# torch_bench: " + ", ".join(parts)


def parse_batches(text):
    if not text:
        return None
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        die(f"--batch {text!r}: expected a comma-separated list of positive integers")
    return list(dict.fromkeys(batches))  # drop repeats, keep the order


def run_case(name, fn, args):
    """Time one case; on cuda also its peak GPU memory and whether its last
    result (input gradient, output or loss) is finite."""
    if Run.cuda():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        at_start = torch.cuda.memory_allocated()
    res, out = time_case(fn, args.warmup, args.reps, args.min_reps, args.max_seconds,
                         sync=Run.sync if Run.cuda() else None)
    if Run.cuda():
        res["peak_gpu_mem_bytes"] = torch.cuda.max_memory_allocated()
        res["gpu_mem_at_start_bytes"] = at_start
        if torch.is_tensor(out):
            res["finite"] = bool(torch.isfinite(out).all())
    return res


def tsv_line(name, res):
    line = f"{name}\t{res['ms']:.3f}"
    if "peak_rss_kib" in res:
        line += f"\tpeak_rss_kib={res['peak_rss_kib']}"
    if "peak_gpu_mem_bytes" in res:
        line += f"\tpeak_gpu_mem_mib={res['peak_gpu_mem_bytes'] / 2**20:.1f}"
    return line


def release_gpu_memory():
    """Free the previous workload's modules before the next one's peak."""
    gc.collect()
    if Run.cuda():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help="comma-separated workloads (default: %(default)s)")
    ap.add_argument("--guided-diffusion", metavar="PATH", default=os.environ.get("GUIDED_DIFFUSION", ""),
                    help="openai/guided-diffusion checkout, needed by egg_step "
                         "(default: $GUIDED_DIFFUSION)")
    ap.add_argument("--big", action="store_true",
                    help="also run egg_step_256 (256x256 ADM, batch 1 or --batch; "
                         "on the CPU in a subprocess)")
    ap.add_argument("--big-steps", type=int, default=1,
                    help="timed steps of egg_step_256 on the CPU (median; default %(default)s); "
                         "on cuda it is timed like the other cases (--warmup, --reps)")
    ap.add_argument("--batch", metavar="LIST", default="",
                    help="comma-separated batch sizes of egg_step and egg_step_256, "
                         "e.g. 1,8 (cases egg_step/B1, egg_step/B8, egg_step_256/B1, ...; "
                         "default: 1,4 for egg_step, 1 for egg_step_256)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where to run (default %(default)s; cuda: the current CUDA device)")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32",
                    help="cuda only: fp32 (TF32 off, float32 parity; default), tf32, "
                         "fp16 or bf16 (model forward under torch.autocast)")
    ap.add_argument("--no-attn-checkpoint", dest="attn_checkpoint", action="store_false",
                    help="egg_step*: stop upstream's AttentionBlock from always "
                         "checkpointing (recomputing its forward in the backward pass)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls per case")
    ap.add_argument("--reps", type=int, default=7, help="timed calls per case")
    ap.add_argument("--min-reps", type=int, default=3,
                    help="timed calls per case even past --max-seconds")
    ap.add_argument("--max-seconds", type=float, default=20.0,
                    help="stop a case's timed calls after this long (once --min-reps ran)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--_big-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    batches = parse_batches(args.batch)

    if args._big_child:
        egg_step_256_child(args.guided_diffusion, args.big_steps, args.attn_checkpoint,
                           batches[0] if batches else 1)
        return

    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(wanted) - set(WORKLOADS) - {"egg_step_256"}
    if unknown:
        ap.error(f"unknown workloads: {sorted(unknown)}")
    big = args.big or "egg_step_256" in wanted
    env = setup(args.device, args.precision)
    load = os.getloadavg()[0]
    if load > 0.5 and not Run.cuda():
        log(f"# warning: 1-minute load average is {load:.2f}; timings will be noisy "
            "(torch's OpenMP threads degrade badly when cores are shared)")
    log(describe(env))

    builders = {
        "conv_stack": conv_stack_cases,
        "attention_block": attention_block_cases,
        "egg_step": lambda: egg_step_cases(args.guided_diffusion, args.attn_checkpoint, batches),
        "v4_model": v4_model_cases,
    }
    if Run.cuda():
        builders["egg_step_256"] = lambda: egg_step_256_cuda_cases(
            args.guided_diffusion, args.attn_checkpoint, batches)
    tag = f" [{env['device']} {env['precision']}]"

    def report(name, res):
        results[name] = res
        if args.json:
            log(f"# {tsv_line(name, res)}{tag}")
        else:
            print(tsv_line(name, res), flush=True)

    def run_workload(w):
        # The case list (and with it the modules) lives only in this call.
        for name, fn in builders[w]():
            report(name, run_case(name, fn, args))

    results = {}
    order = [w for w in wanted if w != "egg_step_256"]
    if big and Run.cuda():
        order.append("egg_step_256")
    for w in order:
        run_workload(w)
        release_gpu_memory()

    if big and not Run.cuda():
        for b in batches or EGG_STEP_256_BATCHES:
            res = egg_step_256(args.guided_diffusion, args.big_steps, args.attn_checkpoint, b)
            if res is not None:
                report(f"egg_step_256/B{b}", res)

    if args.json:
        out = {
            "torch": torch.__version__,
            "device": env["device"],
            "precision": env["precision"],
            "gpu": env["gpu"],
            "threads": torch.get_num_threads(),
            "loadavg_at_start": load,
            "warmup": args.warmup,
            "attn_checkpoint": args.attn_checkpoint,
        }
        if batches:
            out["batches"] = batches
        out.update((k, v) for k, v in env.items() if k not in out)
        out["results"] = results
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
