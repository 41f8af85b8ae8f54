"""Check the `triton` provider's results against the kernel issues' targets.

    python benchmarks/summarize.py [results_dir]   # writes <results_dir>/targets.md

Reads every ``bench_*.json`` under the results folder and applies, per row, the
targets of the issue its benchmark belongs to, per GPU (where a case was run more
than once on one GPU model, the latest run counts):

- norms and activations (issue 5; bench_norms*, bench_activations*): from 1024
  tokens the CUDA-graph time is at most the best peer's (ratio >= 1.0); at 16384
  tokens >= 90% of the copy bandwidth measured in the same run;
- FP8 quant (issue 9; bench_quant*): from 1024 tokens >= 1.0x Inductor; at 16384
  tokens >= 85% of copy for the plain quant ops; fused norm + quant >= 1.3x the
  unfused Triton pair from 1024 tokens;
- RoPE (issue 10; bench_rope*): from 1024 tokens >= 1.0x the best peer; at 16384
  tokens >= 85% of copy;
- every kernel (the project's bar): at 1-64 tokens within 10% of the best peer
  (ratio >= 1 / 1.1).

Peers are those each benchmark marks as peers (native eager, Inductor, Liger where
it has the op); the unfused pair of bench_quant is a reference, not a peer.

A section lists the rows re-timed by benchmarks/rematch.py (rematch*.json): the median of
triton's per-round ratio to its best peer with its 95% interval, read as ahead (the whole
interval at or above 1.0), behind (the whole interval below 1 - REMATCH_RESOLUTION) or level.
The interval is within one run; REMATCH_RESOLUTION is what repeated runs of one row moved. A row
re-timed in several runs (files) is ahead or behind only when every run is, runs from before its
kernel or launch last changed (LAUNCH_CHANGES) left out. The section does not change the tables
above, whose rows are each suite's own run; a section names its suite rows timed before their
launch last changed (counted with the figures they have until the suite runs again).

A last section lists the host-side figures against their targets: the eager IR
call over the direct provider call (<= 1.5 µs; dispatch_overhead*.json), the
compat shim (off <= 0.3 µs, on <= 2 µs; compat_overhead*.json) and the shadow
loop at a 1% sample (<= +5% over off; shadow_overhead_gpu*.json: interleaved single
steps where the file has them, the round figures beside them; shadow_overhead_pooled*.json:
several runs' mean, benchmarks/pool_runs.py).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Targets:
    issue: int
    copy_at_16384: float


ISSUES = {  # file name prefix -> targets
    "bench_norms": Targets(5, 0.90),
    "bench_activations": Targets(5, 0.90),
    "bench_quant": Targets(9, 0.85),
    "bench_rope": Targets(10, 0.85),
}
FUSED_QUANT = ("rms_norm_static_fp8_quant", "fused_add_rms_norm_static_fp8_quant",
               "rms_norm_dynamic_per_token_fp8_quant")


def targets_of(name: str) -> Targets | None:
    return next((t for prefix, t in ISSUES.items() if name.startswith(prefix)), None)


def check(row: dict, targets: Targets) -> list[str]:
    misses = []
    ratio, fraction, tokens = row.get("ratio_to_best_peer"), row.get("copy_fraction"), row["tokens"]
    graph = row["graph_us"]
    if tokens >= 1024:
        if targets.issue == 9:
            ind, pair, t = graph.get("inductor"), graph.get("triton_pair"), graph.get("triton")
            if t and ind and ind / t < 1.0:
                misses.append(f"{ind / t:.3f}x inductor")
            if row["op"] in FUSED_QUANT and t and pair and pair / t < 1.3:
                misses.append(f"{pair / t:.4f}x the unfused pair (target 1.3x)")
        elif ratio is not None and ratio < 1.0:
            misses.append(f"{ratio:.3f}x best peer ({row['best_peer']})")
    copy_applies = row["op"] not in FUSED_QUANT  # issue 9 sets it for the plain quant ops
    if tokens == 16384 and copy_applies and fraction is not None and fraction < targets.copy_at_16384:
        misses.append(f"{100 * fraction:.0f}% of copy bandwidth (target {100 * targets.copy_at_16384:.0f}%)")
    if tokens <= 64 and ratio is not None and ratio < 1 / 1.1:
        misses.append(f"{ratio:.3f}x best peer ({row['best_peer']}), more than 10% slower")
    return misses


def latest_rows(folder: Path) -> tuple[list[str], dict[tuple, tuple[str, dict, str]]]:
    """Header lines naming every file, and the latest row of each (gpu, issue, op, shape, dtype),
    with its file's name and time."""
    files = []
    for path in folder.glob("bench_*.json"):
        data = json.loads(path.read_text())
        if targets_of(path.name) is not None and "smoke" not in path.name:
            files.append((data["environment"]["time_utc"], path, data))
    header, rows = [], {}
    for _, path, data in sorted(files, key=lambda f: f[0]):
        env = data["environment"]
        header.append(f"- `{path.name}` (issue {targets_of(path.name).issue}): {env['gpu']}, torch {env['torch']}, "
                      f"triton {env['triton']}, {env['time_utc']} UTC, copy {data['copy_gbs']:,.0f} GB/s, "
                      f"{len(data['rows'])} rows")
        for row in data["rows"]:
            if "ratio_to_best_peer" in row:
                rows[(env["gpu"], targets_of(path.name).issue, row["op"], row["shape"], row["dtype"])] = (
                    path.name, row, env["time_utc"])
    return header, rows


