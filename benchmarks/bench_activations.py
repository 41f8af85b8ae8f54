"""Activations: native eager, Inductor (static shapes), Liger-Kernel and irshim's
`triton` provider, side by side (harness.py says what is measured).

    python benchmarks/bench_activations.py [--quick] [--ops silu_and_mul,...] [--out DIR] [--sweep]

Gated ops take [tokens, 2 x intermediate] and return [tokens, intermediate];
plain ops take and return [tokens, intermediate]. Liger has silu_and_mul
(`swiglu_fused_gate_up_forward`, which reads the fused tensor like ours),
gelu_and_mul with tanh (`geglu_forward(a, b)`, which needs two contiguous
halves: they are split once, outside the timed region) and relu2
(`relu_squared_forward`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import harness as H  # noqa: E402

import irshim.ir as ir  # noqa: E402

ir.load_providers()
from irshim.kernels.triton import activation as TA  # noqa: E402

# label -> (IR op, extra scalar arguments)
OPS = {
    "silu_and_mul": ("silu_and_mul", ()),
    "mul_and_silu": ("mul_and_silu", ()),
    "gelu_and_mul": ("gelu_and_mul", ("none",)),
    "gelu_tanh_and_mul": ("gelu_and_mul", ("tanh",)),
    "fatrelu_and_mul": ("fatrelu_and_mul", (0.5,)),
    "gelu_new": ("gelu_new", ()),
    "gelu_fast": ("gelu_fast", ()),
    "quick_gelu": ("quick_gelu", ()),
    "relu2": ("relu2", ()),
}
GATED = {"silu_and_mul", "mul_and_silu", "gelu_and_mul", "fatrelu_and_mul"}
TOKENS = [1, 16, 64, 128, 1024, 4096, 16384]
INTERMEDIATE = [14336, 28672]
EAGER_TOKENS = (1, 16)
FP16 = (4096, 14336)


def _bytes(op: str, tokens: int, width: int, itemsize: int) -> int:
    streams = 3 if op in GATED else 2
    return streams * tokens * width * itemsize


def cases(labels: list[str], quick: bool, tokens: list[int], widths: list[int], fp16: bool) -> list[H.Case]:
    out = []
    tokens = [1, 64, 1024, 16384] if quick else tokens
    for label in labels:
        name, extra = OPS[label]
        op = ir.get_op(name)
        shapes = [(t, d, torch.bfloat16) for d in widths for t in tokens] + ([(*FP16, torch.float16)] if fp16 else [])
        for t, d, dtype in shapes:
            out.append(H.Case(
                op=label, shape=f"{t}x{d}", dtype=str(dtype).removeprefix("torch."), tokens=t,
                bytes=_bytes(name, t, d, dtype.itemsize),
                make_args=lambda op=op, t=t, d=d, dtype=dtype, extra=extra:
                    (op.generate_inputs(t, d, dtype, "cuda")[0], *extra),
                eager=t in EAGER_TOKENS and d == INTERMEDIATE[0] and dtype == torch.bfloat16,
            ))
    return out


def _liger():
    try:
        from liger_kernel.ops.geglu import geglu_forward
        from liger_kernel.ops.relu_squared import relu_squared_forward
        from liger_kernel.ops.swiglu import swiglu_fused_gate_up_forward
    except Exception as exc:
        print(f"liger-kernel unavailable: {exc!r}", flush=True)
        return None

    def bind(case: H.Case, args: tuple):
        x = args[0]
        if case.op == "silu_and_mul":
            return lambda: swiglu_fused_gate_up_forward(x)
        if case.op == "gelu_tanh_and_mul":
            d = x.shape[-1] // 2
            a, b = x[..., :d].contiguous(), x[..., d:].contiguous()
            return lambda: geglu_forward(a, b)
        if case.op == "relu2":
            return lambda: relu_squared_forward(x)
        return None

    return H.Provider("liger", bind)


def providers() -> list[H.Provider]:
    compiled = {name: H.inductor(ir.get_op(name).native) for name, _ in OPS.values()}

    def op_of(case: H.Case):
        return OPS[case.op][0]

    result = [
        H.Provider("native", lambda c, a: (lambda: ir.get_op(op_of(c)).native(*a))),
        H.Provider("inductor", lambda c, a: (lambda: compiled[op_of(c)](*a))),
    ]
    liger = _liger()
    if liger is not None:
        result.append(liger)
    result += [
        H.Provider("triton", lambda c, a: (lambda: ir.get_op(op_of(c))(*a)), peer=False),
        H.Provider("triton_op", lambda c, a: (lambda: getattr(torch.ops.irshim_triton, op_of(c))(*a))
                   if c.eager else None, peer=False),
    ]
    return result


def sweep() -> None:
    """Time launch configurations of the gated kernel beside Inductor and Liger
    on the same inputs (input for `act_config`)."""
    provs = {p.name: p for p in providers()}
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print("sweep: op shape | rows/cols/warps:us ... (* = heuristic) | peers", flush=True)
    for label, act in (("silu_and_mul", "silu"), ("gelu_tanh_and_mul", "gelu_tanh")):
        extra = OPS[label][1]
        for d in INTERMEDIATE:
            for t in (1, 16, 64, 1024, 16384):
                sets = [torch.randn(t, 2 * d, device="cuda", dtype=torch.bfloat16)
                        for _ in range(4 if t < 1024 else 1)]
                calls = max(2, min(100, (1 << 30) // _bytes("silu_and_mul", t, d, 2)))
                chosen = TA.act_config(t, d, 2, sms)
                ch = (chosen.block_m, chosen.block_n, chosen.num_warps)
                configs = {(1, n, w) for n in (256, 512, 1024, 2048, 4096) for w in (2, 4, 8)} | {ch}
                results = []
                for m, n, w in sorted(configs):
                    cfg = TA.ActConfig(m, n, w)
                    fns = [lambda x=x, cfg=cfg: TA.gated(x, act, config=cfg) for x in sets]
                    results.append((H.graph_time_us(fns, calls), m, n, w))
                case = H.Case(label, f"{t}x{d}", "bfloat16", t, 0, lambda: None)
                peers = {}
                for p in ("inductor", "liger"):
                    if p in provs and provs[p].bind(case, (sets[0], *extra)) is not None:
                        peers[p] = H.graph_time_us([provs[p].bind(case, (x, *extra)) for x in sets], calls)
                results.sort()
                line = " ".join(f"{m}/{n}/{w}:{us:.2f}{'*' if (m, n, w) == ch else ''}"
                                for us, m, n, w in results[:5])
                mine = [us for us, m, n, w in results if (m, n, w) == ch][0]
                print(f"sweep {label} {t}x{d} | {line} | heuristic {ch}: {mine:.2f} | "
                      + " ".join(f"{p}:{us:.2f}" for p, us in peers.items()), flush=True)


def main() -> None:
    args = H.parse_args(__doc__.split("\n")[0])
    if args.sweep:
        sweep()
        return
    labels = [o for o in args.ops.split(",") if o] or list(OPS)
    widths = H.int_list(args.widths, INTERMEDIATE)
    suite = cases(labels, args.quick, H.int_list(args.tokens, TOKENS), widths, not args.no_fp16)
    H.run_suite("bench_activations", args, suite, providers(),
                notes="Liger: silu_and_mul (fused gate-up), gelu_tanh_and_mul (pre-split halves), "
                      "relu2. triton_op: the graph-visible op called eagerly (not a peer).")


if __name__ == "__main__":
    main()
