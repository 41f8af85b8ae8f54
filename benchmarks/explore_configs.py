#!/usr/bin/env python3
"""One-off GPU exploration behind the launch-config changes of 2026-11-27 (results:
benchmarks/results/sweep_session3.txt). Sections (any order):

- inductor: write Inductor's generated code for the ops where it led (OUTDIR/inductor_*.py);
- act / act2: activation block sizes and warps (and a flat 1-D gated variant) beside Inductor;
- norm: rows/warps of the norm kernel; quant: tile and group configs; rows / rows2: the
  per-token and norm + quant row kernels (single pass vs chunked); variants: static quant
  kernel variants (grid order, masks, the exact-division correction);
- later sessions (results/sweep_session5_h200.txt, sweep_session6_h200.txt): rows3, group3,
  fused3, fused4 (per-token, per-group and norm + quant on the H200), act3 (the erfc GELU),
  rope3 / rope4 / rope5 (RoPE launch configurations, masks, eviction hints, load order),
  act5 / act6 / act7 (activation block sizes, the flat single-input and gated kernels; act7 launches
  the production flat gated kernel, which merged its explore copy with fatrelu's scalar and int64 offsets);
- this session (results/sweep_session7_h200.txt): act8 (the flat gated kernel's configurations
  for every gated activation), quant8 (a flat static quant kernel), norm8 (the norm kernel without masks),
  norm9 (norm launch configurations beside Inductor's kernel), norm10 (norms at 16384 tokens),
  act9 (cache hints on the flat single-input kernel);
- session 8 (results/sweep_session8_h200.txt): rope6 (warps a program of the RoPE kernel), quant11
  (static norm + quant configurations at 8192 columns on a cold and a warm GPU), quant12 (the leading
  ones, run in several processes), quant13 (a row-pipelined fused-add norm + static quant kernel), quant14 (its production form by programs and chunk);
- session 9 (results/sweep_session9.txt): quant15 / quant16 (the H100's static and fused-add
  norm + quant misses, and the row-pipelined kernel at 8192 columns); session 10
  (results/sweep_session10.txt): quant17 (the flat static quant kernel with L2 hints, streaming
  stores, and without its exact-division step), act10 (the H100's activation ties by flat configuration);
  session 15 (results/sweep_session15_h200.txt): norm11 (norms over 8192 columns by configuration and
  with cache hints, round by round beside Inductor: benchmarks/rematch.py's method);
  session 16 (results/sweep_session16_h200.txt): norm12 (norm11's leads at the gemma norm, one run a
  process), norm13 (a looped two-pass norm kernel, the shape of Inductor's, where Inductor leads), norm14
  (the production kernel's two-pass path there), norm15 (its unmasked form), norm16 (one row a program
  below it), quant18 (L2 reuse between the two passes of the dynamic per-tensor quant);
  session 17 (results/sweep_session17_*.txt): norm16 run on an H100, norm17 (1024 rows of 8192);
  session 18 (results/sweep_session18_h100.txt): norm18 (the fused adds at 1024 rows of 4096 on the H100).

    python benchmarks/explore_configs.py OUTDIR section...

Peers' figures here are for orientation (one compiled function is reused across shapes,
so Inductor's numbers after its recompile limit are eager ones); bench_*.py are the
measurements of record.
"""

# Every lambda below is called (or captured into a CUDA graph) within its loop iteration;
# a failing section or configuration is logged and the exploration goes on.
# ruff: noqa: B023, BLE001

import os
import sys
import time
import traceback
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, "benchmarks")
import harness as H
from bench_quant import KINDS
from irshim import ir

ir.load_providers()
from irshim.kernels.triton import activation as TA
from irshim.kernels.triton import layernorm as TL
from irshim.kernels.triton import quant as TQ
from torch._inductor.utils import run_and_get_code

OUT = Path(sys.argv[1]); OUT.mkdir(parents=True, exist_ok=True)
SECTIONS = sys.argv[2:]
torch.set_grad_enabled(False)
DEV = "cuda"
BF = torch.bfloat16
print(torch.cuda.get_device_name(0), torch.__version__, triton.__version__, flush=True)

def log(*a):
    print(*a, flush=True)