def _verdict(value: float, target: float) -> str:
    return "yes" if value <= target else "NO"


REMATCH_RESOLUTION = 0.0065
"""A rematch interval holds the round-to-round noise of one run, not what moves between runs
(input placement; Inductor's reduction configuration, chosen when it compiles, may differ): rows
re-timed in two processes on the H200 moved by up to 0.64% where both kernels stream at the
copy bandwidth (relu2 4096x14336 fp16: 1.0040 [1.0025, 1.0056], then 0.9976 [0.9949, 0.9992]),
and the same kernel and launch timed as two providers in one run differed by 0.35% (rms_norm
16384x8192: 0.9943 and 0.9978 against Inductor; results/sweep_session15_h200.txt). Launch-bound
rows and Inductor's reductions moved more (RoPE 70B/TP8 at 1024 tokens 0.954, then
0.979; gemma_rms_norm 1024x8192 0.981, then 1.017): those read "behind" in one run may not be."""


def _standing(ci95: list[float]) -> str:
    low, high = ci95
    return "ahead" if low >= 1.0 else "behind" if high < 1.0 - REMATCH_RESOLUTION else "level"


LAUNCH_CHANGES: dict[tuple[str, ...], str] = {
    # session 16: two unmasked passes from LOOPED_ROWS_PER_SM rows (kernels/triton/layernorm.py)
    ("rms_norm", "16384x8192"): "2026-12-03 21:10:00",
    ("gemma_rms_norm", "16384x8192"): "2026-12-03 21:10:00",
    # session 17: one row a program, 16 warps, up to PLAIN_WIDE_PER_SM rows (kernels/triton/layernorm.py)
    ("rms_norm", "4096x8192"): "2026-12-06 13:35:00",
    ("gemma_rms_norm", "4096x8192"): "2026-12-06 13:35:00",
    # session 17: two unmasked passes over 2048-column chunks at 264-1056 rows, H100-class GPUs only
    ("rms_norm", "1024x8192", "H100"): "2026-12-06 14:20:00",
    ("gemma_rms_norm", "1024x8192", "H100"): "2026-12-06 14:20:00",
    # session 18: the fused adds the same at 264-1056 rows of 4096 columns, H100-class GPUs only
    ("fused_add_rms_norm", "1024x4096", "H100"): "2026-12-06 15:54:00",
    ("gemma_fused_add_rms_norm", "1024x4096", "H100"): "2026-12-06 15:54:00",
}
"""(op, shape), or (op, shape, a part of the GPU's name) for a change on some GPUs only -> the UTC
time from which a row's kernel or launch is the present one: runs of rematch.py from before it are
listed, marked, and left out of the standing."""


