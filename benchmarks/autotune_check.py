#!/usr/bin/env python3
"""Does `auto` pick what an independent measurement picks?

For each norm and activation op and each benchmark shape: `irshim.ir.autotune.tune`
chooses among the supported providers (and reports what tuning cost); then every
candidate is timed independently with triton.testing.do_bench_cudagraph (median)
in the same run. The choice passes when it is the fastest, or within 3% of it.

    python benchmarks/autotune_check.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

import irshim.ir as ir
from irshim.ir import autotune
from report_files import write_report

TOKENS = (1, 16, 128, 1024, 4096, 16384)
OPS = {  # op -> hidden size of the generated inputs (activations: output width)
    "rms_norm": 4096, "fused_add_rms_norm": 4096, "gemma_rms_norm": 4096,
    "silu_and_mul": 14336, "mul_and_silu": 14336, "gelu_and_mul": 14336, "fatrelu_and_mul": 14336,
    "gelu_new": 14336, "gelu_fast": 14336, "quick_gelu": 14336, "relu2": 14336,
}
WITHIN = 0.03


def independent_us(op: ir.IrOp, provider: str, args: tuple) -> float:
    import triton.testing

    # The provider alone, as tuning times it: an in-place one keeps rewriting
    # its (donated) inputs, which changes values but not the work done.
    impl = op.impls[provider]
    fresh = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    return triton.testing.do_bench_cudagraph(lambda: impl.impl_fn(*fresh)) * 1e3


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tokens", default=",".join(map(str, TOKENS)))
    args = parser.parse_args(argv)
    os.environ.setdefault("IRSHIM_TUNE_CACHE", tempfile.mkdtemp(prefix="irshim-tune-"))
    rows = []
    for name, hidden in OPS.items():
        op = ir.get_op(name)
        for tokens in map(int, args.tokens.split(",")):
            call = op.generate_inputs(tokens, hidden, torch.bfloat16, "cuda")
            choice = autotune.tune(op, call, force=True)
            independent = {p: independent_us(op, p, call) for p in choice.times_us}
            best = min(independent, key=independent.__getitem__)
            ratio = independent[choice.winner] / independent[best]
            rows.append({"op": name, "tokens": tokens, "hidden": hidden, "winner": choice.winner,
                         "tuned_us": choice.times_us, "independent_us": independent, "best": best,
                         "winner_vs_best": ratio, "ok": ratio <= 1 + WITHIN,
                         "disqualified": choice.disqualified, "tuning_ms": choice.tuning_ms})
            print(f"{name:22s} {tokens:6d}: auto={choice.winner:10s} best={best:10s} "
                  f"ratio={ratio:.3f} tuning {choice.tuning_ms:.1f} ms", flush=True)
    import triton

    env = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    report = {"environment": env, "within": WITHIN, "rows": rows,
              "all_ok": all(r["ok"] for r in rows),
              "total_tuning_ms": sum(r["tuning_ms"] for r in rows)}
    lines = [f"# autotune choice vs independent do_bench ({env['gpu']})", "",
             f"torch {env['torch']}, triton {env['triton']}, bf16. Pass: the chosen provider's "
             f"independent CUDA-graph median is within {WITHIN:.0%} of the fastest candidate's.", "",
             f"All pass: {'yes' if report['all_ok'] else 'NO'}; total tuning time "
             f"{report['total_tuning_ms'] / 1e3:.1f} s for {len(rows)} buckets.", "",
             "| op | tokens | auto chose | fastest (independent) | chosen / fastest | tuning ms | independent µs |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        times = ", ".join(f"{p} {t:.1f}" for p, t in r["independent_us"].items())
        lines.append(f"| {r['op']} | {r['tokens']} | {r['winner']} | {r['best']} | {r['winner_vs_best']:.3f} "
                     f"| {r['tuning_ms']:.1f} | {times} |")
    text = "\n".join(lines) + "\n"
    write_report(args.out, "autotune_check", report, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