def t_us(fns, nbytes):
    calls = max(2, min(100, (1 << 30) // max(nbytes, 1)))
    return H.graph_time_us(fns, calls)

def sets_for(make, nbytes):
    n = max(1, min(8, -(-(256 << 20) // max(nbytes, 1))))
    return [make() for _ in range(n)]

# ---------------------------------------------------------------- inductor code
def dump_inductor():
    cases = {
        "gelu_and_mul": (lambda: (torch.randn(16384, 2 * 14336, device=DEV, dtype=BF), "none")),
        "quick_gelu": (lambda: (torch.randn(16384, 14336, device=DEV, dtype=BF),)),
        "gelu_new": (lambda: (torch.randn(16384, 14336, device=DEV, dtype=BF),)),
        "rms_norm": (lambda: ir.get_op("rms_norm").generate_inputs(16384, 8192, BF, DEV)),
        "static_scaled_fp8_quant": (lambda: ir.get_op("static_scaled_fp8_quant").generate_inputs(16, 4096, BF, DEV)),
        "rms_norm_static_fp8_quant": (lambda: ir.get_op("rms_norm_static_fp8_quant").generate_inputs(1024, 14336, BF, DEV)),
        "per_token_group_fp8_quant": (lambda: ir.get_op("per_token_group_fp8_quant").generate_inputs(16384, 4096, BF, DEV)),
    }
    for name, make in cases.items():
        try:
            torch._dynamo.reset()
            args = make()
            fn = torch.compile(ir.get_op(name).native, dynamic=False)
            _, codes = run_and_get_code(fn, *args)
            fn(*args); torch.cuda.synchronize()
            (OUT / f"inductor_{name}.py").write_text("\n\n".join(codes))
            lines = [f"code: inductor_{name}.py"]
            log("inductor", name, *lines)
        except Exception as e:
            log("inductor", name, "failed", repr(e)[:300])

def dump_ours(kernel, tag):
    try:
        for caches in kernel.device_caches.values():
            for k in caches[0].values():
                (OUT / f"ours_{tag}_{len(os.listdir(OUT))}.ptx").write_text(k.asm["ptx"])
                log("ours", tag, "regs", k.n_regs, "spills", k.n_spills)
    except Exception as e:
        log("dump ours failed", repr(e))

# ---------------------------------------------------------------- activations
@triton.jit
def _gelu_variant(x, V: tl.constexpr):
    if V == 0:
        return 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))
    elif V == 1:
        h = 0.5 * x
        return tl.fma(h, tl.erf(x * 0.7071067811865476), h)
    elif V == 3:  # the erfc form, since adopted (kernels/triton/activation.py _gelu_erf)
        return TA._gelu_erf(x)
    else:  # silu: the ceiling for a cheap activation
        return x / (1.0 + tl.exp(-x))

@triton.jit
def _gated_flat(X, OUT, N, D: tl.constexpr, BLOCK: tl.constexpr, V: tl.constexpr, EVEN: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    row = idx // D
    col = idx % D
    src = X + row.to(tl.int64) * (2 * D) + col
    if EVEN:
        a = tl.load(src).to(tl.float32)
        b = tl.load(src + D).to(tl.float32)
    else:
        m = idx < N
        a = tl.load(src, mask=m, other=0.0).to(tl.float32)
        b = tl.load(src + D, mask=m, other=0.0).to(tl.float32)
    y = (_gelu_variant(a, V) * b).to(OUT.dtype.element_ty)
    if EVEN:
        tl.store(OUT + idx, y)
    else:
        tl.store(OUT + idx, y, mask=idx < N)

def act_sweep():
    for t, d in ((1024, 14336), (4096, 14336), (16384, 14336), (1024, 28672), (16384, 28672)):
        nbytes = 3 * t * d * 2
        sets = sets_for(lambda: torch.randn(t, 2 * d, device=DEV, dtype=BF), nbytes)
        comp = torch.compile(ir.get_op("gelu_and_mul").native, dynamic=False)
        res = []
        for n in (512, 1024, 2048, 4096):
            for w in (2, 4, 8, 16):
                if n // (32 * w) < 2 or n // (32 * w) > 32:
                    continue
                cfg = TA.ActConfig(1, n, w)
                res.append((t_us([lambda x=x, c=cfg: TA.gated(x, "gelu", config=c) for x in sets], nbytes), f"cur {n}/{w}"))
        for V in (0, 1, 2):
            for blk, w in ((1024, 4), (2048, 4), (2048, 8), (4096, 8)):
                def f(x, blk=blk, w=w, V=V):
                    out = torch.empty(t, d, device=DEV, dtype=BF)
                    n = t * d
                    _gated_flat[(triton.cdiv(n, blk),)](x, out, n, d, BLOCK=blk, V=V, EVEN=n % blk == 0, num_warps=w)
                    return out
                res.append((t_us([lambda x=x, f=f: f(x) for x in sets], nbytes), f"flat V{V} {blk}/{w}"))
        ind = t_us([lambda x=x: comp(x, "none") for x in sets], nbytes)
        cur = t_us([lambda x=x: TA.gated(x, "gelu") for x in sets], nbytes)
        silu = t_us([lambda x=x: TA.gated(x, "silu") for x in sets], nbytes)
        res.sort()
        log(f"gelu_and_mul {t}x{d} | inductor {ind:.2f} heuristic {cur:.2f} silu {silu:.2f} | "
            + " ".join(f"{n}:{u:.2f}" for u, n in res[:12]))
    dump_ours(TA._gated_kernel, "gated")
    dump_ours(_gated_flat, "flat")
    # plain activations
    for name, act in (("quick_gelu", "quick_gelu"), ("gelu_new", "gelu_tanh"), ("gelu_fast", "gelu_fast")):
        comp = torch.compile(ir.get_op(name).native, dynamic=False)
        for t, d in ((1024, 14336), (16384, 14336), (4096, 28672)):
            nbytes = 2 * t * d * 2
            sets = sets_for(lambda: torch.randn(t, d, device=DEV, dtype=BF), nbytes)
            res = []
            for m, n, w in [(1, 1024, 4), (1, 2048, 4), (1, 2048, 8), (1, 4096, 8), (1, 4096, 16), (2, 1024, 4),
                            (2, 2048, 8), (4, 1024, 8), (1, 1024, 2), (1, 512, 2), (1, 8192, 16), (1, 2048, 2)]:
                cfg = TA.ActConfig(m, n, w)
                res.append((t_us([lambda x=x, c=cfg: TA.plain(x, act, config=c) for x in sets], nbytes), f"{m}/{n}/{w}"))
            ind = t_us([lambda x=x: comp(x) for x in sets], nbytes)
            cur = t_us([lambda x=x: TA.plain(x, act) for x in sets], nbytes)
            res.sort()
            log(f"{name} {t}x{d} | inductor {ind:.2f} heuristic {cur:.2f} | " + " ".join(f"{n}:{u:.2f}" for u, n in res[:8]))
    dump_ours(TA._plain_kernel, "plain")

# ---------------------------------------------------------------- norms
def norm_sweep():
    for name, t, h, dt in (("rms_norm", 1024, 8192, BF), ("rms_norm", 16384, 8192, BF), ("rms_norm", 16384, 4096, BF),
                           ("fused_add_rms_norm", 1024, 8192, BF), ("fused_add_rms_norm", 4096, 4096, torch.float16),
                           ("fused_add_rms_norm", 16384, 8192, BF), ("rms_norm", 4096, 8192, BF)):
        op = ir.get_op(name)
        nbytes = (4 if "fused" in name else 2) * t * h * 2
        sets = sets_for(lambda: op.generate_inputs(t, h, dt, DEV), nbytes)
        comp = torch.compile(op.native, dynamic=False)
        into = TL.fused_add_rms_norm_into if "fused" in name else TL.rms_norm_into
        res = []
        for m in (1, 2, 4):
            for w in (2, 4, 8, 16, 32):
                if m * h // (32 * w) < 4 or m * h // (32 * w) > 64:
                    continue
                cfg = TL.NormConfig(m, triton.next_power_of_2(h), w, True)
                res.append((t_us([lambda a=a, c=cfg: into(*a, config=c) for a in sets], nbytes), f"{m}/{w}"))
        ind = t_us([lambda a=a: comp(*a) for a in sets], nbytes)
        cur = t_us([lambda a=a: into(*a) for a in sets], nbytes)
        res.sort()
        log(f"{name} {t}x{h} {dt} | inductor {ind:.2f} heuristic {cur:.2f} | " + " ".join(f"{n}:{u:.2f}" for u, n in res[:8]))

# ---------------------------------------------------------------- quant
def quant_sweep():
    op = ir.get_op("static_scaled_fp8_quant")
    comp = torch.compile(op.native, dynamic=False)
    for t in (1, 16, 64, 1024, 16384):
        for h in (4096, 8192, 14336):
            nbytes = 3 * t * h
            sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nbytes)
            res = []
            for m in (1, 2, 4, 8):
                for n in (128, 256, 512, 1024, 2048):
                    for w in (1, 2, 4, 8):
                        per = m * n // (32 * w)
                        if per < 4 or per > 32 or m > max(1, t):
                            continue
                        if t <= 64 and (m * n > 4096 or w > 4 or m > 2):
                            continue
                        if t > 64 and (m * n < 2048 or n < 512):
                            continue
                        cfg = TQ.TileConfig(m, n, w)
                        res.append((t_us([lambda a=a, c=cfg: TQ.static_quant(*a, config=c) for a in sets], nbytes), f"{m}/{n}/{w}"))
            ind = t_us([lambda a=a: comp(*a) for a in sets], nbytes)
            cur = t_us([lambda a=a: TQ.static_quant(*a) for a in sets], nbytes)
            res.sort()
            log(f"static {t}x{h} | inductor {ind:.2f} heuristic {cur:.2f} {TQ.tile_config(t, h)} | " + " ".join(f"{n}:{u:.2f}" for u, n in res[:8]))
    op = ir.get_op("per_token_group_fp8_quant")
    comp = torch.compile(op.native, dynamic=False)
    for t in (1, 16, 1024, 16384):
        for h in (4096, 8192, 14336):
            nbytes = 3 * t * h + 4 * t * h // 128
            sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nbytes)
            res = []
            for g in (1, 2, 4, 8, 16, 32, 64):
                for w in (1, 2, 4, 8):
                    per = g * 128 // (32 * w)
                    if per < 4 or per > 64:
                        continue
                    cfg = TQ.TileConfig(1, g * 128, w)  # g groups a program (the kernel before session 5)
                    res.append((t_us([lambda a=a, c=cfg: TQ.group_quant(*a, config=c) for a in sets], nbytes), f"{g}/{w}"))
            ind = t_us([lambda a=a: comp(*a) for a in sets], nbytes)
            cur = t_us([lambda a=a: TQ.group_quant(*a) for a in sets], nbytes)
            res.sort()
            log(f"group128 {t}x{h} | inductor {ind:.2f} heuristic {cur:.2f} {TQ.group_config(t, h, 128)} | " + " ".join(f"{n}:{u:.2f}" for u, n in res[:8]))

def rows_sweep():
    for name, t, h in (("dynamic_per_token_scaled_fp8_quant", 16384, 14336), ("dynamic_per_token_scaled_fp8_quant", 4096, 14336),
                       ("rms_norm_static_fp8_quant", 1024, 14336), ("fused_add_rms_norm_static_fp8_quant", 1024, 14336),
                       ("fused_add_rms_norm_static_fp8_quant", 4096, 14336)):
        op = ir.get_op(name)
        nb = {"dynamic_per_token_scaled_fp8_quant": 3, "rms_norm_static_fp8_quant": 3, "fused_add_rms_norm_static_fp8_quant": 7}[name] * t * h
        sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nb)
        comp = torch.compile(op.native, dynamic=False)
        res = []
        cfgs = [TQ.RowConfig(m, 16384, w, True) for m in (1, 2) for w in (8, 16, 32)]
        cfgs += [TQ.RowConfig(1, c, w, False) for c in (2048, 4096, 8192) for w in (4, 8, 16, 32) if 4 <= c // (32 * w) <= 64]
        cfgs += [TQ.RowConfig(2, c, w, False) for c in (2048, 4096) for w in (8, 16, 32) if 4 <= 2 * c // (32 * w) <= 64]
        for cfg in cfgs:
            if name.startswith("dynamic"):
                fns = [lambda a=a, c=cfg: TQ.per_token_quant(*a, config=c) for a in sets]
            elif name.startswith("rms"):
                fns = [lambda a=a, c=cfg: TQ.rms_norm_quant(a[0], None, a[1], a[2], a[3], None, config=c) for a in sets]
            else:
                fns = [lambda a=a, c=cfg: TQ.rms_norm_quant(a[0], a[1], a[2], a[3], a[4], None, config=c) for a in sets]
            try:
                res.append((t_us(fns, nb), f"{cfg.block_m}/{cfg.block_n}/{cfg.num_warps}/{'s' if cfg.single_pass else 'c'}"))
            except Exception as e:
                log("cfg failed", cfg, repr(e)[:100])
        ind = t_us([lambda a=a: comp(*a) for a in sets], nb)
        cur = t_us([lambda a=a: op(*a) for a in sets], nb)
        res.sort()
        log(f"{name} {t}x{h} | inductor {ind:.2f} heuristic {cur:.2f} | " + " ".join(f"{n}:{u:.2f}" for u, n in res[:8]))

@triton.jit
def _sq_flat(X, Q, SCALE, N, BLOCK: tl.constexpr, V: tl.constexpr, EVEN: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if EVEN:
        x = tl.load(X + idx).to(tl.float32)
    else:
        x = tl.load(X + idx, mask=idx < N, other=0.0).to(tl.float32)
    scale = tl.load(SCALE)
    if V == 3:
        y = tl.minimum(tl.maximum(x / scale, -448.0), 448.0)
        q = y.to(Q.dtype.element_ty)
    elif V == 1:
        q = TQ._to_fp8(x, scale, Q)
    else:
        inv = tl.math.div_rn(tl.full(scale.shape, 1.0, tl.float32), scale)
        y = x * inv
        rem = tl.fma(-y, scale, x)
        y = tl.fma(rem, inv, y)
        y = tl.minimum(tl.maximum(y, -448.0), 448.0)
        q = y.to(Q.dtype.element_ty, fp_downcast_rounding="rtne")
    if EVEN:
        tl.store(Q + idx, q)
    else:
        tl.store(Q + idx, q, mask=idx < N)


def variants():
    op = ir.get_op("static_scaled_fp8_quant")
    for t, h in ((1024, 8192), (4096, 14336), (16384, 14336), (16384, 4096)):
        nbytes = 3 * t * h
        sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nbytes)
        comp = torch.compile(op.native, dynamic=False)
        res = [(t_us([lambda a=a: comp(*a) for a in sets], nbytes), "inductor"),
               (t_us([lambda a=a: TQ.static_quant(*a) for a in sets], nbytes), "heuristic")]
        for blk, w in ((2048, 8), (1024, 4), (2048, 4), (4096, 8)):
            res.append((t_us([lambda a=a: TQ.static_quant(*a, config=TQ.TileConfig(1, blk, w)) for a in sets], nbytes), f"cur {blk}/{w}"))
            for V, even in ((1, True), (1, False), (2, True), (3, True)):
                def f(x, s, blk=blk, w=w, V=V, even=even):
                    q = torch.empty(x.shape, device=DEV, dtype=torch.float8_e4m3fn)
                    _sq_flat[(triton.cdiv(x.numel(), blk),)](x, q, s, x.numel(), BLOCK=blk, V=V, EVEN=even, num_warps=w)
                    return q
                res.append((t_us([lambda a=a, f=f: f(*a) for a in sets], nbytes), f"V{V}{'e' if even else 'm'} {blk}/{w}"))
        res.sort()
        log(f"static variants {t}x{h} | " + " ".join(f"{n}:{u:.2f}" for u, n in res))


def rows2():
    for name, t, h in (("rms_norm_static_fp8_quant", 4096, 14336), ("rms_norm_static_fp8_quant", 16384, 14336),
                       ("fused_add_rms_norm_static_fp8_quant", 16384, 14336), ("rms_norm_static_fp8_quant", 1024, 8192),
                       ("fused_add_rms_norm_static_fp8_quant", 1024, 8192)):
        op = ir.get_op(name)
        nb = (3 if name.startswith("rms") else 7) * t * h
        sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nb)
        res = []
        for cfg in [TQ.RowConfig(1, 2048, 8, False), TQ.RowConfig(2, 2048, 8, False), TQ.RowConfig(1, 4096, 16, False),
                    TQ.RowConfig(1, 4096, 8, False), TQ.RowConfig(2, 16384, 8, True), TQ.RowConfig(1, 16384, 16, True),
                    TQ.RowConfig(1, 8192, 8, True), TQ.RowConfig(2, 8192, 8, True), TQ.RowConfig(1, 8192, 16, True)]:
            if cfg.single_pass and cfg.block_n < triton.next_power_of_2(h):
                continue
            if name.startswith("rms"):
                fns = [lambda a=a, c=cfg: TQ.rms_norm_quant(a[0], None, a[1], a[2], a[3], None, config=c) for a in sets]
            else:
                fns = [lambda a=a, c=cfg: TQ.rms_norm_quant(a[0], a[1], a[2], a[3], a[4], None, config=c) for a in sets]
            res.append((t_us(fns, nb), f"{cfg.block_m}/{cfg.block_n}/{cfg.num_warps}/{'s' if cfg.single_pass else 'c'}"))
        cur = t_us([lambda a=a: op(*a) for a in sets], nb)
        res.sort()
        log(f"{name} {t}x{h} | heuristic {cur:.2f} {TQ.row_config(t, h, KINDS[name])} | " + " ".join(f"{n}:{u:.2f}" for u, n in res))


def act2():
    for name, act, gated, shapes in (("gelu_and_mul", "gelu", True, ((1024, 14336), (16384, 14336))),
                                     ("quick_gelu", "quick_gelu", False, ((1024, 14336), (16384, 14336))),
                                     ("gelu_new", "gelu_tanh", False, ((16384, 14336),))):
        op = ir.get_op(name)
        extra = ("none",) if name == "gelu_and_mul" else ()
        for t, d in shapes:
            torch._dynamo.reset()
            comp = torch.compile(op.native, dynamic=False)
            nbytes = (3 if gated else 2) * t * d * 2
            sets = sets_for(lambda: torch.randn(t, 2 * d if gated else d, device=DEV, dtype=BF), nbytes)
            res = [(t_us([lambda x=x: comp(x, *extra) for x in sets], nbytes), "inductor")]
            res.append((t_us([lambda x=x: op(x, *extra) for x in sets], nbytes), "heuristic"))
            for n, w in ((256, 2), (256, 4), (512, 2), (512, 4), (512, 8), (1024, 2), (1024, 4), (1024, 8),
                         (2048, 4), (2048, 8), (4096, 8), (4096, 16)):
                cfg = TA.ActConfig(1, n, w)
                fn = (lambda x, c=cfg: TA.gated(x, act, config=c)) if gated else (lambda x, c=cfg: TA.plain(x, act, config=c))
                res.append((t_us([lambda x=x, fn=fn: fn(x) for x in sets], nbytes), f"{n}/{w}"))
            res.sort()
            log(f"act2 {name} {t}x{d} | " + " ".join(f"{n}:{u:.2f}" for u, n in res))


# ------------------------------------------------ session 5: H200 row / group / fused-add configs
# (results/sweep_session5_h200.txt; its first run timed the low-precision amax and the group
# tiles as separate kernels here, since moved into kernels/triton/quant.py)
def _regs(kernel, tag):
    try:
        for caches in kernel.device_caches.values():
            for k in caches[0].values():
                log("regs", tag, k.n_regs, "spills", k.n_spills, "warps", k.metadata.num_warps)
    except Exception as e:
        log("regs failed", tag, repr(e)[:80])


def rows3():
    """Per-token quant on the H200: single pass / chunked configs."""
    op = ir.get_op("dynamic_per_token_scaled_fp8_quant")
    for t, h in ((16384, 14336), (16384, 8192), (4096, 14336), (1024, 14336), (16384, 4096),
                 (1, 14336), (16, 8192), (128, 14336)):
        nb = 3 * t * h
        sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nb)
        torch._dynamo.reset()
        comp = torch.compile(op.native, dynamic=False)
        res = [(t_us([lambda a=a: comp(*a) for a in sets], nb), "inductor"),
               (t_us([lambda a=a: op(*a) for a in sets], nb), f"heuristic {TQ.row_config(t, h)}")]
        cfgs = [TQ.RowConfig(m, triton.next_power_of_2(h), w, True) for m in (1, 2) for w in (4, 8, 16, 32)]
        cfgs += [TQ.RowConfig(1, c, w, False) for c in (2048, 4096, 8192) for w in (4, 8, 16)]
        for cfg in cfgs:
            fns = [lambda a=a, c=cfg: TQ.per_token_quant(*a, config=c) for a in sets]
            res.append((t_us(fns, nb), f"{cfg.block_m}/{cfg.block_n}/{cfg.num_warps}/{'s' if cfg.single_pass else 'c'}"))
        res.sort()
        log(f"per_token {t}x{h} | " + " ".join(f"{n}:{u:.2f}" for u, n in res))
    _regs(TQ._per_token_quant_kernel, "per_token")


def group3():
    """Per-group (128) quant on the H200: tile configs (block_n a multiple of the group)."""
    op = ir.get_op("per_token_group_fp8_quant")
    for t, h in ((16384, 4096), (16384, 8192), (16384, 14336), (1024, 14336), (1, 4096), (16, 14336), (64, 8192)):
        nb = 3 * t * h + 4 * t * h // 128
        sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nb)
        torch._dynamo.reset()
        comp = torch.compile(op.native, dynamic=False)
        res = [(t_us([lambda a=a: comp(*a) for a in sets], nb), "inductor"),
               (t_us([lambda a=a: op(*a) for a in sets], nb), f"heuristic {TQ.group_config(t, h, 128)}")]
        for m, n, w in ((1, 1024, 4), (1, 2048, 4), (1, 2048, 8), (2, 1024, 4), (2, 2048, 8), (1, 4096, 8), (4, 512, 4),
                        (1, 512, 2), (1, 1024, 2), (1, 512, 1), (1, 512, 4), (1, 256, 1), (1, 128, 1), (1, 256, 2)):
            if m > t:
                continue
            fns = [lambda a=a, c=TQ.TileConfig(m, n, w): TQ.group_quant(*a, config=c) for a in sets]
            res.append((t_us(fns, nb), f"{m}/{n}/{w}"))
        res.sort()
        log(f"group {t}x{h} | " + " ".join(f"{n}:{u:.2f}" for u, n in res))