def _current(op: str, shape: str, gpu: str, time_utc: str) -> bool:
    """Whether a run at `time_utc` on `gpu` timed the row's present kernel and launch (`LAUNCH_CHANGES`)."""
    changed = [when for key, when in LAUNCH_CHANGES.items()
               if key[:2] == (op, shape) and (len(key) == 2 or key[2] in gpu)]
    return time_utc >= max(changed, default="")


def rematch_lines(folder: Path) -> list[str]:
    """The rows re-timed round by round (rematch*.json; see the module docstring), one line a row:
    a row re-timed in several runs reads ahead or behind only when every run of its present code says so."""
    runs: dict[tuple, list[tuple[str, dict, bool]]] = {}
    for path in sorted(folder.glob("rematch*.json")):
        data = json.loads(path.read_text())
        for r in data["rows"]:
            current = _current(r["op"], r["shape"], data["env"]["gpu"], data["env"]["time_utc"])
            runs.setdefault((data["env"]["gpu"], r["op"], r["shape"], r["dtype"]), []).append((path.name, r, current))
    if not runs:
        return []
    lines = ["## Rows re-timed round by round (benchmarks/rematch.py)", "",
             f"Standing: ahead (the 95% interval at or above 1.0), behind (its top below "
             f"{1 - REMATCH_RESOLUTION:.4f}: runs of one row moved by up to {100 * REMATCH_RESOLUTION:.2f}% between "
             "processes, more than the interval, which is within one run; summarize.py says more), or level; "
             "a row re-timed in several runs (one a file) is ahead or behind only when every run is; runs "
             "marked 'earlier launch' timed a kernel or launch since changed (summarize.py, LAUNCH_CHANGES) "
             "and do not count.", "",
             "| GPU | op | shape | dtype | best peer | median ratio [95% interval], by run | standing |",
             "|---|---|---|---|---|---|---|"]
    for (gpu, op, shape, dtype), found in runs.items():
        standings = {_standing(r["ci95"]) for _, r, current in found if current}
        peers = "/".join(dict.fromkeys(r["best_peer"] for _, r, _ in found))
        figures = "; ".join(f"{r['median_ratio']:.4f} [{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}] "
                            f"({name}{'' if current else ', earlier launch'})" for name, r, current in found)
        standing = (standings.pop() if len(standings) == 1 else "level" if standings
                    else "not re-timed since its launch changed")
        lines.append(f"| {gpu} | {op} | {shape} | {dtype} | {peers} | {figures} | {standing} |")
    return lines + [""]


