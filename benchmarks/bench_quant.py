"""FP8 quant and norm+quant: native eager, Inductor (static shapes), irshim's `triton`
provider and, for the fused ops, the unfused Triton pair (norm kernel, then quant
kernel), side by side (harness.py says what is measured).

    python benchmarks/bench_quant.py [--quick] [--ops a,b] [--tokens ...] [--widths ...] [--out DIR] [--sweep]
    python benchmarks/bench_quant.py --smoke     # CPU, Triton interpreter, tiny shapes: checks the script runs

Bytes are those the op must move: x read (and the residual read and the new
residual written, for the fused add), q written (1 byte an element), weight read
once, and every scale read or written (4 bytes each). Before timing, every
provider's output is compared with native dequantized, with the op's tolerance;
a disagreement is recorded as an error of that provider.

Acceptance (issue 9): quant kernels >= 1.0x Inductor from 1024 tokens up and >= 85%
of copy bandwidth at 16384 tokens; fused norm+quant >= 1.3x the unfused Triton pair
from 1024 tokens up. The Markdown ends with a table of exactly those ratios.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

SMOKE = "--smoke" in sys.argv
if SMOKE:
    sys.argv.remove("--smoke")
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any Triton kernel is defined

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import harness as H  # noqa: E402

import irshim.ir as ir  # noqa: E402
from irshim.ir.ops import quant as qops  # noqa: E402
from irshim.ir.tolerances import assert_close  # noqa: E402

ir.load_providers()
from irshim.kernels.triton import layernorm as TL  # noqa: E402
from irshim.kernels.triton import quant as TQ  # noqa: E402

QUANT = ["static_scaled_fp8_quant", "dynamic_scaled_fp8_quant", "dynamic_per_token_scaled_fp8_quant",
         "per_token_group_fp8_quant"]
FUSED = ["rms_norm_static_fp8_quant", "fused_add_rms_norm_static_fp8_quant", "rms_norm_dynamic_per_token_fp8_quant"]
OPS = QUANT + FUSED
TOKENS = [1, 16, 128, 1024, 4096, 16384]
HIDDEN = [4096, 8192, 14336]
KINDS = {"dynamic_per_token_scaled_fp8_quant": "per_token", "rms_norm_static_fp8_quant": "norm_static",
         "fused_add_rms_norm_static_fp8_quant": "norm_add_static"}
"""op -> `row_config`'s kind (the dynamic norm + quant: "norm_dynamic")."""
EAGER_TOKENS = (1, 16)
ACCEPT_FROM_TOKENS = 1024
COPY_TOKENS = 16384