def _norm_quant_case(name, t, h):
    """(op, fused-add?, bytes moved, input sets, Inductor's compile) of a static norm + quant case."""
    op = ir.get_op(name)
    fused_add = name.startswith("fused")
    nb = (7 if fused_add else 3) * t * h
    sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nb)
    torch._dynamo.reset()
    return op, fused_add, nb, sets, torch.compile(op.native, dynamic=False)


def fused3():
    """Norm + static quant on the H200 (fused-add at 1024 tokens, plain at 8192 columns): configs
    beside Inductor and the unfused Triton pair."""
    for name, t, h in (("fused_add_rms_norm_static_fp8_quant", 1024, 4096),
                       ("fused_add_rms_norm_static_fp8_quant", 1024, 8192),
                       ("fused_add_rms_norm_static_fp8_quant", 1024, 14336),
                       ("fused_add_rms_norm_static_fp8_quant", 4096, 14336),
                       ("rms_norm_static_fp8_quant", 1024, 8192), ("rms_norm_static_fp8_quant", 16384, 8192)):
        op, fused_add, nb, sets, comp = _norm_quant_case(name, t, h)
        norm = ir.get_op("fused_add_rms_norm" if fused_add else "rms_norm")
        quant = ir.get_op("static_scaled_fp8_quant")
        if fused_add:
            pair = [lambda a=a: quant(norm(a[0], a[1], a[2], a[3])[0], a[4]) for a in sets]
        else:
            pair = [lambda a=a: quant(norm(a[0], a[1], a[2]), a[3]) for a in sets]
        res = [(t_us([lambda a=a: comp(*a) for a in sets], nb), "inductor"), (t_us(pair, nb), "pair"),
               (t_us([lambda a=a: op(*a) for a in sets], nb), f"heuristic {TQ.row_config(t, h, KINDS[name])}")]
        bn = triton.next_power_of_2(h)
        cfgs = [TQ.RowConfig(m, bn, w, True) for m in (1, 2, 4) for w in (4, 8, 16, 32) if m * bn <= 32768]
        cfgs += [TQ.RowConfig(m, c, w, False) for m in (1, 2) for c in (1024, 2048, 4096) for w in (4, 8, 16) if c < bn]
        for cfg in cfgs:
            if fused_add:
                fns = [lambda a=a, c=cfg: TQ.rms_norm_quant(a[0], a[1], a[2], a[3], a[4], None, config=c) for a in sets]
            else:
                fns = [lambda a=a, c=cfg: TQ.rms_norm_quant(a[0], None, a[1], a[2], a[3], None, config=c) for a in sets]
            try:
                res.append((t_us(fns, nb), f"{cfg.block_m}/{cfg.block_n}/{cfg.num_warps}/{'s' if cfg.single_pass else 'c'}"))
            except Exception as e:
                log("cfg failed", cfg, repr(e)[:100])
        res.sort()
        log(f"{name} {t}x{h} | " + " ".join(f"{n}:{u:.2f}" for u, n in res))
    _regs(TQ._rms_norm_quant_kernel, "norm_quant")



@triton.jit
def _bf16_to_f32(v):
    """bf16 -> float32 through integer ops: exact, and not merged with a `.to(tl.float32)`
    of the same value, so the 16-bit value (not its float32 copy) stays live."""
    return (v.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)