def overhead_lines(folder: Path) -> list[str]:
    """The host-side overheads against their targets (see the module docstring)."""
    lines = ["## Host-side overheads", "", "| file | where | figure | value | target | met |",
             "|---|---|---|---:|---:|---|"]
    for path in sorted(folder.glob("dispatch_overhead*.json")):
        data = json.loads(path.read_text())
        where = f"{data['environment'].get('device', 'CPU')}, {data['environment']['cpu']} host"
        for op, r in data["ops"].items():
            lines.append(f"| {path.name} | {where} | eager IR call - direct {r['provider']} call, {op} | "
                         f"{r['eager_added_us']:.2f} µs | {data['target_us']} µs | "
                         f"{_verdict(r['eager_added_us'], data['target_us'])} |")
    for path in sorted(folder.glob("compat_overhead*.json")):
        data = json.loads(path.read_text())
        for name, r in data["overhead_us"].items():
            if r.get("target") is not None:
                where = data["machine"]["cpu"] + (f" ({data['machine']['host']})" if "host" in data["machine"] else "")
                lines.append(f"| {path.name} | {where} | {name} | {r['median']:.2f} µs | "
                             f"{r['target']} µs | {_verdict(r['median'], r['target'])} |")
    for path in sorted(folder.glob("shadow_overhead_gpu*.json")):
        data = json.loads(path.read_text())
        tokens = data["args"]["tokens"]
        steps = data.get("steps")
        if steps:  # the headline since 2026-11-27 (shadow_overhead.py's docstring)
            low, high = steps["ci95"]
            lines.append(f"| {path.name} | {data['device']} | shadow loop, {tokens} tokens, interleaved steps, "
                         f"ratio of means (95% interval {100 * low:+.1f}% to {100 * high:+.1f}%) | "
                         f"{100 * steps['slowdown']:+.2f}% | +5% | {_verdict(steps['slowdown'], 0.05)} |")
        for label, key in (("rounds, ratio of medians", "slowdown"), ("rounds, median of paired ratios", "paired_slowdown")):
            if key in data:
                lines.append(f"| {path.name} | {data['device']} | shadow loop, {tokens} tokens, {label} | "
                             f"{100 * data[key]:+.2f}% | +5% | {_verdict(data[key], 0.05)} |")
    for path in sorted(folder.glob("shadow_overhead_pooled*.json")):
        data = json.loads(path.read_text())
        pooled = data["pooled"]
        low, high = pooled["ci95"]
        lines.append(f"| {path.name} | {data['device']} | shadow loop, {data['tokens']} tokens, "
                     f"torch.{data['grad_mode']}, mean of {len(data['runs'])} runs (95% interval {100 * low:+.1f}% to {100 * high:+.1f}%) | "
                     f"{100 * pooled['slowdown']:+.2f}% | +5% | {_verdict(pooled['slowdown'], 0.05)} |")
    return lines + [""]


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    header, rows = latest_rows(folder)
    intro = ("Generated by benchmarks/summarize.py from the JSON files beside this one "
             "(targets in its docstring; per GPU model, a case run twice counts once, from the later run).")
    lines = ["# Triton providers against the kernel issues' targets", "", intro, "", *header, ""]
    for gpu, issue in sorted({key[:2] for key in rows}, key=lambda k: (k[1], k[0])):
        mine = [(name, row, when) for key, (name, row, when) in rows.items() if key[:2] == (gpu, issue)]
        missed = [(name, row, check(row, targets_of(name))) for name, row, _ in mine]
        missed = [m for m in missed if m[2]]
        met = f"{len(mine) - len(missed)} of {len(mine)} rows meet every target that applies to them."
        lines += [f"## Issue {issue}, {gpu}", "", met, ""]
        earlier = [f"{row['op']} {row['shape']} {row['dtype']} ({name})" for name, row, when in mine
                   if not _current(row["op"], row["shape"], gpu, when)]
        if earlier:
            lines += ["Rows timed before their launch last changed (LAUNCH_CHANGES; counted above with the "
                      "earlier launch's figures, not re-run since): " + ", ".join(earlier) + ".", ""]
        if missed:
            lines += ["| file | op | shape | dtype | triton µs | best peer µs | % copy | missed |",
                      "|---|---|---|---|---|---|---|---|"]
            for name, row, misses in missed:
                peer = row["best_peer"]
                lines.append(f"| {name} | {row['op']} | {row['shape']} | {row['dtype']} | "
                             f"{row['graph_us']['triton']:.1f} | {peer} {row['graph_us'][peer]:.1f} | "
                             f"{100 * row['copy_fraction']:.0f}% | {'; '.join(misses)} |")
            lines.append("")
    lines += rematch_lines(folder)
    lines += overhead_lines(folder)
    (folder / "targets.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