def _bytes(op: str, tokens: int, hidden: int, itemsize: int) -> int:
    n = tokens * hidden
    moved = n * itemsize + n  # x read, q written
    if op.startswith("fused_add"):
        moved += 2 * n * itemsize  # residual read, new residual written
    if op in FUSED:
        moved += hidden * itemsize  # weight
    if op == "per_token_group_fp8_quant":
        moved += 4 * tokens * (hidden // qops.group_size_for(hidden))  # scales written
    elif "per_token" in op:
        moved += 4 * tokens + 4  # scales written, scale_ub read
    else:
        moved += 4  # the per-tensor scale, read or written
    return moved


def cases(ops, tokens, widths, device, dtype=torch.bfloat16):
    out = []
    for name in ops:
        op = ir.get_op(name)
        for h in widths:
            for t in tokens:
                out.append(H.Case(
                    op=name, shape=f"{t}x{h}", dtype=str(dtype).removeprefix("torch."), tokens=t,
                    bytes=_bytes(name, t, h, dtype.itemsize),
                    make_args=lambda op=op, t=t, h=h: op.generate_inputs(t, h, dtype, device),
                    eager=t in EAGER_TOKENS and h == widths[0],
                ))
    return out


def _pair(name: str, args: tuple):
    """The unfused Triton pair for a fused op: the norm kernel, then the quant kernel."""
    if name == "rms_norm_static_fp8_quant":
        x, w, eps, scale = args
        return lambda: TQ.static_quant(TL.rms_norm_into(x, w, eps), scale)
    if name == "fused_add_rms_norm_static_fp8_quant":
        x, r, w, eps, scale = args

        def run():
            out, residual = TL.fused_add_rms_norm_into(x, r, w, eps)
            return TQ.static_quant(out, scale), residual
        return run
    if name == "rms_norm_dynamic_per_token_fp8_quant":
        x, w, eps, ub = args
        return lambda: TQ.per_token_quant(TL.rms_norm_into(x, w, eps), ub)
    return None


def providers(ops) -> list[H.Provider]:
    compiled = {name: H.inductor(ir.get_op(name).native) for name in ops}
    return [
        H.Provider("native", lambda c, a: (lambda: ir.get_op(c.op).native(*a))),
        H.Provider("inductor", lambda c, a: (lambda: compiled[c.op](*a))),
        # The IR op as users call it; main() puts `triton` first in every op's priority.
        H.Provider("triton", lambda c, a: (lambda: ir.get_op(c.op)(*a)), peer=False),
        H.Provider("triton_pair", lambda c, a: _pair(c.op, a)),
    ]


# ------------------------------------------------------------------ checks
def _q_and_scale(name: str, args: tuple, result):
    if name in ("static_scaled_fp8_quant", "rms_norm_static_fp8_quant"):
        return result, args[-1]
    if name == "fused_add_rms_norm_static_fp8_quant":
        return result[0], args[-1]
    return result[0], result[1]


def check(case: H.Case, provs: list[H.Provider]) -> dict[str, str]:
    """Each provider's output against native, dequantized; {provider: error} for disagreements."""
    op = ir.get_op(case.op)
    args = case.make_args()
    expected = _q_and_scale(case.op, args, op.native(*args))
    errors = {}
    for p in provs:
        fn = p.bind(case, args)
        if fn is None or p.name == "native":
            continue
        try:
            q, s = _q_and_scale(case.op, args, fn())
            assert_close(qops.dequantize(q, s), qops.dequantize(*expected), op.tolerance(args[0].dtype),
                         what=f"{case.op} {case.shape} {p.name}")
        except Exception as exc:
            errors[p.name] = f"check: {type(exc).__name__}: {exc}"[:300]
    return errors


# ---------------------------------------------------------------- results
def acceptance(rows: list[dict]) -> list[str]:
    """The issue's targets, row by row: Inductor ratio and % copy for the quant kernels,
    pair ratio for the fused ones."""
    lines = ["", "## Acceptance targets (issue 9)", "",
             "| op | shape | triton µs | inductor / triton (>= 1.0) | % copy at 16384 (>= 85%) "
             "| pair / triton (>= 1.3) | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["graph_us"].get("triton")
        if t is None or r["tokens"] < ACCEPT_FROM_TOKENS:
            continue
        ind = r["graph_us"].get("inductor")
        pair = r["graph_us"].get("triton_pair")
        ind_ratio = ind / t if ind else None
        pair_ratio = pair / t if pair else None
        copy = r.get("copy_fraction") if r["tokens"] == COPY_TOKENS else None
        if r["op"] in FUSED:
            met = pair_ratio is not None and pair_ratio >= 1.3
        else:
            met = ind_ratio is not None and ind_ratio >= 1.0 and (copy is None or copy >= 0.85)
        lines.append(f"| {r['op']} | {r['shape']} | {t:.1f} | "
                     f"{f'{ind_ratio:.2f}' if ind_ratio else '–'} | {f'{100 * copy:.0f}%' if copy else '–'} | "
                     f"{f'{pair_ratio:.2f}' if pair_ratio else '–'} | {'yes' if met else 'NO'} |")
    return lines


def _run_gpu(args, ops) -> None:
    suite = cases(ops, H.int_list(args.tokens, [1, 1024, 16384] if args.quick else TOKENS),
                  H.int_list(args.widths, [4096] if args.quick else HIDDEN), "cuda")
    rows = H.run_suite("bench_quant", args, suite, providers(ops), check=check,
                       notes="triton_pair: the unfused Triton norm kernel then the quant kernel (fused ops only). "
                             "Inputs bf16; scales float32.")
    md = args.out / f"{args.name or 'bench_quant'}.md"
    md.write_text(md.read_text() + "\n".join(acceptance(rows)) + "\n")


def _run_smoke(args, ops) -> None:
    """CPU: the same cases, providers and checks on tiny shapes, wall-clock timed; Inductor
    compiles C++ for the CPU. Numbers mean nothing; the run proves the script works."""
    provs = providers(ops)
    names = [p.name for p in provs]
    rows = []
    for case in cases(ops, H.int_list(args.tokens, [3]), H.int_list(args.widths, [256]), "cpu"):
        row = H.Row(case.op, case.shape, case.dtype, case.tokens, case.bytes)
        row.errors.update(check(case, provs))
        a = case.make_args()
        for p in provs:
            fn = p.bind(case, a)
            if fn is None:
                continue
            fn()
            t0 = time.perf_counter()
            for _ in range(3):
                fn()
            row.graph_us[p.name] = (time.perf_counter() - t0) * 1e6 / 3
        rows.append(H.summarise(row, 1.0, "triton", [p.name for p in provs if p.peer]))
        H.print_table(rows[-1:], names, header=len(rows) == 1)
        for p, e in row.errors.items():
            print(f"  error {p}: {e}", flush=True)
    env = {"gpu": "CPU (smoke: Triton interpreter, wall clock)", "sm_count": 0, "torch": torch.__version__,
           "triton": __import__("triton").__version__, "cuda": None,
           "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    out = args.out if args.out != Path(__file__).parent / "results" else Path(tempfile.mkdtemp(prefix="bench_quant_"))
    name = args.name or "bench_quant_smoke"
    H.write_results(name, out, env, {"copy": 1.0}, rows, names, "triton")
    (out / f"{name}.md").write_text((out / f"{name}.md").read_text() + "\n".join(acceptance(rows)) + "\n")
    bad = [(r["op"], p) for r in rows for p in r["errors"]]
    print(f"smoke: {len(rows)} cases, results in {out}; check errors: {bad or 'none'}", flush=True)
    if bad:
        raise SystemExit(1)


def sweep(ops) -> None:
    """GPU: time launch configurations of the row kernels (per-token, fused norm) beside Inductor
    and the pair (input for `row_config`; * marks the heuristic's choice)."""
    import triton

    print("sweep: op shape | rows/warps:us (c<chunk>/warps: multi-pass) ... | inductor, pair", flush=True)
    provs = {p.name: p for p in providers(ops)}
    for name in [o for o in ops if o in FUSED or o == "dynamic_per_token_scaled_fp8_quant"]:
        op = ir.get_op(name)
        for h in HIDDEN:
            for t in (1, 16, 128, 1024, 16384):
                sets = [op.generate_inputs(t, h, torch.bfloat16, "cuda") for _ in range(4 if t < 4096 else 1)]
                calls = max(2, min(100, (1 << 30) // _bytes(name, t, h, 2)))
                chosen = TQ.row_config(t, h, KINDS.get(name, "norm_dynamic"))
                results = []
                configs = [TQ.RowConfig(block_m, triton.next_power_of_2(h), warps, True)
                           for block_m in ((1, 2) if t >= 1024 else (1,)) for warps in (4, 8, 16, 32)]
                configs += [TQ.RowConfig(1, chunk, warps, False) for chunk in (1024, 2048, 4096) for warps in (4, 8, 16)
                            if chunk < h and chunk // warps >= 64]
                for cfg in configs:
                    fns = [_configured(name, a, cfg) for a in sets]
                    results.append((H.graph_time_us(fns, calls), cfg))
                case = H.Case(name, f"{t}x{h}", "bfloat16", t, 0, lambda: None)
                peers = {p: H.graph_time_us([provs[p].bind(case, a) for a in sets], calls)
                         for p in ("inductor", "triton_pair") if provs[p].bind(case, sets[0]) is not None}
                results.sort(key=lambda r: r[0])
                line = " ".join(f"{_label(c)}:{us:.2f}{'*' if c == chosen else ''}" for us, c in results[:10])
                print(f"sweep {name} {t}x{h} | {line} | " + " ".join(f"{p}:{us:.2f}" for p, us in peers.items()),
                      flush=True)


def _label(cfg) -> str:
    return f"{cfg.block_m}/{cfg.num_warps}" if cfg.single_pass else f"c{cfg.block_n}/{cfg.num_warps}"


def _configured(name, args, cfg):
    if name == "dynamic_per_token_scaled_fp8_quant":
        return lambda: TQ.per_token_quant(*args, config=cfg)
    if name == "rms_norm_static_fp8_quant":
        x, w, eps, s = args
        return lambda: TQ.rms_norm_quant(x, None, w, eps, s, None, config=cfg)
    if name == "fused_add_rms_norm_static_fp8_quant":
        x, r, w, eps, s = args
        return lambda: TQ.rms_norm_quant(x, r, w, eps, s, None, config=cfg)
    x, w, eps, ub = args
    return lambda: TQ.rms_norm_quant(x, None, w, eps, None, ub, config=cfg)


def main() -> None:
    args = H.parse_args(__doc__.split("\n")[0])
    ops = [o for o in args.ops.split(",") if o] or OPS
    ir.set_priority({name: ["triton", "native"] for name in OPS})
    if SMOKE:
        with TQ.interpreter_fp8_rounding():
            _run_smoke(args, ops)
    elif args.sweep:
        sweep(ops)
    else:
        _run_gpu(args, ops)


if __name__ == "__main__":
    main()