@triton.jit
def _norm_quant_lp(X, X_ROW_STRIDE, R, R_ROW_STRIDE, W, Q, Q_ROW_STRIDE, RES_OUT, RES_ROW_STRIDE, SCALE,
                   N_ROWS, N_COLS, EPS, HAS_RESIDUAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Static norm + quant, single pass, bf16 only: the (summed) row stays live in bf16 across
    the sum of squares (float32 copy for the reduction, integer-op copy after it)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < N_ROWS
    rows64 = rows.to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    col_mask = cols < N_COLS
    mask = row_mask[:, None] & col_mask[None, :]
    x = tl.load(X + rows64[:, None] * X_ROW_STRIDE + cols[None, :], mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(R + rows64[:, None] * R_ROW_STRIDE + cols[None, :], mask=mask, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(tl.bfloat16)
        tl.store(RES_OUT + rows64[:, None] * RES_ROW_STRIDE + cols[None, :], x, mask=mask)
    w = tl.load(W + cols, mask=col_mask, other=0.0)
    scale = tl.load(SCALE)
    xf = x.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(xf * xf, axis=1) / N_COLS + tl.cast(EPS, tl.float32))
    y = _bf16_to_f32(x) * rstd[:, None] * _bf16_to_f32(w)[None, :]
    y = y.to(tl.bfloat16).to(tl.float32)
    tl.store(Q + rows64[:, None] * Q_ROW_STRIDE + cols[None, :], TQ._to_fp8(y, scale, Q), mask=mask)


def fused4():
    """The bf16-live norm + static quant variant against the kernel's best configurations."""
    for name, t, h in (("fused_add_rms_norm_static_fp8_quant", 1024, 14336), ("rms_norm_static_fp8_quant", 1024, 8192),
                       ("fused_add_rms_norm_static_fp8_quant", 4096, 14336), ("rms_norm_static_fp8_quant", 16384, 8192),
                       ("fused_add_rms_norm_static_fp8_quant", 1024, 8192)):
        op, fused_add, nb, sets, comp = _norm_quant_case(name, t, h)
        res = [(t_us([lambda a=a: comp(*a) for a in sets], nb), "inductor"),
               (t_us([lambda a=a: op(*a) for a in sets], nb), f"heuristic {TQ.row_config(t, h, KINDS[name])}")]
        bn = triton.next_power_of_2(h)
        for cfg in [TQ.RowConfig(1, 2048, 4, False), TQ.RowConfig(1, 2048, 8, False), TQ.RowConfig(2, bn, 32, True),
                    TQ.RowConfig(1, bn, 32, True), TQ.RowConfig(2, bn, 4, True), TQ.RowConfig(1, bn, 8, True)]:
            if fused_add:
                fns = [lambda a=a, c=cfg: TQ.rms_norm_quant(a[0], a[1], a[2], a[3], a[4], None, config=c) for a in sets]
            else:
                fns = [lambda a=a, c=cfg: TQ.rms_norm_quant(a[0], None, a[1], a[2], a[3], None, config=c) for a in sets]
            res.append((t_us(fns, nb), f"{cfg.block_m}/{cfg.block_n}/{cfg.num_warps}/{'s' if cfg.single_pass else 'c'}"))
        ref = op(*sets[0])
        for m, w in ((1, 4), (1, 8), (1, 16), (1, 32), (2, 4), (2, 8), (2, 16)):
            def f(a, m=m, w=w):
                x = a[0]
                r = a[1] if fused_add else x
                wt, eps, sc = a[-3], a[-2], a[-1]
                q = torch.empty(x.shape, device=DEV, dtype=torch.float8_e4m3fn)
                res_out = torch.empty_like(x) if fused_add else x
                _norm_quant_lp[(triton.cdiv(t, m),)](x, x.stride(0), r, r.stride(0), wt, q, q.stride(0), res_out,
                                                     res_out.stride(0), sc, t, h, eps, HAS_RESIDUAL=fused_add,
                                                     BLOCK_M=m, BLOCK_N=bn, num_warps=w)
                return (q, res_out) if fused_add else q
            try:
                out = f(sets[0])
                outs, refs = (out, ref) if fused_add else ((out,), (ref,))
                ok = all(torch.equal(o.view(torch.uint8) if o.dtype == torch.float8_e4m3fn else o,
                                     e.view(torch.uint8) if e.dtype == torch.float8_e4m3fn else e) for o, e in zip(outs, refs))
                res.append((t_us([lambda a=a, f=f: f(a) for a in sets], nb), f"LP{m}/{w}{'' if ok else '!MISMATCH'}"))
            except Exception as e:
                log("lp failed", m, w, repr(e)[:300])
        res.sort()
        log(f"{name} {t}x{h} | " + " ".join(f"{n}:{u:.2f}" for u, n in res))
    _regs(_norm_quant_lp, "norm_quant_lp")



def act3():
    """gelu_and_mul with an erfc-based GELU (one exp, no branch) against libdevice erf: speed beside
    Inductor and the product kernel, and accuracy against float64 (float32 outputs)."""
    # Accuracy: b = 1, x over a wide grid and N(0, 1) samples; float32 in and out.
    x = torch.cat([torch.linspace(-12, 12, 1 << 20, device=DEV), torch.randn(1 << 20, device=DEV) * 3])
    d = x.numel()
    xx = torch.stack([x, torch.ones_like(x)]).reshape(1, 2 * d)
    ref = torch.nn.functional.gelu(x.double())
    for V in (0, 3):
        out = torch.empty(1, d, device=DEV)
        _gated_flat[(triton.cdiv(d, 1024),)](xx, out, d, d, BLOCK=1024, V=V, EVEN=d % 1024 == 0, num_warps=4)
        err = (out[0].double() - ref).abs()
        rel = err / ref.abs().clamp_min(1e-30)
        big = ref.abs() > 1e-30
        log(f"act3 accuracy V{V}: max abs {err.max().item():.3e}, max rel (|gelu| > 1e-30) {rel[big].max().item():.3e}, "
            f"median rel {rel[big].median().item():.3e}, outside fp32 tol (1e-5, 1e-4): "
            f"{int((err > 1e-5 + 1e-4 * ref.abs()).sum())}")
    op = ir.get_op("gelu_and_mul")
    for t, d in ((1024, 14336), (4096, 14336), (16384, 14336), (1024, 28672), (16384, 28672)):
        torch._dynamo.reset()
        comp = torch.compile(op.native, dynamic=False)
        nbytes = 3 * t * d * 2
        sets = sets_for(lambda: torch.randn(t, 2 * d, device=DEV, dtype=BF), nbytes)
        res = [(t_us([lambda x=x: comp(x, "none") for x in sets], nbytes), "inductor"),
               (t_us([lambda x=x: op(x, "none") for x in sets], nbytes), "heuristic")]
        for V in (0, 3, 2):
            for blk, w in ((1024, 2), (2048, 4), (1024, 4), (2048, 8)):
                def f(x, blk=blk, w=w, V=V):
                    out = torch.empty(t, d, device=DEV, dtype=BF)
                    _gated_flat[(triton.cdiv(t * d, blk),)](x, out, t * d, d, BLOCK=blk, V=V, EVEN=(t * d) % blk == 0,
                                                            num_warps=w)
                    return out
                res.append((t_us([lambda x=x, f=f: f(x) for x in sets], nbytes), f"flat V{V} {blk}/{w}"))
        res.sort()
        log(f"act3 gelu_and_mul {t}x{d} | " + " ".join(f"{n}:{u:.2f}" for u, n in res))

# act4 (the gated kernel without its column mask) was run against an explore copy of the
# kernel, since merged into kernels/triton/activation.py (EVEN); its output is in
# results/sweep_session5_h200.txt.


@triton.jit
def _rope_v(POS, CACHE, CACHE_ROW_STRIDE, Q, Q_T_STRIDE, Q_OUT, QO_T_STRIDE, K, K_T_STRIDE, K_OUT, KO_T_STRIDE,
            N_TOKENS, NQ: tl.constexpr, NK: tl.constexpr, HALF: tl.constexpr, BLOCK_T: tl.constexpr,
            EVEN: tl.constexpr, SCALAR: tl.constexpr, EV: tl.constexpr, EV_KEEP: tl.constexpr,
            POS_FIRST: tl.constexpr = False, POS_EARLY: tl.constexpr = False):
    """NeoX, full rotary, heads contiguous (head stride 2 * HALF), head counts constexpr and powers of two:
    the production kernel with its masks dropped (EVEN), a scalar token base and int32 offsets within
    the block (SCALAR), streaming eviction hints on q / k and keep-hints on the cache (EV, EV_KEEP).
    Load order: q / k, then position, then cache rows (production); POS_FIRST: position and cache rows
    first; POS_EARLY: position, then q / k, then cache rows (no q / k load waits for the position)."""
    pid = tl.program_id(0)
    t_loc = tl.arange(0, BLOCK_T)
    half = tl.arange(0, HALF)
    hq = tl.arange(0, NQ)
    hk = tl.arange(0, NK)
    if SCALAR:
        base = pid.to(tl.int64) * BLOCK_T
        q_in = Q + base * Q_T_STRIDE + (t_loc[:, None, None] * Q_T_STRIDE + hq[None, :, None] * (2 * HALF) + half[None, None, :])
        k_in = K + base * K_T_STRIDE + (t_loc[:, None, None] * K_T_STRIDE + hk[None, :, None] * (2 * HALF) + half[None, None, :])
        q_out = Q_OUT + base * QO_T_STRIDE + (t_loc[:, None, None] * QO_T_STRIDE + hq[None, :, None] * (2 * HALF) + half[None, None, :])
        k_out = K_OUT + base * KO_T_STRIDE + (t_loc[:, None, None] * KO_T_STRIDE + hk[None, :, None] * (2 * HALF) + half[None, None, :])
        tokens = base + t_loc
    else:
        tokens = (pid * BLOCK_T + t_loc).to(tl.int64)
        q_in = Q + tokens[:, None, None] * Q_T_STRIDE + hq[None, :, None] * (2 * HALF) + half[None, None, :]
        k_in = K + tokens[:, None, None] * K_T_STRIDE + hk[None, :, None] * (2 * HALF) + half[None, None, :]
        q_out = Q_OUT + tokens[:, None, None] * QO_T_STRIDE + hq[None, :, None] * (2 * HALF) + half[None, None, :]
        k_out = K_OUT + tokens[:, None, None] * KO_T_STRIDE + hk[None, :, None] * (2 * HALF) + half[None, None, :]
    tm = None if EVEN else tokens < N_TOKENS
    mq = None if EVEN else tm[:, None, None] & (hq < NQ)[None, :, None] & (half < HALF)[None, None, :]
    mk = None if EVEN else tm[:, None, None] & (hk < NK)[None, :, None] & (half < HALF)[None, None, :]
    mc = None if EVEN else tm[:, None, None] & (half < HALF)[None, None, :]
    zero = None if EVEN else 0.0
    if POS_FIRST or POS_EARLY:
        pos = tl.load(POS + tokens, mask=tm, other=None if EVEN else 0).to(tl.int64)
    if POS_FIRST:  # the position -> cache row chain issued before the q / k loads
        rows = CACHE + pos[:, None, None] * CACHE_ROW_STRIDE + half[None, None, :]
        cos = tl.load(rows, mask=mc, other=zero, eviction_policy=EV_KEEP).to(tl.float32)
        sin = tl.load(rows + HALF, mask=mc, other=zero, eviction_policy=EV_KEEP).to(tl.float32)
    qa = tl.load(q_in, mask=mq, other=zero, eviction_policy=EV).to(tl.float32)
    qb = tl.load(q_in + HALF, mask=mq, other=zero, eviction_policy=EV).to(tl.float32)
    ka = tl.load(k_in, mask=mk, other=zero, eviction_policy=EV).to(tl.float32)
    kb = tl.load(k_in + HALF, mask=mk, other=zero, eviction_policy=EV).to(tl.float32)
    if not POS_FIRST:
        if not POS_EARLY:
            pos = tl.load(POS + tokens, mask=tm, other=None if EVEN else 0).to(tl.int64)
        rows = CACHE + pos[:, None, None] * CACHE_ROW_STRIDE + half[None, None, :]
        cos = tl.load(rows, mask=mc, other=zero, eviction_policy=EV_KEEP).to(tl.float32)
        sin = tl.load(rows + HALF, mask=mc, other=zero, eviction_policy=EV_KEEP).to(tl.float32)
    tl.store(q_out, (qa * cos - qb * sin).to(Q_OUT.dtype.element_ty), mask=mq)
    tl.store(q_out + HALF, (qb * cos + qa * sin).to(Q_OUT.dtype.element_ty), mask=mq)
    tl.store(k_out, (ka * cos - kb * sin).to(K_OUT.dtype.element_ty), mask=mk)
    tl.store(k_out + HALF, (kb * cos + ka * sin).to(K_OUT.dtype.element_ty), mask=mk)

def rope3():
    """RoPE kernel variants (masks, scalar token base, eviction hints) against the production kernel and
    Liger, functional form, Llama-3-8B and 70B/TP8 heads, random positions in an 8192-row cache."""
    import bench_rope as BR
    from irshim.kernels.triton import rope as TR
    liger = BR._liger()
    variants = {"V1 masked": (False, False, False), "V2 even": (True, False, False),
                "V3 even+scalar": (True, True, False), "V4 even+scalar+evict": (True, True, True),
                "V5 scalar": (False, True, False)}
    grid_cfgs = {"llama3-8b": ((1, 4), (1, 8), (2, 8)), "llama3-70b-tp8": ((1, 4), (2, 4), (4, 4), (4, 2))}
    sizes = {"llama3-8b": (1, 1024, 4096, 16384), "llama3-70b-tp8": (1, 128, 1024, 4096, 16384)}
    for model, (nq, nk, hs) in BR.MODELS.items():
        for t in sizes[model]:
            nbytes = BR.rope_bytes(t, nq, nk, hs, hs, 2)
            sets = sets_for(lambda: BR.make_inputs(t, nq, nk, hs, hs, True, BF, DEV, seed=7), nbytes)
            res = []
            case = H.Case(model, f"{t}", "bfloat16", t, nbytes, lambda: None)
            if liger is not None:
                res.append((t_us([liger.bind(case, a) for a in sets], nbytes), "liger"))
            res.append((t_us([lambda a=a: BR.OP(*a) for a in sets], nbytes), "op"))
            for bt, w in grid_cfgs[model]:
                base = TR.rope_config(t, nq, nk, hs // 2)
                cfg = TR.RopeConfig(bt, min(base.block_hq, 4096 // (bt * hs // 2)), min(base.block_hk, 4096 // (bt * hs // 2)), w)
                res.append((t_us([lambda a=a, cfg=cfg: TR.rotary_embedding_into(*a, config=cfg) for a in sets], nbytes),
                            f"V0 prod {bt}/{w}"))
                for name, (even, scalar, evict) in variants.items():
                    if even and t % bt:
                        continue
                    def f(a, bt=bt, w=w, even=even, scalar=scalar, evict=evict):
                        pos, q, k, _, _, cache, _ = a
                        qo, ko = torch.empty_like(q), torch.empty_like(k)
                        _rope_v[(triton.cdiv(t, bt),)](pos, cache, cache.stride(0), q, q.stride(0), qo, qo.stride(0),
                                                       k, k.stride(0), ko, ko.stride(0), t, NQ=nq, NK=nk, HALF=hs // 2,
                                                       BLOCK_T=bt, EVEN=even, SCALAR=scalar, EV="evict_first" if evict else "",
                                                       EV_KEEP="evict_last" if evict else "", num_warps=w)
                        return qo, ko
                    try:
                        a0 = sets[0]
                        qo, ko = f(a0)
                        eq, ek = BR.OP.native(*a0)
                        err = max((qo.float() - eq.float()).abs().max().item(), (ko.float() - ek.float()).abs().max().item())
                        if err > 0.05:
                            log(f"rope3 {name} {bt}/{w} {model} {t}: max err {err}")
                        res.append((t_us([lambda a=a, f=f: f(a) for a in sets], nbytes), f"{name} {bt}/{w}"))
                    except Exception as e:
                        log("rope3 failed", name, bt, w, repr(e)[:300])
            res.sort()
            log(f"rope3 {model} {t} | " + " ".join(f"{n}:{u:.2f}" for u, n in res[:12]))


def _two_rounds(tag, fns, nbytes, most=None):
    """Time every variant twice (to show the run-to-run spread beside the differences) and log
    them fastest first."""
    rounds = [{n: t_us(v, nbytes) for n, v in fns.items()} for _ in range(2)]
    order = sorted(fns, key=lambda n: min(r[n] for r in rounds))[:most]
    log(f"{tag} | " + " ".join(f"{n}:{rounds[0][n]:.2f}/{rounds[1][n]:.2f}" for n in order))


def _rope_variants(tag, tokens, seed, variants):
    """Liger, the op and `_rope_v` launches (unmasked, one token a program) with each variant's
    keyword arguments, at each Llama-3 shape; `variants`: name -> (kwargs, heads -> warps)."""
    import bench_rope as BR
    liger = BR._liger()
    for model, (nq, nk, hs) in BR.MODELS.items():
        for t in tokens:
            nbytes = BR.rope_bytes(t, nq, nk, hs, hs, 2)
            sets = sets_for(lambda: BR.make_inputs(t, nq, nk, hs, hs, True, BF, DEV, seed=seed), nbytes)
            case = H.Case(model, f"{t}", "bfloat16", t, nbytes, lambda: None)
            fns = {}
            if liger is not None:
                fns["liger"] = [liger.bind(case, a) for a in sets]
            fns["op"] = [lambda a=a: BR.OP(*a) for a in sets]
            for name, (kwargs, warps) in variants.items():
                w = warps(nq)
                def f(a, w=w, kwargs=kwargs):
                    pos, q, k, _, _, cache, _ = a
                    qo, ko = torch.empty_like(q), torch.empty_like(k)
                    _rope_v[(t,)](pos, cache, cache.stride(0), q, q.stride(0), qo, qo.stride(0),
                                  k, k.stride(0), ko, ko.stride(0), t, NQ=nq, NK=nk, HALF=hs // 2,
                                  BLOCK_T=1, EVEN=True, SCALAR=False, num_warps=w, **kwargs)
                    return qo, ko
                got, want = f(sets[0]), BR.OP.native(*sets[0])
                err = max((g.float() - e.float()).abs().max().item() for g, e in zip(got, want))
                fns[f"{name} 1/{w}" + (f" (max err {err:.3g})" if err > 0.05 else "")] = [
                    lambda a=a, f=f: f(a) for a in sets]
            _two_rounds(f"{tag} {model} {t}", fns, nbytes)


def rope4():
    """Eviction hints on the unmasked RoPE kernel (`_rope_v` EVEN, the production path for power-of-two
    heads): streaming q / k loads (evict_first), the cos/sin cache kept (evict_last), both."""
    hints = {"none": ("", ""), "qk first": ("evict_first", ""), "cache last": ("", "evict_last"),
             "both": ("evict_first", "evict_last")}
    _rope_variants("rope4", (1, 1024, 4096, 16384), 11,
                   {name: ({"EV": ev, "EV_KEEP": keep}, lambda nq, w=w: w)
                    for w in (4, 8) for name, (ev, keep) in hints.items()})


def rope5():
    """Load order on the unmasked RoPE kernel: the position -> cache row chain first (POS_FIRST) or after
    the q / k loads (the production order), cache rows evict_last in both."""
    warps = lambda nq: 8 if nq >= 32 else 4  # noqa: E731
    _rope_variants("rope5", (1, 16, 128, 1024, 4096, 16384), 13,
                   {name: ({"EV": "", "EV_KEEP": "evict_last", "POS_FIRST": first}, warps)
                    for name, first in (("qk first-issued", False), ("pos first", True))})


def act5():
    """Block size of the single-input and gated activations at 1024-4096 tokens (where the
    0.98-1.0x rows are), beside Inductor."""
    cases = [("quick_gelu", "quick_gelu", False), ("relu2", "relu2", False), ("mul_and_silu", "silu", True)]
    for name, act, is_gated in cases:
        op = ir.get_op(name)
        for t, d in ((1024, 14336), (1024, 28672), (4096, 14336)):
            torch._dynamo.reset()
            comp = torch.compile(op.native, dynamic=False)
            width = 2 * d if is_gated else d
            nbytes = (3 if is_gated else 2) * t * d * 2
            sets = sets_for(lambda: torch.randn(t, width, device=DEV, dtype=BF), nbytes)
            fns = {"inductor": [lambda x=x: comp(x) for x in sets], "op": [lambda x=x: op(x) for x in sets]}
            for blk, w in ((1024, 2), (1024, 4), (2048, 4), (2048, 8), (4096, 8)):
                cfg = TA.ActConfig(1, blk, w)
                if is_gated:
                    fns[f"{blk}/{w}"] = [lambda x=x, cfg=cfg: TA.gated(x, act, True, config=cfg) for x in sets]
                else:
                    fns[f"{blk}/{w}"] = [lambda x=x, cfg=cfg: TA.plain(x, act, config=cfg) for x in sets]
            _two_rounds(f"act5 {name} {t}x{d}", fns, nbytes)


# act6 ran an explore copy of the flat single-input kernel, since merged unchanged into
# kernels/triton/activation.py (`_plain_flat_kernel`): it calls that one now.


def act6():
    """The flat, int32-indexed single-input kernel against the tile kernel and Inductor; two rounds."""
    for name in ("quick_gelu", "relu2", "gelu_new"):
        op = ir.get_op(name)
        act = {"gelu_new": "gelu_tanh"}.get(name, name)
        for t, d in ((1024, 14336), (1024, 28672), (4096, 14336), (16384, 14336)):
            torch._dynamo.reset()
            comp = torch.compile(op.native, dynamic=False)
            nbytes = 2 * t * d * 2
            sets = sets_for(lambda: torch.randn(t, d, device=DEV, dtype=BF), nbytes)
            fns = {"inductor": [lambda x=x: comp(x) for x in sets], "op": [lambda x=x: op(x) for x in sets]}
            n = t * d
            for blk, w in ((1024, 4), (1024, 2), (2048, 4), (2048, 8)):
                for i64 in (False, True):
                    def f(x, blk=blk, w=w, i64=i64):
                        out = torch.empty_like(x)
                        TA._plain_flat_kernel[(triton.cdiv(n, blk),)](
                            x, out, n, ACT=act, BLOCK=blk, EVEN=n % blk == 0, I64=i64, num_warps=w)
                        return out
                    fns[f"flat{'64' if i64 else '32'} {blk}/{w}"] = [lambda x=x, f=f: f(x) for x in sets]
            x0 = sets[0]
            err = (fns["flat32 1024/4"][0]().float() - op.native(x0).float()).abs().max().item()
            _two_rounds(f"act6 {name} {t}x{d} (max err {err:.2g})", fns, nbytes, most=9)


def act7():
    """A flat gated kernel (constexpr width) against the row-tile kernel and Inductor."""
    for name, second in (("silu_and_mul", False), ("mul_and_silu", True)):
        op = ir.get_op(name)
        for t, d in ((1024, 14336), (4096, 14336), (16384, 14336), (1024, 28672), (16384, 28672)):
            torch._dynamo.reset()
            comp = torch.compile(op.native, dynamic=False)
            nbytes = 3 * t * d * 2
            sets = sets_for(lambda: torch.randn(t, 2 * d, device=DEV, dtype=BF), nbytes)
            fns = {"inductor": [lambda x=x: comp(x) for x in sets], "op": [lambda x=x: op(x) for x in sets]}
            for blk, w in ((1024, 4), (2048, 4), (1024, 2), (2048, 8)):
                cfg = TA.FlatConfig(blk, w)
                fns[f"flat {blk}/{w}"] = [lambda x=x, c=cfg: TA.gated(x, "silu", second, config=c) for x in sets]
            err = (fns["flat 1024/4"][0]().float() - op.native(sets[0]).float()).abs().max().item()
            _two_rounds(f"act7 {name} {t}x{d} (max err {err:.2g})", fns, nbytes)


# label -> (IR op, kernel activation, activation on the second half, extra op arguments)
_ACT8 = {"silu_and_mul": ("silu_and_mul", "silu", False, ()),
         "gelu_and_mul": ("gelu_and_mul", "gelu", False, ("none",)),
         "gelu_tanh_and_mul": ("gelu_and_mul", "gelu_tanh", False, ("tanh",)),
         "fatrelu_and_mul": ("fatrelu_and_mul", "fatrelu", False, (0.5,))}


def act8():
    """The flat gated kernel (`TA._gated_flat_kernel`) at each gated activation, decode and throughput
    sizes, by configuration, against its launch rule, the row tiles' rule and Inductor."""
    for label, (name, act, second, extra) in _ACT8.items():
        op = ir.get_op(name)
        param = extra[0] if act == "fatrelu" else 0.0
        for t, d in ((1, 14336), (16, 14336), (64, 14336), (1, 28672), (1024, 14336), (4096, 14336),
                     (16384, 14336), (1024, 28672), (16384, 28672)):
            torch._dynamo.reset()
            comp = torch.compile(op.native, dynamic=False)
            nbytes = 3 * t * d * 2
            sets = sets_for(lambda: torch.randn(t, 2 * d, device=DEV, dtype=BF), nbytes)
            tiles = TA.act_config(t, d, 2, TA.S.sm_count(sets[0]))

            def run(x, cfg=None):
                return TA.gated(x, act, second, param, config=cfg)
            fns = {"inductor": [lambda x=x: comp(x, *extra) for x in sets],
                   "rule": [lambda x=x: run(x) for x in sets],
                   f"tiles {tiles.block_m}x{tiles.block_n}/{tiles.num_warps}": [lambda x=x: run(x, tiles) for x in sets]}
            configs = ((256, 4), (512, 4), (1024, 4), (256, 2), (512, 8)) if t < 1024 else \
                ((1024, 4), (2048, 8), (2048, 4), (1024, 2), (4096, 8))
            for blk, w in configs:
                cfg = TA.FlatConfig(blk, w)
                fns[f"flat {blk}/{w}"] = [lambda x=x, c=cfg: run(x, c) for x in sets]
            err = (run(sets[0]).float() - op.native(sets[0], *extra).float()).abs().max().item()
            _two_rounds(f"act8 {label} {t}x{d} (rule {TA.gated_flat_config(t * d, 132)}, max err {err:.2g})",
                        fns, nbytes)


def act10():
    """The H100's ties with the best peer (bench_activations_h100: 0.990-0.997x at 92-101% of copy):
    the flat kernels' elements a program / warps at those shapes, beside the rule, the row tiles
    and Inductor; two rounds. Like the flat static quant (quant17), do 8 elements a thread suit
    the H100 where the H200 takes 16?"""
    cases = (("silu_and_mul", 16384, 28672), ("gelu_and_mul", 4096, 14336), ("gelu_and_mul", 16384, 28672),
             ("relu2", 1024, 14336), ("quick_gelu", 4096, 14336))
    for label, t, d in cases:
        torch._dynamo.reset()
        gated = label in _ACT8
        if gated:
            name, act, second, extra = _ACT8[label]
            nbytes = 3 * t * d * 2
            sets = sets_for(lambda: torch.randn(t, 2 * d, device=DEV, dtype=BF), nbytes)

            def run(x, cfg=None):
                return TA.gated(x, act, second, 0.0, config=cfg)
        else:
            name, act, extra = label, label, ()
            nbytes = 2 * t * d * 2
            sets = sets_for(lambda: torch.randn(t, d, device=DEV, dtype=BF), nbytes)

            def run(x, cfg=None):
                return TA.plain(x, act, config=cfg)
        op = ir.get_op(name)
        comp = torch.compile(op.native, dynamic=False)
        fns = {"inductor": [lambda x=x: comp(x, *extra) for x in sets], "rule": [lambda x=x: run(x) for x in sets]}
        if gated:
            tiles = TA.act_config(t, d, 2, TA.S.sm_count(sets[0]))
            fns[f"tiles {tiles.block_m}x{tiles.block_n}/{tiles.num_warps}"] = [lambda x=x: run(x, tiles) for x in sets]
        for blk, w in ((1024, 4), (2048, 8), (2048, 4), (4096, 8)):
            cfg = TA.FlatConfig(blk, w)
            fns[f"flat {blk}/{w}"] = [lambda x=x, c=cfg: run(x, c) for x in sets]
        err = (run(sets[0], TA.FlatConfig(2048, 8)).float() - op.native(sets[0], *extra).float()).abs().max().item()
        _two_rounds(f"act10 {label} {t}x{d} (flat 2048/8 max err {err:.2g})", fns, nbytes)


@triton.jit
def _static_flat_scale_first(X, Q, SCALE, N, BLOCK: tl.constexpr, EVEN: tl.constexpr):
    """`TQ._static_quant_flat_kernel` (int32 offsets) with the scale loaded before x."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = None if EVEN else idx < N
    scale = tl.load(SCALE)
    x = tl.load(X + idx, mask=mask, other=None if EVEN else 0.0).to(tl.float32)
    tl.store(Q + idx, TQ._to_fp8(x, scale, Q), mask=mask)


def quant8():
    """The flat static quant kernel by configuration (and with the scale loaded first) against the
    tile kernel's rule and Inductor; Inductor's kernel for 16 x 4096 logged."""
    op = ir.get_op("static_scaled_fp8_quant")
    torch._dynamo.reset()
    args = op.generate_inputs(16, 4096, BF, DEV)
    _, codes = run_and_get_code(torch.compile(op.native, dynamic=False), *args)
    body = [ln for code in codes for ln in code.splitlines()
            if any(k in ln for k in ("XBLOCK", "num_warps", "tl.load", "tl.store", "triton_meta", "def triton_"))]
    log("quant8 inductor 16x4096:\n" + "\n".join(body[:40]))
    for t, d in ((1, 4096), (16, 4096), (128, 4096), (16, 8192), (16, 14336), (1024, 4096), (1024, 14336),
                 (16384, 14336)):
        torch._dynamo.reset()
        comp = torch.compile(op.native, dynamic=False)
        n = t * d
        nbytes = 3 * n
        sets = sets_for(lambda: op.generate_inputs(t, d, BF, DEV), nbytes)
        tiles = TQ.tile_config(t, d, TQ.S.sm_count(sets[0][0]))
        fns = {"inductor": [lambda a=a: comp(*a) for a in sets], "rule": [lambda a=a: TQ.static_quant(*a) for a in sets],
               f"tiles {tiles.block_m}x{tiles.block_n}/{tiles.num_warps}":
                   [lambda a=a: TQ.static_quant(*a, config=tiles) for a in sets]}
        for blk, w in ((256, 1), (256, 2), (512, 2), (512, 4), (1024, 2), (1024, 4), (2048, 4), (2048, 8), (4096, 8)):
            cfg = TQ.FlatConfig(blk, w)
            fns[f"flat {blk}/{w}"] = [lambda a=a, c=cfg: TQ.static_quant(*a, config=c) for a in sets]
            if blk in (512, 1024, 2048) and w == 4:
                def first(a, blk=blk, w=w):
                    q = torch.empty(a[0].shape, dtype=TQ.FP8_DTYPE, device=DEV)
                    _static_flat_scale_first[(triton.cdiv(n, blk),)](a[0], q, a[1], n, BLOCK=blk, EVEN=n % blk == 0,
                                                                     num_warps=w)
                    return q
                fns[f"scale-first {blk}/{w}"] = [lambda a=a, f=first: f(a) for a in sets]
        want = op.native(*sets[0]).float()
        err = max((fns[k][0]().float() - want).abs().max().item() for k in ("rule", "scale-first 1024/4"))
        _two_rounds(f"quant8 {t}x{d} (rule {TQ.flat_static_config(n)}, max err {err:.2g})", fns, nbytes, most=10)


def norm8():
    """The single-pass norm kernel with its masks dropped where the blocks tile the rows (EVEN, the
    production launch) and kept, beside Inductor."""
    for name in ("rms_norm", "fused_add_rms_norm", "gemma_fused_add_rms_norm"):
        op = ir.get_op(name)
        fused, gemma = "fused" in name, name.startswith("gemma")
        shapes = ((16384, 4096),) if gemma else ((1, 4096), (64, 8192), (1024, 4096), (4096, 4096), (16384, 4096),
                                                 (1024, 8192), (4096, 8192), (16384, 8192))
        for t, h in shapes:
            torch._dynamo.reset()
            comp = torch.compile(op.native, dynamic=False)
            nbytes = (4 if fused else 2) * t * h * 2
            sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nbytes)
            cfg = TL.norm_config(t, h, 2, TL.S.sm_count(sets[0][0]), fused)

            def run(args, even, cfg=cfg, t=t, h=h):
                x = args[0]
                r, (w, eps) = (args[1], args[2:]) if fused else (x, args[1:])
                out = torch.empty_like(x)
                res = torch.empty_like(x) if fused else out
                TL._call(TL._rms_norm_kernel, (triton.cdiv(t, cfg.block_m),), cfg, x, r, res, out, w, t, h, eps,
                         fused, gemma, even)
                return (out, res) if fused else out
            fns = {"inductor": [lambda a=a: comp(*a) for a in sets],
                   "even": [lambda a=a: run(a, None) for a in sets],
                   "masked": [lambda a=a: run(a, False) for a in sets]}
            got, want = run(sets[0], None), op.native(*sets[0])
            got, want = (got, want) if fused else ((got,), (want,))
            err = max((g.float() - e.float()).abs().max().item() for g, e in zip(got, want))
            even = cfg.single_pass and h == cfg.block_n and t % cfg.block_m == 0
            _two_rounds(f"norm8 {name} {t}x{h} ({cfg}, even {even}, max err {err:.2g})", fns, nbytes)


def norm9():
    """Norm launch configurations where Inductor led in norm8 (fused add 1024 x 8192), single pass and
    chunked, with Inductor's kernel for that shape logged."""
    op = ir.get_op("fused_add_rms_norm")
    torch._dynamo.reset()
    _, codes = run_and_get_code(torch.compile(op.native, dynamic=False), *op.generate_inputs(1024, 8192, BF, DEV))
    body = [ln for code in codes for ln in code.splitlines()
            if any(k in ln for k in ("XBLOCK", "R0_BLOCK", "RBLOCK", "num_warps", "tl.load", "tl.store", "def triton_",
                                     "for r0_offset", "for roffset", "reduction_hint"))]
    log("norm9 inductor fused_add_rms_norm 1024x8192:\n" + "\n".join(body[:50]))
    for name in ("fused_add_rms_norm", "rms_norm"):
        op = ir.get_op(name)
        into = TL.fused_add_rms_norm_into if "fused" in name else TL.rms_norm_into
        for t, h in ((1024, 8192), (4096, 8192), (1024, 4096)):
            torch._dynamo.reset()
            comp = torch.compile(op.native, dynamic=False)
            nbytes = (4 if "fused" in name else 2) * t * h * 2
            sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nbytes)
            fns = {"inductor": [lambda a=a: comp(*a) for a in sets], "rule": [lambda a=a: into(*a) for a in sets]}
            for m, w in ((1, 4), (1, 8), (1, 16), (1, 32), (2, 16), (2, 32), (4, 32)):
                cfg = TL.NormConfig(m, h, w, True)
                fns[f"{m}/{w}"] = [lambda a=a, c=cfg: into(*a, config=c) for a in sets]
            for chunk, w in ((2048, 8), (4096, 8), (2048, 4)):
                cfg = TL.NormConfig(1, chunk, w, False)
                fns[f"c{chunk}/{w}"] = [lambda a=a, c=cfg: into(*a, config=c) for a in sets]
            _two_rounds(f"norm9 {name} {t}x{h} (rule {TL.norm_config(t, h, 2, 132, 'fused' in name)})", fns, nbytes, most=10)


def norm10():
    """Norm launch configurations at 16384 tokens, where Inductor or Liger led by < 1% (norms bench,
    session 7), beside both."""
    import bench_norms as BN
    liger = BN._liger()
    for name, h in (("rms_norm", 8192), ("gemma_rms_norm", 4096), ("rms_norm", 4096), ("fused_add_rms_norm", 8192)):
        op = ir.get_op(name)
        into = TL.fused_add_rms_norm_into if "fused" in name else TL.rms_norm_into
        gemma = name.startswith("gemma")
        t = 16384
        torch._dynamo.reset()
        comp = torch.compile(op.native, dynamic=False)
        nbytes = BN._bytes(name, t, h, 2)
        sets = sets_for(lambda: op.generate_inputs(t, h, BF, DEV), nbytes)
        case = H.Case(name, f"{t}x{h}", "bfloat16", t, nbytes, lambda: None)
        fns = {"inductor": [lambda a=a: comp(*a) for a in sets], "op": [lambda a=a: op(*a) for a in sets]}
        if liger is not None:
            fns["liger"] = [liger.bind(case, a) for a in sets]
        for m, w in ((1, 8), (1, 16), (1, 32), (2, 8), (2, 16), (2, 32), (4, 16), (4, 32)):
            cfg = TL.NormConfig(m, h, w, True)
            fns[f"{m}/{w}"] = [lambda a=a, c=cfg: into(*a, gemma=gemma, config=c) for a in sets]
        _two_rounds(f"norm10 {name} {t}x{h} (rule {TL.norm_config(t, h, 2, 132, 'fused' in name)})", fns, nbytes,
                    most=11)


@triton.jit
def _plain_flat_hints(X, OUT, N, ACT: tl.constexpr, BLOCK: tl.constexpr, EVEN: tl.constexpr,
                      LOAD_EV: tl.constexpr, STORE_CM: tl.constexpr):
    """`TA._plain_flat_kernel` (int32 offsets) with a load eviction policy and a store cache modifier."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = None if EVEN else idx < N
    x = tl.load(X + idx, mask=mask, other=None if EVEN else 0.0, eviction_policy=LOAD_EV).to(tl.float32)
    tl.store(OUT + idx, TA._activation(x, 0.0, ACT).to(OUT.dtype.element_ty), mask=mask, cache_modifier=STORE_CM)


def act9():
    """Cache hints on the flat single-input kernel where it ties Inductor (relu2): streaming loads
    (evict_first) and stores (.cs), at the launch rule's configuration."""
    for name, t, d, dtype in (("relu2", 1024, 28672, BF), ("relu2", 16384, 28672, BF),
                              ("relu2", 4096, 14336, torch.float16), ("quick_gelu", 16384, 14336, BF)):
        op = ir.get_op(name)
        torch._dynamo.reset()
        comp = torch.compile(op.native, dynamic=False)
        nbytes = 2 * t * d * 2
        sets = sets_for(lambda: torch.randn(t, d, device=DEV, dtype=dtype), nbytes)
        n = t * d
        cfg = TA.flat_config(n, 132)
        fns = {"inductor": [lambda x=x: comp(x) for x in sets], "op": [lambda x=x: op(x) for x in sets]}
        for ev, cm in (("", ""), ("evict_first", ""), ("", ".cs"), ("evict_first", ".cs")):
            def f(x, ev=ev, cm=cm):
                out = torch.empty_like(x)
                _plain_flat_hints[(triton.cdiv(n, cfg.block),)](x, out, n, ACT=name, BLOCK=cfg.block,
                                                                EVEN=n % cfg.block == 0, LOAD_EV=ev, STORE_CM=cm,
                                                                num_warps=cfg.num_warps)
                return out
            fns[f"{ev or 'plain'}{cm}"] = [lambda x=x, f=f: f(x) for x in sets]
        _two_rounds(f"act9 {name} {t}x{d} {dtype} ({cfg})", fns, nbytes)


def rope6():
    """Warps a program of the production RoPE kernel (one token a program), functional and in place,
    beside Liger: fewer warps let more tokens' programs reside on a multiprocessor at once (32 programs
    at most), which matters for the 70B/TP8 heads' small programs."""
    import bench_rope as BR
    from irshim.kernels.triton import rope as TR
    liger = BR._liger()
    warps = {"llama3-8b": (2, 4, 8, 16), "llama3-70b-tp8": (1, 2, 4, 8)}
    for model, (nq, nk, hs) in BR.MODELS.items():
        for t in (1, 128, 1024, 4096, 16384):
            nbytes = BR.rope_bytes(t, nq, nk, hs, hs, 2)
            sets = sets_for(lambda: BR.make_inputs(t, nq, nk, hs, hs, True, BF, DEV, seed=17), nbytes)
            case = H.Case(model, f"{t}", "bfloat16", t, nbytes, lambda: None)
            fns = {"op": [lambda a=a: BR.OP(*a) for a in sets]}
            if liger is not None:
                fns["liger"] = [liger.bind(case, a) for a in sets]
            base = TR.rope_config(t, nq, nk, hs // 2)
            for w in warps[model]:
                cfg = TR.RopeConfig(1, base.block_hq, base.block_hk, w)
                fns[f"1/{w}"] = [lambda a=a, c=cfg: TR.rotary_embedding_into(*a, config=c) for a in sets]
                fns[f"inplace 1/{w}"] = [lambda a=a, c=cfg: TR.rotary_embedding_inplace_(*a, config=c) for a in sets]
            got, want = TR.rotary_embedding_into(*sets[0], config=TR.RopeConfig(1, base.block_hq, base.block_hk, 2)), \
                BR.OP.native(*sets[0])
            err = max((g.float() - e.float()).abs().max().item() for g, e in zip(got, want))
            _two_rounds(f"rope6 {model} {t} (rule {base}, 1/2 max err {err:.2g})", fns, nbytes)


def _sm_clock():
    import subprocess
    return subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,temperature.gpu,power.draw", "--format=csv,noheader"],
                          capture_output=True, text=True).stdout.strip()


def _time_norm_static(tag, t, cfgs):
    """Static norm + quant over `t` x 8192 under each named RowConfig, beside Inductor, two rounds."""
    _, _, nb, sets, comp = _norm_quant_case("rms_norm_static_fp8_quant", t, 8192)
    fns = {"inductor": [lambda a=a: comp(*a) for a in sets]}
    for name, cfg in cfgs.items():
        fns[name] = [lambda a=a, c=cfg: TQ.rms_norm_quant(a[0], None, a[1], a[2], a[3], None, config=c) for a in sets]
    _two_rounds(tag, fns, nb)


def quant11():
    """Static norm + quant over 8192 columns at 4096 / 16384 tokens by configuration, on a cold GPU
    and after a warm-up of native eager calls (in bench_quant's full run the rule's 2 rows / 4 warps,
    245 registers a thread, ran 12-14% slower than first in a process), with the SM clock logged."""
    op = ir.get_op("rms_norm_static_fp8_quant")
    cfgs = {"2/4": TQ.RowConfig(2, 8192, 4, True), "2/8": TQ.RowConfig(2, 8192, 8, True),
            "1/8": TQ.RowConfig(1, 8192, 8, True), "1/16": TQ.RowConfig(1, 8192, 16, True),
            "c2048/8": TQ.RowConfig(1, 2048, 8, False), "c4096/8": TQ.RowConfig(1, 4096, 8, False),
            "c2048/4": TQ.RowConfig(1, 2048, 4, False), "c1024/4": TQ.RowConfig(1, 1024, 4, False)}
    warm_x = op.generate_inputs(16384, 14336, BF, DEV)
    for phase in ("cold", "warm"):
        if phase == "warm":
            t0 = time.time()
            while time.time() - t0 < 20:
                op.native(*warm_x)
            torch.cuda.synchronize()
        for t in (4096, 16384):
            _time_norm_static(f"quant11 {phase} {t}x8192 [{_sm_clock()}]", t, cfgs)
        log(f"quant11 {phase} after: {_sm_clock()}")


def quant12():
    """quant11's leading configurations at 1024-16384 tokens x 8192 columns, for runs in several
    processes: quant11 and bench_quant found 2 rows / 4 warps fast in some processes, 12-15% slower in others."""
    cfgs = {"2/4": TQ.RowConfig(2, 8192, 4, True), "2/8": TQ.RowConfig(2, 8192, 8, True),
            "1/8": TQ.RowConfig(1, 8192, 8, True), "1/4": TQ.RowConfig(1, 8192, 4, True)}
    for t in (1024, 4096, 16384):
        _time_norm_static(f"quant12 {t}x8192", t, cfgs)


# quant13 ran an explore copy of the row-pipelined kernel (the same code, one row stride for x, the
# residual and the sum), since merged as `TQ._fused_add_quant_pipelined_kernel`: it calls that one now.


def _pipelined_sweep(tag, shapes, programs_of, chunks, check=False):
    """The pipelined fused-add norm + static quant (`TQ.rms_norm_quant(..., programs=)`) by programs
    and chunk / warps, beside the op's rule, the unfused pair and Inductor, two rounds."""
    norm, quant = ir.get_op("fused_add_rms_norm"), ir.get_op("static_scaled_fp8_quant")
    for t, h in shapes:
        op, _, nb, sets, comp = _norm_quant_case("fused_add_rms_norm_static_fp8_quant", t, h)
        fns = {"inductor": [lambda a=a: comp(*a) for a in sets], "op": [lambda a=a: op(*a) for a in sets],
               "pair": [lambda a=a: quant(norm(a[0], a[1], a[2], a[3])[0], a[4]) for a in sets]}
        for programs in programs_of(t):
            for block_n, warps in chunks:
                cfg = TQ.RowConfig(1, block_n, warps, False)
                fns[f"{programs}p {block_n}/{warps}"] = [
                    lambda a=a, p=programs, c=cfg: TQ.rms_norm_quant(a[0], a[1], a[2], a[3], a[4], None, config=c,
                                                                     programs=p) for a in sets]
        note = ""
        if check:
            a0, chunked = sets[0], TQ.RowConfig(1, 2048, 8, False)
            got = TQ.rms_norm_quant(a0[0], a0[1], a0[2], a0[3], a0[4], None, config=chunked, programs=max(1, t // 2))
            want = TQ.rms_norm_quant(a0[0], a0[1], a0[2], a0[3], a0[4], None, config=chunked)
            same = torch.equal(got[0].view(torch.uint8), want[0].view(torch.uint8)) and torch.equal(got[1], want[1])
            note = f" (pipelined bit-identical to the chunked kernel: {same})"
        _two_rounds(f"{tag} {t}x{h}{note}", fns, nb, most=14)


def quant13():
    """The row-pipelined fused-add norm + static quant by programs / chunk / warps, beside the
    production kernel, the unfused pair and Inductor."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    _pipelined_sweep("quant13", ((1024, 14336), (1024, 8192), (4096, 14336), (16384, 14336)),
                     lambda t: sorted(p for p in {t // 2, t // 4, 2 * sms, 4 * sms, 8 * sms} if 0 < p < t),
                     ((2048, 8), (2048, 4), (1024, 4), (4096, 16)), check=True)


def quant14():
    """The pipelined kernel where it sits at the 1.3x-the-pair target (1024 x 14336), and at 4096 rows."""
    _pipelined_sweep("quant14", ((1024, 14336), (4096, 14336)),
                     lambda t: (342, 512, 528) if t == 1024 else (528, 396, 792),
                     ((2048, 8), (2048, 16), (1024, 8), (1024, 4), (4096, 16)))


def quant15():
    """Where the H100 trails Inductor with the H200-tuned rules (bench_quant_h100, session 9): the
    fused-add norm + static quant at 1024 x 8192 by launch configuration, and the flat static quant
    kernel by elements a program / warps at 4096 x {8192, 14336} and 16384 x 14336; two rounds."""
    op, _, nb, sets, comp = _norm_quant_case("fused_add_rms_norm_static_fp8_quant", 1024, 8192)
    norm, quant = ir.get_op("fused_add_rms_norm"), ir.get_op("static_scaled_fp8_quant")
    fns = {"inductor": [lambda a=a: comp(*a) for a in sets], "op": [lambda a=a: op(*a) for a in sets],
           "pair": [lambda a=a: quant(norm(a[0], a[1], a[2], a[3])[0], a[4]) for a in sets]}
    for m, bn, w in ((1, 8192, 32), (1, 8192, 16), (2, 8192, 16), (1, 8192, 8), (2, 8192, 32),
                             (1, 2048, 8), (1, 4096, 16), (1, 4096, 8)):
        cfg = TQ.RowConfig(m, bn, w, bn == 8192)
        fns[f"{m}/{bn}/{w}"] = [lambda a=a, c=cfg: TQ.rms_norm_quant(a[0], a[1], a[2], a[3], a[4], None, config=c)
                                for a in sets]
    for programs, bn, w in ((512, 2048, 8), (528, 2048, 8), (512, 4096, 16)):
        cfg = TQ.RowConfig(1, bn, w, False)
        fns[f"{programs}p {bn}/{w}"] = [
            lambda a=a, p=programs, c=cfg: TQ.rms_norm_quant(a[0], a[1], a[2], a[3], a[4], None, config=c, programs=p)
            for a in sets]
    _two_rounds(f"quant15 fused-add 1024x8192 (rule {TQ.row_config(1024, 8192, 'norm_add_static')})", fns, nb)
    static = ir.get_op("static_scaled_fp8_quant")
    for t, d in ((4096, 8192), (4096, 14336), (16384, 14336)):
        torch._dynamo.reset()
        comp = torch.compile(static.native, dynamic=False)
        nbytes = 3 * t * d
        sets = sets_for(lambda: static.generate_inputs(t, d, BF, DEV), nbytes)
        fns = {"inductor": [lambda a=a: comp(*a) for a in sets], "rule": [lambda a=a: TQ.static_quant(*a) for a in sets]}
        for blk, w in ((1024, 4), (2048, 4), (2048, 8), (4096, 4), (4096, 8), (4096, 16), (8192, 16)):
            cfg = TQ.FlatConfig(blk, w)
            fns[f"flat {blk}/{w}"] = [lambda a=a, c=cfg: TQ.static_quant(*a, config=c) for a in sets]
        _two_rounds(f"quant15 static {t}x{d} (rule {TQ.flat_static_config(t * d)})", fns, nbytes)


def quant16():
    """The pipelined fused-add norm + static quant at 8192 columns (single-pass rows, where the rule
    runs the row kernel), 1024-16384 tokens: it led the row kernel at 1024 tokens on both GPUs
    (quant13 on the H200, quant15 on the H100)."""
    _pipelined_sweep("quant16", ((1024, 8192), (1280, 8192), (1536, 8192), (2048, 8192), (4096, 8192), (16384, 8192)),
                     lambda t: sorted({512, 528, min(1056, t // 2)}), ((2048, 8), (4096, 16)))


@triton.jit
def _static_flat_v(X, Q, SCALE, N, BLOCK: tl.constexpr, EV: tl.constexpr, CS: tl.constexpr,
                   APPROX: tl.constexpr):
    """The flat static quant kernel (even blocks, int32 offsets) with an L2 policy on the load
    (EV), streaming stores (CS: `.cs`) and, for diagnosis only (not exact), the quotient
    without its Newton correction (APPROX)."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(X + idx, eviction_policy=EV).to(tl.float32)
    scale = tl.load(SCALE)
    if APPROX:
        q = (x * (1.0 / scale)).to(Q.dtype.element_ty)
    else:
        q = TQ._to_fp8(x, scale, Q)
    if CS:
        tl.store(Q + idx, q, cache_modifier=".cs")
    else:
        tl.store(Q + idx, q)


def quant17():
    """The flat static quant kernel at the H100's misses (4096 x {8192, 14336}, 16384 x 14336 at
    0.983-0.987x Inductor, bench_quant_h100) and the other shapes of its 2048/4 regime: L2 hints
    on the load, streaming stores, and the Newton step's cost (APPROX, inexact), at 1024/4, 2048/4
    and 2048/8; two rounds. Logs the device's memory properties first."""
    static = ir.get_op("static_scaled_fp8_quant")
    props = torch.cuda.get_device_properties(0)
    log("quant17 device", {k: getattr(props, k, None) for k in ("memory_clock_rate", "memory_bus_width", "L2_cache_size",
                                                               "total_memory", "multi_processor_count")})
    for t, d in ((4096, 8192), (4096, 14336), (16384, 14336), (4096, 4096), (16384, 4096), (16384, 8192)):
        torch._dynamo.reset()
        comp = torch.compile(static.native, dynamic=False)
        nbytes = 3 * t * d
        sets = sets_for(lambda: static.generate_inputs(t, d, BF, DEV), nbytes)
        fns = {"inductor": [lambda a=a: comp(*a) for a in sets], "rule": [lambda a=a: TQ.static_quant(*a) for a in sets]}
        ref = TQ.static_quant(*sets[0]).float()
        for blk, w in ((1024, 4), (2048, 4), (2048, 8)):
            for name, ev, cs, approx in (("plain", "", False, False), ("evict_first", "evict_first", False, False),
                                         ("cs", "", True, False), ("evict_first+cs", "evict_first", True, False),
                                         ("approx", "", False, True)):
                def f(x, scale, blk=blk, w=w, ev=ev, cs=cs, approx=approx):
                    q = torch.empty_like(x, dtype=torch.float8_e4m3fn)
                    _static_flat_v[(x.numel() // blk,)](x, q, scale, x.numel(), BLOCK=blk, EV=ev, CS=cs,
                                                        APPROX=approx, num_warps=w)
                    return q
                if not approx and not torch.equal(f(*sets[0]).float(), ref):
                    log(f"quant17 {name} {blk}/{w} differs from the op")
                fns[f"{name} {blk}/{w}"] = [lambda a=a, f=f: f(*a) for a in sets]
        rule = TQ.flat_static_config(t * d, TQ.S.memory_gbs_per_sm(sets[0][0]))
        _two_rounds(f"quant17 static {t}x{d} (rule {rule})", fns, nbytes, most=12)


@triton.jit
def _norm_rows_hinted(X, XS, W, OUT, OS, N_COLS, EPS, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      XEV: tl.constexpr, WEV: tl.constexpr, CS: tl.constexpr, GEMMA: tl.constexpr):
    """Whole rows of `BLOCK_N` columns, BLOCK_M a program, no masks, with an eviction policy on x's
    (XEV) and the weight's (WEV) loads and a cache modifier on the store (CS)."""
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    x = tl.load(X + rows[:, None] * XS + cols[None, :], eviction_policy=XEV).to(tl.float32)
    w = tl.load(W + cols, eviction_policy=WEV).to(tl.float32)
    if GEMMA:
        w = w + 1.0
    rstd = tl.rsqrt(tl.sum(x * x, axis=1) / N_COLS + tl.cast(EPS, tl.float32))
    y = x * rstd[:, None]
    y = y * w[None, :]
    tl.store(OUT + rows[:, None] * OS + cols[None, :], y.to(OUT.dtype.element_ty), cache_modifier=CS)


def _norm_variants(configs, hints):
    """Providers of the production norm kernel under `configs` ((rows, block, warps, single pass)
    tuples: "m/w", chunked "m/w cBLOCK") and of `_norm_rows_hinted` under `hints` ((rows, warps, x's
    policy, the weight's policy, the store's modifier): "hm/w x=.. w=.. st=..")."""

    def hinted(m, w, xev, wev, cs):
        def bind(case, args):
            x, weight, eps = args
            out = torch.empty_like(x)

            def run():
                _norm_rows_hinted[(x.shape[0] // m,)](x, x.stride(0), weight, out, out.stride(0), x.shape[1], eps,
                                                      BLOCK_M=m, BLOCK_N=x.shape[1], XEV=xev, WEV=wev, CS=cs,
                                                      GEMMA=case.op.startswith("gemma"), num_warps=w)
                return out
            return run
        return H.Provider(f"h{m}/{w} x={xev or '-'} w={wev or '-'} st={cs or '-'}", bind, peer=False)

    def config(m, n, w, single):
        cfg = TL.NormConfig(m, n, w, single)

        def bind(case, args):
            gemma = case.op.startswith("gemma")
            if len(args) == 4:  # x, residual, weight, eps: the fused add (functional form)
                return lambda: TL.fused_add_rms_norm_into(*args, gemma, config=cfg)
            return lambda: TL.rms_norm_into(*args, gemma, config=cfg)
        return H.Provider(f"{m}/{w}{'' if single else f' c{n}'}", bind, peer=False)

    return [config(*c) for c in configs] + [hinted(*h) for h in hints]


def _log_rounds(tag, spec, case, provs, base, rounds):
    """rematch.py's rounds of `provs` on `case` (two captures), logged fastest first: each one's median
    µs, GB/s and `base`'s time / its own (median round ratio, 95% bootstrap interval)."""
    import statistics

    import rematch as R

    runs = [R._rounds(case, provs, rounds) for _ in range(2)]
    med = {n: statistics.median(t for r in runs for t in r[n]) for n in runs[0]}
    for n in sorted(med, key=med.get):
        m, ci, _ = R.ratio_stats(runs, base, n) if n != base else (1.0, [1.0, 1.0], 0)
        log(f"{tag} {spec} {n}: {med[n]:.2f} us, {case.bytes / med[n] / 1e3:.0f} GB/s, "
            f"{base}/this {m:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]")


def _norm_rounds(tag, specs, variants, rounds=40):
    """Each norms case of `specs` (a rematch.py spec, or an `H.Case`) with Inductor, Liger, the IR op and
    `variants`, checked against native, then rematch.py's rounds (two captures); ratio = Inductor's time
    / the variant's."""
    import bench_norms as BN
    import rematch as R

    for spec in specs:
        case = R._find(spec)[0][0] if isinstance(spec, str) else spec
        spec = f"norms:{case.op}:{case.shape}:{case.dtype}"
        provs = [p for p in BN.providers() if p.name in ("inductor", "liger", "triton")] + variants
        args = case.make_args()
        ref = ir.get_op(case.op).native(*args)
        ref = (ref[0] if isinstance(ref, tuple) else ref).float()  # the fused adds: the normed output
        for p in provs:
            got = p.bind(case, args)()
            got = got[0] if isinstance(got, tuple) else got  # Liger returns its saved tensors too
            log(f"{tag} {spec} {p.name} max err {(got.float() - ref).abs().max().item()}")
        _log_rounds(tag, spec, case, provs, "inductor", rounds)


def norm11():
    """Norms over 8192 columns where benchmarks/rematch.py found triton behind Inductor (session 15):
    launch configurations of the production kernel and `_norm_rows_hinted` with cache hints, round by
    round beside Inductor and Liger (rematch.py's rounds: two captures x 40 rounds; ratio = Inductor's
    time / the variant's, median over rounds, with its bootstrap interval)."""
    variants = _norm_variants(((2, 8192, 32, True), (1, 8192, 16, True), (1, 8192, 32, True), (2, 8192, 16, True),
                               (1, 8192, 8, True), (1, 2048, 8, False), (2, 2048, 8, False)),
                              ((2, 32, "evict_first", "evict_last", ""), (2, 32, "", "", ".cs"),
                               (1, 16, "evict_first", "evict_last", ""), (1, 16, "", "", "")))
    _norm_rounds("norm11", ("norms:gemma_rms_norm:1024x8192:bfloat16", "norms:gemma_rms_norm:4096x8192:bfloat16",
                            "norms:rms_norm:16384x8192:bfloat16", "norms:gemma_rms_norm:16384x8192:bfloat16"),
                 variants)


def norm12():
    """norm11's leads at the gemma norm over 8192 columns, for runs in several processes (Inductor's
    reduction is compiled anew in each, and its time moved by 2-3% between them in session 15): the
    rule, 1/16, 1/8, 2/32 and the plain one-row kernel at 16 warps, at 1024, 4096 and 16384 tokens."""
    variants = _norm_variants(((2, 8192, 32, True), (1, 8192, 16, True), (1, 8192, 8, True)),
                              ((1, 16, "", "", ""),))
    _norm_rounds("norm12", ("norms:gemma_rms_norm:1024x8192:bfloat16", "norms:gemma_rms_norm:4096x8192:bfloat16",
                            "norms:gemma_rms_norm:16384x8192:bfloat16"), variants)


@triton.jit
def _norm_looped(X, XS, W, OUT, OS, N_COLS, EPS, RBLOCK: tl.constexpr, GEMMA: tl.constexpr,
                 EV1: tl.constexpr, EV2: tl.constexpr):
    """One row a program in two loops over RBLOCK-column chunks (the shape of Inductor's norm kernel at
    8192 columns): the sum of squares, then the normed row, which reloads x (from L1/L2) with the
    policies EV1 and EV2. RBLOCK divides N_COLS (no masks)."""
    row = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([RBLOCK], dtype=tl.float32)
    for start in range(0, N_COLS, RBLOCK):
        x = tl.load(X + row * XS + start + tl.arange(0, RBLOCK), eviction_policy=EV1).to(tl.float32)
        acc += x * x
    rstd = tl.rsqrt(tl.sum(acc, axis=0) / N_COLS + tl.cast(EPS, tl.float32))
    for start in range(0, N_COLS, RBLOCK):
        cols = start + tl.arange(0, RBLOCK)
        x = tl.load(X + row * XS + cols, eviction_policy=EV2).to(tl.float32)
        w = tl.load(W + cols, eviction_policy="evict_last").to(tl.float32)
        if GEMMA:
            w = w + 1.0
        tl.store(OUT + row * OS + cols, (x * rstd * w).to(OUT.dtype.element_ty))


def norm13():
    """The persistent #5 miss, gemma_rms_norm 16384 x 8192 (~1.4% behind Inductor in three processes,
    norm11 / norm12): Inductor's generated code for it (OUTDIR/inductor_gemma_rms_norm_16384x8192.py) and
    `_norm_looped` by chunk and warps, beside the rule, at that shape, rms_norm 16384 x 8192 and gemma
    4096 x 8192."""
    import rematch as R

    case, _ = R._find("norms:gemma_rms_norm:16384x8192:bfloat16")[0]
    try:
        torch._dynamo.reset()
        _, codes = run_and_get_code(torch.compile(ir.get_op(case.op).native, dynamic=False), *case.make_args())
        (OUT / "inductor_gemma_rms_norm_16384x8192.py").write_text("\n\n".join(codes))
        log("norm13 inductor code written")
    except Exception as e:
        log("norm13 inductor code failed", repr(e)[:300])

    def looped(rblock, warps, ev1, ev2):
        def bind(case, args):
            x, weight, eps = args
            out = torch.empty_like(x)

            def run():
                _norm_looped[(x.shape[0],)](x, x.stride(0), weight, out, out.stride(0), x.shape[1], eps, RBLOCK=rblock,
                                            GEMMA=case.op.startswith("gemma"), EV1=ev1, EV2=ev2, num_warps=warps)
                return out
            return run
        return H.Provider(f"loop{rblock}/{warps}{' hints' if ev1 else ''}", bind, peer=False)

    variants = [looped(r, w, "evict_last", "evict_first") for r, w in ((1024, 4), (1024, 8), (2048, 4), (2048, 8),
                                                                         (2048, 16), (4096, 8), (4096, 16))]
    variants += [looped(2048, 8, "", ""), looped(4096, 16, "", "")]
    _norm_rounds("norm13", ("norms:gemma_rms_norm:16384x8192:bfloat16", "norms:rms_norm:16384x8192:bfloat16",
                            "norms:gemma_rms_norm:4096x8192:bfloat16"), variants, rounds=30)


def norm14():
    """norm13's lead in the production kernel: its two-pass path (1 row a program, 4096-column chunks,
    16 warps: `_norm_looped` at 4096/16 with its hints) and neighbours, against the rule, for the plain
    and the gemma norm over 8192 columns at 4096, 8192 and 16384 rows (where the rule switches)."""
    import bench_norms as BN

    variants = _norm_variants(((1, 4096, 16, False), (1, 4096, 32, False), (1, 8192, 16, False),
                               (1, 2048, 16, False), (2, 4096, 16, False)), ())
    cases = BN.cases(["gemma_rms_norm", "rms_norm"], False, [16384, 8192, 4096], [8192], False)
    _norm_rounds("norm14", cases, variants, rounds=30)


def norm15():
    """The unmasked two-pass path (`1/16 c4096`, the rule from LOOPED_ROWS_PER_SM) against the single-pass
    2/32 rule it replaces, plain and gemma norms over 8192 columns at 8192, 12288 and 16384 rows."""
    import bench_norms as BN

    variants = _norm_variants(((1, 4096, 16, False), (2, 8192, 32, True)), ())
    cases = BN.cases(["gemma_rms_norm", "rms_norm"], False, [16384, 12288, 8192], [8192], False)
    _norm_rounds("norm15", cases, variants, rounds=30)


def norm16():
    """The single-pass rule at 4096-8191 rows of 8192 columns (2 rows a program, 32 warps) against one
    row over 8 or 16 warps, which led it at gemma 4096 x 8192 in norm11 and norm12, for both norms.
    Written in session 16, run in session 17 (results/sweep_session17_h100.txt)."""
    import bench_norms as BN

    variants = _norm_variants(((2, 8192, 32, True), (1, 8192, 8, True), (1, 8192, 16, True)), ())
    cases = BN.cases(["gemma_rms_norm", "rms_norm"], False, [4096, 6144], [8192], False)
    _norm_rounds("norm16", cases, variants, rounds=30)


def norm17():
    """The plain norms at 1024 rows of 8192 columns, where Inductor's time moved by 7% between processes
    on the H100 (gemma_rms_norm: 12.5 µs, then 11.7, ours 12.2-12.3): single-pass warps (the rule:
    1/16) against the unmasked two-pass loop at 4096 and 2048 columns (Inductor's shape there)."""
    import bench_norms as BN

    variants = _norm_variants(((1, 8192, 16, True), (1, 8192, 8, True), (1, 8192, 4, True), (1, 8192, 32, True),
                               (1, 4096, 16, False), (1, 4096, 8, False), (1, 2048, 8, False), (1, 2048, 4, False)), ())
    cases = BN.cases(["gemma_rms_norm", "rms_norm"], False, [1024], [8192], False)
    _norm_rounds("norm17", cases, variants, rounds=30)


def norm18():
    """The fused adds at 1024 rows of 4096 columns on the H100, 1.3% behind Inductor there with the rule's
    two rows a program over 16 warps (rematch_session18_h100; 7.6% ahead on the H200): rows a program,
    warps, and the two-pass loop over 2048 and 1024 columns."""
    import bench_norms as BN

    variants = _norm_variants(((2, 4096, 16, True), (1, 4096, 8, True), (1, 4096, 16, True), (1, 4096, 4, True),
                               (2, 4096, 8, True), (4, 4096, 16, True), (1, 2048, 8, False), (1, 1024, 4, False)), ())
    cases = BN.cases(["fused_add_rms_norm", "gemma_fused_add_rms_norm"], False, [1024], [4096], False)
    _norm_rounds("norm18", cases, variants, rounds=30)


def rope7():
    """RoPE at the 70B/TP8 heads (1024 tokens: 1.6% behind Liger on the H100, rematch_session18_h100) and
    Llama-3-8B's, round by round against Liger: the production kernel's tokens and warps a program, in
    place, and `_rope_v` (unmasked, constexpr heads) with the position load issued before q / k.
    rematch.py's rounds (two captures x 20 rounds); ratio = Liger's time / the variant's. The `_rope_v`
    launches write into per-set outputs, the production ones into a reused block (benchmarks/harness.py):
    compare the `v` rows with each other only (H100: `v 1/4` 3.11 µs against production 2.39 at 1024 tokens)."""
    import bench_rope as BR
    import rematch as R
    from irshim.kernels.triton import rope as TR

    def config(bt, w):
        def bind(case, args):
            _, q, k, hs, rd, _, _ = args
            most = max(1, TR.MAX_STEP_PAIRS // (bt * rd // 2))
            cfg = TR.RopeConfig(bt, min(TR.S.next_pow2(q.shape[1] // hs), most),
                                min(TR.S.next_pow2(k.shape[1] // hs), most), w)
            return lambda: TR.rotary_embedding_into(*args, config=cfg)
        return H.Provider(f"prod {bt}/{w}", bind, peer=False)

    def variant(name, bt, w, **kw):
        def bind(case, args):
            pos, q, k, hs, _, cache, _ = args
            t, nq, nk = q.shape[0], q.shape[1] // hs, k.shape[1] // hs
            qo, ko = torch.empty_like(q), torch.empty_like(k)

            def run():
                _rope_v[(t // bt,)](pos, cache, cache.stride(0), q, q.stride(0), qo, qo.stride(0),
                                    k, k.stride(0), ko, ko.stride(0), t, NQ=nq, NK=nk, HALF=hs // 2,
                                    BLOCK_T=bt, EVEN=True, SCALAR=False, EV="", EV_KEEP="evict_last",
                                    num_warps=w, **kw)
                return qo, ko
            return run
        return H.Provider(f"{name} {bt}/{w}", bind, peer=False)

    inplace = BR.OP.impls["triton_inplace"].impl_fn
    variants = ([H.Provider("inplace", lambda c, a: (lambda: inplace(*a)), peer=False)]
                + [config(bt, w) for bt, w in ((1, 2), (2, 4), (2, 8), (4, 4), (4, 8))]
                + [variant("v", 1, 4), variant("v pos early", 1, 4, POS_EARLY=True),
                   variant("v pos early", 2, 4, POS_EARLY=True), variant("v pos early", 1, 8, POS_EARLY=True)])
    for spec in ("rope:llama3-70b-tp8:1024x8q1kx128:bfloat16", "rope:llama3-70b-tp8:4096x8q1kx128:bfloat16",
                 "rope:llama3-70b-tp8:128x8q1kx128:bfloat16", "rope:llama3-8b:1024x32q8kx128:bfloat16"):
        case, peers = R._find(spec)[0]
        provs = [p for p in peers if p.name in ("liger", "triton")] + variants
        args = case.make_args()
        want = BR.OP.native(*args)
        for p in variants:
            a = tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in args)
            got = p.bind(case, a)()
            got = (a[1], a[2]) if p.name == "inplace" else got
            err = max((g.float() - e.float()).abs().max().item() for g, e in zip(got, want))
            log(f"rope7 {spec} {p.name} max err {err:.3g}")
        _log_rounds("rope7", spec, case, provs, "liger", 20)


@triton.jit
def _amax_v(X, XS, AMAX, N_ROWS, N_COLS, LAST_FROM, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
            SPLIT: tl.constexpr):
    """`TQ._amax_kernel` with L2 policies by tile: with SPLIT, tiles from LAST_FROM on are loaded
    evict_last (the quant pass reads them first, `_quant_from_amax_v`) and earlier ones evict_first."""
    n_tiles = tl.cdiv(N_ROWS, BLOCK_M) * tl.cdiv(N_COLS, BLOCK_N)
    peak = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for tile in range(tl.program_id(0), n_tiles, tl.num_programs(0)):
        rows, cols, mask = TQ._tile(tile, N_ROWS, N_COLS, BLOCK_M, BLOCK_N)
        ptrs = X + rows[:, None] * XS + cols[None, :]
        if SPLIT:
            if tile >= LAST_FROM:
                x = tl.load(ptrs, mask=mask, other=0.0, eviction_policy="evict_last")
            else:
                x = tl.load(ptrs, mask=mask, other=0.0, eviction_policy="evict_first")
        else:
            x = tl.load(ptrs, mask=mask, other=0.0)
        peak = tl.maximum(peak, tl.abs(x.to(tl.float32)))
    tl.atomic_max(AMAX, tl.max(tl.max(peak, axis=1), axis=0))


@triton.jit
def _quant_from_amax_v(X, XS, Q, QS, AMAX, SCALE_OUT, N_ROWS, N_COLS, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, EV: tl.constexpr, CS: tl.constexpr):
    """`TQ._static_quant_kernel` with FROM_AMAX, an L2 policy on x's load (EV) and a cache
    modifier on q's store (CS)."""
    tile = tl.num_programs(0) - 1 - tl.program_id(0)
    rows, cols, mask = TQ._tile(tile, N_ROWS, N_COLS, BLOCK_M, BLOCK_N)
    x = tl.load(X + rows[:, None] * XS + cols[None, :], mask=mask, other=0.0, eviction_policy=EV).to(tl.float32)
    scale = TQ._scale_of(tl.load(AMAX))
    TQ._store_scale(SCALE_OUT, scale, tl.program_id(0))
    tl.store(Q + rows[:, None] * QS + cols[None, :], TQ._to_fp8(x, scale, Q), mask=mask, cache_modifier=CS)


def quant18():
    """Dynamic per-tensor quant (#9's copy-bandwidth misses at 16384 tokens, 55-60% of copy: two passes
    over x): L2 reuse between the amax pass and the quant pass, which reads the last tiles first.
    Variants: q stored streaming (.cs), x's second load evict_first, and the amax pass loading its
    last `window` x L2 bytes evict_last (earlier tiles evict_first). rematch.py's rounds (two captures x
    30 rounds); ratio = production's time / the variant's."""
    import rematch as R

    l2 = torch.cuda.get_device_properties(0).L2_cache_size

    def variant(name, window, ev, cs):
        def bind(case, args):
            (x,) = args
            x2, n_rows, n_cols = x, x.shape[0], x.shape[1]
            cfg = TQ.tile_config(n_rows, n_cols, TQ.S.sm_count(x))
            tiles = TQ.S.cdiv(n_rows, cfg.block_m) * TQ.S.cdiv(n_cols, cfg.block_n)
            tile_bytes = cfg.block_m * cfg.block_n * x.element_size()
            last_from = max(0, tiles - int(window * l2) // tile_bytes) if window else tiles
            programs = max(1, min(tiles, TQ.AMAX_PROGRAMS_PER_SM * TQ.S.sm_count(x)))
            q = torch.empty_like(x, dtype=torch.float8_e4m3fn)
            amax = torch.zeros(1, dtype=torch.float32, device=x.device)
            scale = torch.empty(1, dtype=torch.float32, device=x.device)

            def run():
                amax.zero_()
                _amax_v[(programs,)](x2, x2.stride(0), amax, n_rows, n_cols, last_from, BLOCK_M=cfg.block_m,
                                     BLOCK_N=cfg.block_n, SPLIT=bool(window), num_warps=cfg.num_warps)
                _quant_from_amax_v[(tiles,)](x2, x2.stride(0), q, q.stride(0), amax, scale, n_rows, n_cols,
                                             BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, EV=ev, CS=cs,
                                             num_warps=cfg.num_warps)
                return q, scale
            return run
        return H.Provider(name, bind, peer=False)

    variants = [variant("v plain", 0, "", ""), variant("v q.cs", 0, "", ".cs"),
                variant("v x2.ef q.cs", 0, "evict_first", ".cs"),
                variant("v win0.5 x2.ef q.cs", 0.5, "evict_first", ".cs"),
                variant("v win0.8 x2.ef q.cs", 0.8, "evict_first", ".cs"),
                variant("v win0.8", 0.8, "", "")]
    for spec in ("quant:dynamic_scaled_fp8_quant:16384x4096:bfloat16", "quant:dynamic_scaled_fp8_quant:16384x8192:bfloat16",
                 "quant:dynamic_scaled_fp8_quant:16384x14336:bfloat16", "quant:dynamic_scaled_fp8_quant:4096x8192:bfloat16",
                 "quant:dynamic_scaled_fp8_quant:4096x4096:bfloat16", "quant:dynamic_scaled_fp8_quant:1024x8192:bfloat16"):
        case, peers = R._find(spec)[0]
        provs = [p for p in peers if p.name in ("inductor", "triton")] + variants
        args = case.make_args()
        q_ref, s_ref = ir.get_op(case.op)(*args)
        for p in variants:
            q, s = p.bind(case, args)()
            same = torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8)) and torch.equal(s, s_ref)
            log(f"quant18 {spec} {p.name} {'bitwise equal to the op' if same else 'DIFFERS from the op'}")
        _log_rounds("quant18", spec, case, provs, "triton", 30)


SECTIONS_BY_NAME = {"inductor": dump_inductor, "act": act_sweep, "norm": norm_sweep, "quant": quant_sweep,
                    "rows": rows_sweep, "variants": variants, "rows2": rows2, "act2": act2,
                    "rows3": rows3, "group3": group3, "fused3": fused3,
                    "fused4": fused4, "act3": act3, "rope3": rope3, "rope4": rope4, "rope5": rope5, "act5": act5, "act6": act6, "act7": act7, "act8": act8, "quant8": quant8, "norm8": norm8, "norm9": norm9, "norm10": norm10, "act9": act9,
                    "rope6": rope6, "quant11": quant11,
                    "quant12": quant12, "quant13": quant13,
                    "quant14": quant14, "quant15": quant15, "quant16": quant16, "quant17": quant17, "act10": act10,
                    "norm11": norm11, "norm12": norm12, "norm13": norm13, "norm14": norm14, "norm15": norm15, "norm16": norm16, "norm17": norm17, "quant18": quant18, "norm18": norm18,
                    "rope7": rope7}


def main() -> None:
    log("copy", H.copy_bandwidth_gbs())
    for name in SECTIONS:
        t0 = time.time()
        try:
            SECTIONS_BY_NAME[name]()
        except Exception:
            traceback.print_exc()
        log(f"== {name} {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
