#!/usr/bin/env python3
"""What a sampled-out call costs in shadow mode: a layer call at a sample so small that
nothing is compared, against the same call in `off` mode (host time, CPU tensors).

At IRSHIM_SHADOW_SAMPLE=0.01, 99 calls in 100 take this path, so it is the part of the
shadow overhead that every call pays (shadow_overhead.py's "steps that compared
nothing"). Each repeat times both modes in turn, the order reversed every other repeat;
the cost is the median of the per-repeat differences (benchmarks/paired.py). Public API
only, so that it runs against any irshim version (A/B of two checkouts).

    CUDA_VISIBLE_DEVICES= python benchmarks/shadow_sampling_cost.py [--out DIR] [--label TEXT]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

import irshim.compat as compat
from irshim.compat.layers import RMSNorm, SiluAndMul

from harness import cpu_name
from paired import difference, per_call_us
from report_files import write_report

SAMPLE = 1e-12
"""Small enough that no call of a run is compared, and still shadow mode with sampling."""


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--number", type=int, default=4000, help="calls per timed block")
    p.add_argument("--repeats", type=int, default=41)
    p.add_argument("--label", default="", help="names the code or machine in the results")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    layers = {"RMSNorm + residual": (RMSNorm(64), (torch.randn(4, 64), torch.randn(4, 64))),
              "SiluAndMul": (SiluAndMul(), (torch.randn(4, 128),))}
    rows = {}
    with torch.inference_mode(), tempfile.TemporaryDirectory() as reports:
        for name, (layer, args) in layers.items():
            call = lambda: layer(*args)  # noqa: E731
            samples: dict[str, list[float]] = {"off": [], "shadow": []}
            for r in range(a.repeats + 1):
                for mode in ("off", "shadow") if r % 2 == 0 else ("shadow", "off"):
                    with compat.override(dispatch=mode, shadow_sample=SAMPLE, report_dir=reports):
                        us = per_call_us(call, a.number)
                    if r:  # the first repeat warms up
                        samples[mode].append(us)
            rows[name] = {"off_us": min(samples["off"]), **difference(samples, "off", "shadow")}
        compat.flush()
    result = {"label": a.label, "cpu": cpu_name(),
              "python": platform.python_version(), "torch": torch.__version__,
              "number": a.number, "repeats": a.repeats, "rows": rows}
    text = (f"# Sampled-out shadow call vs off ({a.label or 'this code'})\n\n"
            f"{result['cpu']}, Python {result['python']}, torch {result['torch']}; torch.inference_mode, "
            f"{a.repeats} repeats of {a.number} calls a mode.\n\n"
            "| layer | off µs (min) | sampled-out adds µs (median) | min diff | IQR |\n|---|---:|---:|---:|---:|\n"
            + "".join(f"| {k} | {v['off_us']:.2f} | {v['median']:.2f} | {v['min']:.2f} | {v['iqr']:.2f} |\n"
                      for k, v in rows.items()))
    print(text)
    write_report(a.out, "shadow_sampling_cost", result, text)
    return result


if __name__ == "__main__":
    main()
