#!/usr/bin/env python3
"""Re-time chosen benchmark rows many times: is `triton` behind its best peer, or level with it?

A benchmark script's row is one median per provider (20 replays of a CUDA graph, round
robin). Two kernels that both run at the copy bandwidth then differ by less than the
row's own spread, and a ratio of 0.996 or 1.004 says little. This script takes rows of
the same scripts (same cases, same providers, same graphs: harness.py), captures every
provider's graph afresh `--captures` times (new input allocations each time), and replays
the graphs `--rounds` times a capture, one replay of each provider a round, the order
reversed every other round. For each round, ratio = best peer's time / triton's (> 1:
triton faster; the best peer is the one with the smallest median over all rounds). It
reports the median of the rounds' ratios with a 95% bootstrap interval (rounds resampled
within each capture), and the ratio of the medians.

The interval is the noise of one run only. Between runs (other processes, so other input
placement, and Inductor's reduction kernels compiled anew) a row near 1.0 moved by up to
0.64% on the H200, and launch-bound rows more (benchmarks/summarize.py, REMATCH_RESOLUTION).

    python benchmarks/rematch.py activations:relu2:1024x28672:bfloat16 [...] [--rounds 100 --captures 3]
        [--out DIR --stem NAME]

A case is `suite:op:shape:dtype`, as the suite's own results name them (suite: activations,
norms, rope or quant); op, shape and dtype may be shell patterns (`norms:*:*:*`), and `--min-tokens`
keeps the cases from that many tokens (the targets' 1024: every row they judge against 1.0x).
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata
import random
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import harness as H  # noqa: E402
from report_files import write_report  # noqa: E402

SUBJECT = "triton"


def _suite(name: str) -> tuple[list[H.Case], list[H.Provider]]:
    """Every case and provider of one benchmark script (imported on demand: each compiles its peers)."""
    if name == "activations":
        import bench_activations as B

        return B.cases(list(B.OPS), False, B.TOKENS, B.INTERMEDIATE, True), B.providers()
    if name == "norms":
        import bench_norms as B

        return B.cases(list(B.OPS), False, B.TOKENS, B.HIDDEN, True), B.providers()
    if name == "rope":
        import bench_rope as B

        return B.cases(False, B.TOKENS), B.providers()
    if name == "quant":
        import bench_quant as B
        from irshim import ir

        ir.set_priority({op: ["triton", "native"] for op in B.OPS})  # as bench_quant's main()
        return B.cases(B.OPS, B.TOKENS, B.HIDDEN, "cuda"), B.providers(B.OPS)
    raise SystemExit(f"unknown suite {name!r}: activations, norms, rope or quant")


def _find(spec: str, min_tokens: int = 0) -> list[tuple[H.Case, list[H.Provider]]]:
    """The cases a spec names (op, shape and dtype may be shell patterns: `norms:*:*:*`), from
    `min_tokens` tokens, each with the suite's peers and triton."""
    try:
        suite, *pattern = spec.split(":")
        op, shape, dtype = pattern
    except ValueError:
        raise SystemExit(f"bad case {spec!r}: suite:op:shape:dtype, e.g. norms:rms_norm:16384x8192:bfloat16") from None
    cases, providers = _suite(suite)
    chosen = [p for p in providers if p.peer or p.name == SUBJECT]
    found = [(case, chosen) for case in cases if case.tokens >= min_tokens
             and all(fnmatch.fnmatchcase(v, pat) for v, pat in zip((case.op, case.shape, case.dtype), pattern))]
    if not found:
        raise SystemExit(f"no case {op} {shape} {dtype} in suite {suite} from {min_tokens} tokens")
    return found


def _rounds(case: H.Case, providers: list[H.Provider], rounds: int) -> dict[str, list[float]]:
    """One capture per provider on fresh inputs, then `rounds` replays of each (µs a call)."""
    sets, calls = H.input_sets(case)
    graphs, bound, errors = H.capture_providers(case, providers, sets, calls)
    if SUBJECT in errors:
        raise errors[SUBJECT]
    for name, exc in errors.items():  # a peer that fails is reported and left out
        print(f"  {case.op} {case.shape}: {name} left out: {type(exc).__name__}: {exc}"[:300], flush=True)
    times = H.replay_times(graphs, calls, rounds, alternate=True)
    del graphs, bound, sets
    torch.cuda.empty_cache()
    return times


def _median_ratio(captures: list[list[float]]) -> float:
    return statistics.median(r for ratios in captures for r in ratios)


