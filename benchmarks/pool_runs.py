#!/usr/bin/env python3
"""Several runs of shadow_overhead.py's interleaved steps, pooled into one estimate.

One run's slowdown moves by about a percentage point between runs on the lent
machines (their hosts' speed differs by up to 1.5x between calls), as much as its own
95% interval is wide. The pooled estimate is the mean of the runs' slowdowns (each run
weighs the same), with a 95% bootstrap interval that resamples the step pairs within
each run (2000 resamples).

    python benchmarks/pool_runs.py RUN.json [RUN.json ...] --label "..." [--out DIR --stem NAME]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from report_files import write_report


def _slowdown(off: list[float], shadow: list[float], idx: list[int] | None = None) -> float:
    if idx is None:
        return sum(shadow) / sum(off) - 1
    return sum(shadow[i] for i in idx) / sum(off[i] for i in idx) - 1


def pool(runs: list[tuple[list[float], list[float]]], resamples: int = 2000, seed: int = 0) -> dict:
    """Mean slowdown of the runs, and its bootstrap interval over the pairs of each run."""
    rng = random.Random(seed)
    estimate = sum(_slowdown(off, shadow) for off, shadow in runs) / len(runs)
    boot = []
    for _ in range(resamples):
        total = 0.0
        for off, shadow in runs:
            n = len(off)
            total += _slowdown(off, shadow, [rng.randrange(n) for _ in range(n)])
        boot.append(total / len(runs))
    boot.sort()
    return {"slowdown": estimate, "ci95": [boot[int(0.025 * resamples)], boot[int(0.975 * resamples) - 1]]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="shadow_overhead.py result files (JSON)")
    p.add_argument("--label", required=True, help="what the runs have in common (code, grad mode)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--stem", default="shadow_overhead_pooled")
    a = p.parse_args(argv)
    rows, series, devices = [], [], set()
    for path in a.runs:
        data = json.loads(path.read_text())
        steps = data["steps"]
        series.append((steps["times_us"]["off"], steps["times_us"]["shadow"]))
        devices.add(data["device"])
        rows.append({"file": path.name, "pairs": steps["pairs"], "block_steps": steps.get("block_steps", 1),
                     "slowdown": steps["slowdown"], "ci95": steps["ci95"], "off_mean_us": steps["off_mean_us"],
                     "grad_mode": data["args"].get("grad_mode"), "tokens": data["args"]["tokens"]})
    if len(devices) != 1 or len({(r["grad_mode"], r["tokens"]) for r in rows}) != 1:
        raise SystemExit(f"runs of one GPU model, grad mode and size only: {sorted(devices)}, "
                         f"{sorted({(r['grad_mode'], r['tokens']) for r in rows})}")
    result = {"device": devices.pop(), "label": a.label, "tokens": rows[0]["tokens"], "grad_mode": rows[0]["grad_mode"],
              "runs": rows, "pooled": pool(series)}
    low, high = result["pooled"]["ci95"]
    lines = [f"# Shadow loop, runs pooled ({result['device']}, {result['tokens']} tokens, torch.{result['grad_mode']})",
             "", f"{a.label}. `benchmarks/pool_runs.py`: the mean of the runs' slowdowns (each run weighs the same), "
             "95% bootstrap interval resampling the step pairs within each run.", "",
             f"**Pooled: {100 * result['pooled']['slowdown']:+.2f}%** (95% interval {100 * low:+.2f}% to "
             f"{100 * high:+.2f}%); target +5%.", "",
             "| run | pairs | steps a block | mean off step µs | slowdown | 95% interval |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    lines += [f"| {r['file']} | {r['pairs']} | {r['block_steps']} | {r['off_mean_us']:.0f} | "
              f"{100 * r['slowdown']:+.2f}% | {100 * r['ci95'][0]:+.2f}% to {100 * r['ci95'][1]:+.2f}% |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(a.out, a.stem, result, text)
    return result


if __name__ == "__main__":
    main()
