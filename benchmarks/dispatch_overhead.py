#!/usr/bin/env python3
"""What the IR dispatcher adds to a direct provider call, on tiny CPU tensors.

For each op: (1) the chosen provider's function called directly, (2) an eager
`irshim.ir.ops.<op>(...)` call, (3) `torch.ops.irshim.<op>(...)`. Variants are
interleaved over several repeats and the median per-call time is kept, so slow
drift of the machine hits all of them alike. Target: (2) - (1) <= 1.5 µs.

    python benchmarks/dispatch_overhead.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import timeit
from pathlib import Path

import irshim.ir as ir
import torch
from harness import cpu_name
from torch import Tensor

TARGET_US = 1.5


@ir.register_op
def bench_identity(x: Tensor) -> Tensor:
    """Returns x: the call costs nothing but dispatch."""
    return x


def _cases():
    x = torch.randn(1, 8)
    w = torch.ones(8)
    return {
        "bench_identity": (x,),
        "rms_norm": (x, w, 1e-6),
        "fused_add_rms_norm": (x, x.clone(), w, 1e-6),
        "silu_and_mul": (torch.randn(1, 16),),
    }


def measure(op: ir.IrOp, args: tuple, number: int, repeats: int) -> dict:
    impl = op.dispatch(*args)
    direct_fn = impl.impl_fn
    variants = {
        "direct": lambda: direct_fn(*args),
        "eager_ir": lambda: op(*args),
        "torch_ops": lambda: op.torch_op(*args),
    }
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # warm-up
        timeit.timeit(fn, number=number // 10 or 1)
    for _ in range(repeats):
        for name, fn in variants.items():
            samples[name].append(timeit.timeit(fn, number=number) / number * 1e6)
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "provider": impl.provider,
        "direct_us": med["direct"],
        "eager_ir_us": med["eager_ir"],
        "torch_ops_us": med["torch_ops"],
        "eager_added_us": med["eager_ir"] - med["direct"],
        "torch_ops_added_us": med["torch_ops"] - med["direct"],
        "eager_ratio": med["eager_ir"] / med["direct"],
        "torch_ops_ratio": med["torch_ops"] / med["direct"],
        "eager_meets_target": med["eager_ir"] - med["direct"] <= TARGET_US,
    }


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "# Dispatch overhead (CPU, tiny tensors)",
        "",
        f"Machine: {env['cpu']} ({env['cores']} cores; torch limited to 1 thread), Python {env['python']}, torch {env['torch']}.",
        f"Median of {result['repeats']} interleaved repeats of {result['number']} calls each.",
        f"Target: an eager IR call adds <= {TARGET_US} µs to the direct provider call.",
        "",
        "| op | provider | direct µs | eager IR µs | torch.ops µs | eager adds µs | torch.ops adds µs | eager / direct | meets target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["ops"].items():
        lines.append(
            f"| {name} | {r['provider']} | {r['direct_us']:.2f} | {r['eager_ir_us']:.2f} | {r['torch_ops_us']:.2f} "
            f"| {r['eager_added_us']:.2f} | {r['torch_ops_added_us']:.2f} | {r['eager_ratio']:.2f}x "
            f"| {'yes' if r['eager_meets_target'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {
        "environment": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "number": args.number,
        "repeats": args.repeats,
        "target_us": TARGET_US,
        "ops": {},
    }
    for name, call_args in _cases().items():
        result["ops"][name] = measure(ir.get_op(name), call_args, args.number, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dispatch_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = to_markdown(result)
    (args.out / "dispatch_overhead.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
