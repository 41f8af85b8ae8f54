"""RMS norms: native eager, Inductor (static shapes), Liger-Kernel and irshim's
`triton` provider, side by side (harness.py says what is measured).

    python benchmarks/bench_norms.py [--quick] [--ops rms_norm,...] [--out DIR] [--sweep]

Liger runs with casting_mode="gemma" (everything in float32, one rounding at
the end), which is the IR's semantics; its kernels also store one float32 rstd
per row (for backward), which the byte counts here do not include.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import harness as H  # noqa: E402

import irshim.ir as ir  # noqa: E402

ir.load_providers()
from irshim.kernels.triton import layernorm as TL  # noqa: E402

OPS = ["rms_norm", "fused_add_rms_norm", "gemma_rms_norm", "gemma_fused_add_rms_norm"]
TOKENS = [1, 16, 64, 128, 1024, 4096, 16384]
HIDDEN = [4096, 8192]
EAGER_TOKENS = (1, 16)
FP16 = (4096, 4096)  # the fp16 row: one shape per op


def _bytes(op: str, tokens: int, hidden: int, itemsize: int) -> int:
    streams = 4 if "fused_add" in op else 2  # x (+ residual) read, out (+ residual) written
    return streams * tokens * hidden * itemsize + hidden * itemsize  # + weight


def cases(ops: list[str], quick: bool, tokens: list[int], widths: list[int], fp16: bool) -> list[H.Case]:
    out = []
    tokens = [1, 64, 1024, 16384] if quick else tokens
    for name in ops:
        op = ir.get_op(name)
        shapes = [(t, h, torch.bfloat16) for h in widths for t in tokens] + ([(*FP16, torch.float16)] if fp16 else [])
        for t, h, dtype in shapes:
            out.append(H.Case(
                op=name, shape=f"{t}x{h}", dtype=str(dtype).removeprefix("torch."), tokens=t,
                bytes=_bytes(name, t, h, dtype.itemsize),
                make_args=lambda op=op, t=t, h=h, dtype=dtype: op.generate_inputs(t, h, dtype, "cuda"),
                eager=t in EAGER_TOKENS and h == HIDDEN[0] and dtype == torch.bfloat16,
            ))
    return out


def _liger():
    try:
        from liger_kernel.ops.fused_add_rms_norm import fused_add_rms_norm_forward
        from liger_kernel.ops.rms_norm import rms_norm_forward
    except Exception as exc:  # reported in the results, not fatal
        print(f"liger-kernel unavailable: {exc!r}", flush=True)
        return None

    def bind(case: H.Case, args: tuple):
        offset = 1.0 if case.op.startswith("gemma") else 0.0
        if "fused_add" in case.op:
            x, r, w, eps = args
            return lambda: fused_add_rms_norm_forward(x, r, w, eps, offset, "gemma")
        x, w, eps = args
        return lambda: rms_norm_forward(x, w, eps, offset, "gemma", None)

    return H.Provider("liger", bind)


def providers() -> list[H.Provider]:
    compiled = {name: H.inductor(ir.get_op(name).native) for name in OPS}
    result = [
        H.Provider("native", lambda c, a: (lambda: ir.get_op(c.op).native(*a))),
        H.Provider("inductor", lambda c, a: (lambda: compiled[c.op](*a))),
    ]
    liger = _liger()
    if liger is not None:
        result.append(liger)
    result += [
        # The IR op as users call it: dispatch picks `triton` (CUDA platform default).
        H.Provider("triton", lambda c, a: (lambda: ir.get_op(c.op)(*a)), peer=False),
        # The graph-visible triton_op called eagerly: what the eager bypass saves.
        H.Provider("triton_op", lambda c, a: (lambda: getattr(torch.ops.irshim_triton, c.op)(*a))
                   if c.eager else None, peer=False),
    ]
    return result


def sweep() -> None:
    """Time launch configurations of the triton kernel beside Inductor and Liger
    on the same inputs (input for `norm_config`)."""
    import triton

    provs = {p.name: p for p in providers()}
    print("sweep: op shape | rows/warps:us ... (* = heuristic) | peers", flush=True)
    for name in ("rms_norm", "fused_add_rms_norm"):
        op = ir.get_op(name)
        for h in HIDDEN:
            for t in (1, 16, 64, 1024, 16384):
                sets = [op.generate_inputs(t, h, torch.bfloat16, "cuda") for _ in range(4 if t < 4096 else 1)]
                calls = max(2, min(100, (1 << 30) // _bytes(name, t, h, 2)))
                sms = torch.cuda.get_device_properties(0).multi_processor_count
                chosen = TL.norm_config(t, h, 2, sms, "fused" in name, TL.S.memory_gbs_per_sm(sets[0][0]))
                results = []
                configs = [(1, w) for w in (4, 8, 16, 32)] + ([(2, 8), (2, 16)] if t >= 1024 else [])
                for block_m, warps in configs:
                    cfg = TL.NormConfig(block_m, triton.next_power_of_2(h), warps, True)
                    into = TL.fused_add_rms_norm_into if "fused" in name else TL.rms_norm_into
                    fns = [lambda a=a, cfg=cfg: into(*a, config=cfg) for a in sets]
                    results.append((H.graph_time_us(fns, calls), block_m, warps))
                case = H.Case(name, f"{t}x{h}", "bfloat16", t, 0, lambda: None)
                peers = {p: H.graph_time_us([provs[p].bind(case, a) for a in sets], calls)
                         for p in ("inductor", "liger") if p in provs}
                results.sort()
                line = " ".join(f"{m}/{w}:{us:.2f}{'*' if (m, w) == (chosen.block_m, chosen.num_warps) else ''}"
                                for us, m, w in results)
                print(f"sweep {name} {t}x{h} | {line} | "
                      + " ".join(f"{p}:{us:.2f}" for p, us in peers.items()), flush=True)


def main() -> None:
    args = H.parse_args(__doc__.split("\n")[0])
    if args.sweep:
        sweep()
        return
    ops = [o for o in args.ops.split(",") if o] or OPS
    widths = H.int_list(args.widths, HIDDEN)
    suite = cases(ops, args.quick, H.int_list(args.tokens, TOKENS), widths, not args.no_fp16)
    H.run_suite("bench_norms", args, suite, providers(),
                notes="Liger: casting_mode='gemma' (float32 throughout, the IR's semantics). "
                      "triton_op: the graph-visible op called eagerly (not a peer).")


if __name__ == "__main__":
    main()
