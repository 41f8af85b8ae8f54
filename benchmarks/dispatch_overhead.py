#!/usr/bin/env python3
"""What the IR dispatcher adds to a direct provider call, on tiny tensors.

For each op: (1) the chosen provider's function called directly, (2) an eager
`irshim.ir.ops.<op>(...)` call, (3) `torch.ops.irshim.<op>(...)`. Target:
(2) - (1) <= 1.5 µs. Method (benchmarks/paired.py): the variants are timed in
turn over several repeats; an added cost is the median of the per-repeat
differences. Up to commit ad82e7d it was the difference of per-variant medians,
which on a busy host swung by ±2 µs (rms_norm once measured -1.38 µs).

On the CPU the chosen providers are the native ones. `--device cuda` times the
GPU's choice (the Triton providers) on CUDA tensors: there the dispatcher also
runs the providers' `supports_args` checks, and the direct call includes the
kernel launch (the GPU is never the bottleneck at these sizes). It also times the
`maybe_inplace` overload, which the compat ports of in-place layers call.

    python benchmarks/dispatch_overhead.py [--device cuda] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import irshim.ir as ir
import torch
from harness import cpu_name
from paired import difference, measure as measure_variants
from torch import Tensor

TARGET_US = 1.5


@ir.register_op
def bench_identity(x: Tensor) -> Tensor:
    """Returns x: the call costs nothing but dispatch."""
    return x


def _cases(device: str) -> dict[str, tuple]:
    if device == "cpu":
        x, w = torch.randn(1, 8), torch.ones(8)
        return {
            "bench_identity": (x,),
            "rms_norm": (x, w, 1e-6),
            "fused_add_rms_norm": (x, x.clone(), w, 1e-6),
            "silu_and_mul": (torch.randn(1, 16),),
        }
    kw = {"device": device, "dtype": torch.bfloat16}
    x, w = torch.randn(1, 4096, **kw), torch.ones(4096, **kw)
    positions = torch.zeros(1, dtype=torch.long, device=device)
    cache = torch.randn(16, 128, device=device, dtype=torch.float32)
    return {
        "bench_identity": (x,),
        "rms_norm": (x, w, 1e-6),
        "fused_add_rms_norm": (x, x.clone(), w, 1e-6),
        "fused_add_rms_norm.maybe_inplace": (x, x.clone(), w, 1e-6),
        "silu_and_mul": (torch.randn(1, 2 * 14336, **kw),),
        "static_scaled_fp8_quant": (x, torch.ones(1, device=device)),
        "rotary_embedding.maybe_inplace": (positions, torch.randn(1, 32 * 128, **kw),
                                           torch.randn(1, 8 * 128, **kw), 128, 128, cache, True),
    }


def _callable(name: str):
    """The op (or its overload, `<op>.maybe_inplace`) and its torch.ops form."""
    op_name, _, overload = name.partition(".")
    op = ir.get_op(op_name)
    return (op.maybe_inplace, op.maybe_inplace.torch_op) if overload else (op, op.torch_op)


def measure(name: str, args: tuple, number: int, repeats: int) -> dict:
    call, torch_op = _callable(name)
    impl = call.dispatch(*args)
    direct_fn = impl.impl_fn
    variants = {
        "direct": lambda: direct_fn(*args),
        "eager_ir": lambda: call(*args),
        "torch_ops": lambda: torch_op(*args),
        # Diagnostics: the choice alone (every predicate it runs, nothing launched), and
        # the choice followed by the direct call: what the eager call does, less its own
        # frame. Where eager adds more than the choice alone costs, this tells whether the
        # excess is the dispatcher's or comes with any Python work before the provider.
        "dispatch_only": lambda: call.dispatch(*args),
        "dispatch_then_direct": lambda: (call.dispatch(*args), direct_fn(*args)),
    }
    samples = measure_variants(variants, number, repeats)
    med = {k: statistics.median(v) for k, v in samples.items()}
    eager, via_torch = difference(samples, "direct", "eager_ir"), difference(samples, "direct", "torch_ops")
    return {
        "provider": impl.provider,
        "direct_us": med["direct"],
        "eager_ir_us": med["eager_ir"],
        "torch_ops_us": med["torch_ops"],
        "dispatch_only_us": med["dispatch_only"],
        "dispatch_then_direct_added_us": difference(samples, "direct", "dispatch_then_direct")["median"],
        "eager_added_us": eager["median"],
        "eager_added_iqr_us": eager["iqr"],
        "torch_ops_added_us": via_torch["median"],
        "eager_ratio": med["eager_ir"] / med["direct"],
        "torch_ops_ratio": med["torch_ops"] / med["direct"],
        "eager_meets_target": eager["median"] <= TARGET_US,
    }


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        f"# Dispatch overhead ({env['device']}, tiny tensors)",
        "",
        f"Machine: {env['cpu']} ({env['cores']} cores; torch limited to 1 thread), Python {env['python']}, "
        f"torch {env['torch']}.",
        f"{result['repeats']} repeats of {result['number']} calls per variant, variants in turn; "
        "an added cost is the median of the per-repeat differences (IQR beside it).",
        f"Target: an eager IR call adds <= {TARGET_US} µs to the direct provider call.",
        "",
        "`dispatch() alone` times choosing the provider (its `supports_args` checks and the priority walk) "
        "without running it: the Python work an eager call adds, apart from its own call frame. "
        "`dispatch() + direct adds` times that choice followed by the direct call, against the direct call.",
        "",
        "| op | provider | direct µs | eager IR µs | torch.ops µs | eager adds µs (IQR) | dispatch() alone µs "
        "| dispatch() + direct adds µs | torch.ops adds µs | eager / direct | meets target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["ops"].items():
        lines.append(
            f"| {name} | {r['provider']} | {r['direct_us']:.2f} | {r['eager_ir_us']:.2f} | {r['torch_ops_us']:.2f} "
            f"| {r['eager_added_us']:.2f} ({r['eager_added_iqr_us']:.2f}) | {r['dispatch_only_us']:.2f} "
            f"| {r['dispatch_then_direct_added_us']:.2f} "
            f"| {r['torch_ops_added_us']:.2f} "
            f"| {r['eager_ratio']:.2f}x "
            f"| {'yes' if r['eager_meets_target'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: the Triton providers on CUDA tensors")
    parser.add_argument("--number", type=int, default=None, help="calls per timed block (cpu 20000, cuda 1000)")
    parser.add_argument("--repeats", type=int, default=None, help="timed blocks per variant (cpu 15, cuda 31)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    number = args.number or (20000 if args.device == "cpu" else 1000)
    # CUDA: more, shorter blocks. With 15 blocks of 2000 calls the per-block differences
    # of the norm rows spread over an IQR of 3-8 µs (results up to 2026-11-27).
    args.repeats = args.repeats or (15 if args.device == "cpu" else 31)
    if args.device != "cpu":
        ir.load_providers()
    result = {
        "environment": {
            "device": "CPU" if args.device == "cpu" else torch.cuda.get_device_name(args.device),
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "number": number,
        "repeats": args.repeats,
        "target_us": TARGET_US,
        "ops": {},
    }
    for name, call_args in _cases(args.device).items():
        result["ops"][name] = measure(name, call_args, number, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "dispatch_overhead" if args.device == "cpu" else "dispatch_overhead_cuda"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = to_markdown(result)
    (args.out / f"{stem}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