def ratio_stats(runs: list[dict[str, list[float]]], peer: str, subject: str = SUBJECT, resamples: int = 2000,
                seed: int = 0) -> tuple[float, list[float], int]:
    """Median over rounds of peer time / subject time, its 95% bootstrap interval (rounds
    resampled within each capture), and how many rounds were below 1."""
    ratios = [[p / t for p, t in zip(run[peer], run[subject])] for run in runs]
    rng = random.Random(seed)
    boot = sorted(_median_ratio([[rs[rng.randrange(len(rs))] for _ in rs] for rs in ratios])
                  for _ in range(resamples))
    ci = [boot[int(0.025 * resamples)], boot[int(0.975 * resamples) - 1]]
    return _median_ratio(ratios), ci, sum(r < 1 for rs in ratios for r in rs)


def rematch(case: H.Case, providers: list[H.Provider], rounds: int, captures: int) -> dict:
    runs = [_rounds(case, providers, rounds) for _ in range(captures)]
    names = [name for name in runs[0] if all(name in run for run in runs)]  # timed in every capture
    medians = {name: statistics.median(t for run in runs for t in run[name]) for name in names}
    peers = {name: us for name, us in medians.items() if name != SUBJECT}
    best = min(peers, key=peers.get)
    median_ratio, ci, below = ratio_stats(runs, best)
    return {
        "op": case.op, "shape": case.shape, "dtype": case.dtype, "best_peer": best,
        "median_us": medians, "ratio_of_medians": medians[best] / medians[SUBJECT],
        "median_ratio": median_ratio, "ci95": ci, "rounds_below_1": below, "rounds": rounds * captures,
        "gbs": case.bytes / (medians[SUBJECT] * 1e-6) / 1e9,
    }


def _markdown(env: dict, copy_gbs: float, rows: list[dict], rounds: int, captures: int) -> str:
    lines = [
        "# Rows re-timed: triton against its best peer, round by round",
        "",
        f"{env['gpu']}, torch {env['torch']}, triton {env['triton']}, Liger-Kernel {env.get('liger')}, "
        f"{env['time_utc']} UTC; copy {copy_gbs:,.0f} GB/s.",
        f"{captures} captures x {rounds} rounds a row (benchmarks/rematch.py: one replay of each provider a round,",
        "order reversed every other round; ratio = best peer's time / triton's, > 1: triton faster;",
        "95% bootstrap interval of the median ratio, rounds resampled within each capture: the noise",
        "of this run only; between runs a row moved by up to 0.64%, see benchmarks/summarize.py).",
        "",
        "| op | shape | dtype | best peer | triton µs | peer µs | median ratio | 95% interval | rounds < 1 "
        "| % copy |",
        "|---|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        copy_pct = 100 * r["gbs"] / copy_gbs
        lines.append(
            f"| {r['op']} | {r['shape']} | {r['dtype']} | {r['best_peer']} | {r['median_us'][SUBJECT]:.2f} "
            f"| {r['median_us'][r['best_peer']]:.2f} | {r['median_ratio']:.4f} "
            f"| {r['ci95'][0]:.4f} to {r['ci95'][1]:.4f} | {r['rounds_below_1']} / {r['rounds']} | {copy_pct:.0f}% |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cases", nargs="+", help="suite:op:shape:dtype")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--captures", type=int, default=3)
    p.add_argument("--min-tokens", type=int, default=0, help="only cases with at least this many tokens")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--stem", default="rematch")
    a = p.parse_args(argv)
    if a.rounds < 1 or a.captures < 1:
        p.error("--rounds and --captures must be at least 1")
    found = [pair for spec in a.cases for pair in _find(spec, a.min_tokens)]
    torch._dynamo.config.cache_size_limit = 1024
    env = H.environment()
    try:
        env["liger"] = importlib.metadata.version("liger-kernel")
    except importlib.metadata.PackageNotFoundError:
        env["liger"] = None
    copy = H.copy_bandwidth_gbs()
    result = {"env": env, "copy_gbs": copy, "rounds": a.rounds, "captures": a.captures, "rows": []}
    for case, providers in found:
        r = rematch(case, providers, a.rounds, a.captures)
        result["rows"].append(r)
        print(f"{r['op']} {r['shape']} {r['dtype']}: {r['median_ratio']:.4f} x {r['best_peer']} "
              f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]", flush=True)
        # Written after every row: a run cut short by a time limit keeps the rows it finished.
        write_report(a.out, a.stem, result, _markdown(env, copy["copy"], result["rows"], a.rounds, a.captures))
    return result


if __name__ == "__main__":
    main()
