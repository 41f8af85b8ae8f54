#!/usr/bin/env python3
"""Host cost of a Triton launch against its argument count, and of the comparison kernel's launches.

Why `kernels/triton/compare.py` takes two pairs a launch: empty kernels with 1, 14 and 28
arguments, then `compare_pairs`' launcher and the ops around it, on a [256, 4096] bf16 pair.
The 14-argument launch is also split in two: Triton's argument binding and cache lookup
alone (``run(..., warmup=True)``), and the compiled kernel's own launcher alone (Triton
internals: rows marked n/a where this Triton's differ). Host clock
(`harness.eager_time_us`: 500 launches synchronised at both ends), median of 15 repeats.

    python benchmarks/triton_launch_cost.py [--out DIR]     # needs a CUDA GPU
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import triton
from harness import cpu_name, eager_time_us
from report_files import write_report

import irshim.ir as ir
from irshim.kernels.triton import compare as C


@triton.jit
def _one_arg(a):
    pass


@triton.jit
def _fourteen_args(o, a0, e0, b0, n0, t0, r0, a1, e1, b1, n1, t1, r1, s1):
    pass


@triton.jit
def _twenty_eight_args(o, a0, e0, b0, n0, t0, r0, a1, e1, b1, n1, t1, r1, a2, e2, b2, n2, t2, r2,
                       a3, e3, b3, n3, t3, r3, s1, s2, s3):
    pass


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    ir.load_providers()
    x = torch.randn(256, 4096, device="cuda", dtype=torch.bfloat16)
    y, b = x + 0.01, x.clone()
    out = torch.zeros(4, C.FIELDS, device="cuda")
    pair = [x, y, b, 100, 0.1, 0.1]
    args14 = (out, *pair * 2, 1)
    compiled = _fourteen_args[(1,)](*args14)
    stream = torch.cuda.current_stream().cuda_stream
    rows = {
        "empty kernel, 1 argument": lambda: _one_arg[(1,)](x),
        "empty kernel, 14 arguments": lambda: _fourteen_args[(1,)](*args14),
        "  its binding and cache lookup alone (warmup=True)":
            lambda: _fourteen_args.run(*args14, grid=(1,), warmup=True),
        "  its compiled kernel's launcher alone":
            lambda: compiled.run(1, 1, 1, stream, compiled.function, compiled.packed_metadata, None, None, None, *args14),
        "empty kernel, 28 arguments": lambda: _twenty_eight_args[(1,)](out, *pair * 4, 1, 1, 1),
        "torch.zeros(4, 5)": lambda: torch.zeros(4, C.FIELDS, device="cuda"),
        "compare launcher, 1 pair": lambda: C._launch(out, (y,), (x,), (None,), (0.01,), (0.01,)),
        "compare launcher, 2 pairs with baselines": lambda: C._launch(out, (y, y), (x, x), (b, b), (0.01, 0.01),
                                                                      (0.01, 0.01)),
        "compare_pairs op, 2 pairs with baselines": lambda: ir.ops.compare_pairs([y, y], [x, x], [b, b], [0.01, 0.01],
                                                                                 [0.01, 0.01]),
        "tolerance_stats op, 1 pair": lambda: ir.ops.tolerance_stats(y, x, 0.01, 0.01),
    }
    result = {"device": torch.cuda.get_device_name(), "cpu": cpu_name(), "torch": torch.__version__,
              "triton": triton.__version__, "host_us": {}}
    lines = [f"# Triton launch cost ({result['device']}, host {result['cpu']})", "",
             f"torch {result['torch']}, Triton {result['triton']}; `benchmarks/triton_launch_cost.py`: host µs a call "
             "(500 calls synchronised at both ends, median of 15 repeats).", "", "| launch | µs |", "| --- | ---: |"]
    for name, fn in rows.items():
        try:
            fn()  # compile
            value = statistics.median(eager_time_us(fn, 500) for _ in range(15))
        except Exception as exc:  # Triton internals of another version
            value = None
            print(f"{name}: n/a ({type(exc).__name__}: {exc})")
        result["host_us"][name.strip()] = value
        lines.append(f"| {name.strip()} | {'n/a' if value is None else f'{value:.1f}'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(a.out, "triton_launch_cost_" + ("h200" if "H200" in result["device"] else "h100"), result, text)
    return result


if __name__ == "__main__":
    main()
