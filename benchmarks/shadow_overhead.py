#!/usr/bin/env python3
"""Decoder-layer loop built from compat layers: shadow mode (sampled) vs off mode, same run.

The layer: RMSNorm(x, residual) -> Linear -> SiluAndMul -> Linear -> RMSNorm(x, residual),
repeated over --layers layers. Acceptance (GPU): shadow with IRSHIM_SHADOW_SAMPLE=0.01
within 5% of off. Two estimates, same run:

- interleaved steps (the headline, since 2026-11-27): --step-pairs pairs of single steps,
  one off and one shadow in a random order, each step synchronised at both ends (as a
  serving loop is, when it reads its sampled tokens); slowdown = mean shadow step / mean
  off step - 1, with a 95% bootstrap interval over the pairs. A mean, not a median: at a
  1% sample three steps in four compare nothing, so a median step shows no overhead at
  all. Pairs a few ms apart share the host's state, which rounds do not. --block-steps N
  pairs blocks of N steps a mode instead (the mode switches less often; 10 gave the same
  figure as single steps on the H200: shadow_overhead_gpu_t256_runs.md). Runs move by about
  a point between lent machines: benchmarks/pool_runs.py pools several.
- rounds: --repeats rounds of --steps steps per mode, alternating; the ratio of the
  median rounds and the median of the per-round ratios. On the H100 machine's host the
  off rounds alone ranged 3.2-6.8 ms a step in one run (41 rounds at 256 tokens): the
  two figures were +4.8% and +7.4%, and the ratio of the rounds' totals +3.7% with a
  bootstrap interval of -2.6% to +9.8%, too wide to tell 5% from 0.

    python benchmarks/shadow_overhead.py [--device cuda] [--sample 0.01] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

import irshim.compat as compat
from irshim.compat.records import recorder
from irshim.compat.layers import RMSNorm, SiluAndMul
from report_files import write_report


class DecoderMLP(nn.Module):
    def __init__(self, hidden: int, inter: int, dtype):
        super().__init__()
        self.input_norm = RMSNorm(hidden, dtype=dtype)
        self.up = nn.Linear(hidden, 2 * inter, bias=False, dtype=dtype)
        self.act = SiluAndMul()
        self.down = nn.Linear(inter, hidden, bias=False, dtype=dtype)
        self.post_norm = RMSNorm(hidden, dtype=dtype)

    def forward(self, x, residual):
        h, residual = self.input_norm(x, residual)
        h = self.down(self.act(self.up(h)))
        return self.post_norm(h, residual)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(model, x, residual, steps, device):
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        h, r = x.clone(), residual.clone()
        for layer in model:
            h, r = layer(h, r)
    _sync(device)
    return (time.perf_counter() - t0) / steps * 1e6


def _profile(round_fn, reports: str) -> None:
    """Where a round's host time goes, off and with every call compared."""
    import cProfile
    import pstats

    for mode in ("off", "shadow"):
        with compat.override(dispatch=mode, shadow_sample=1, report_dir=reports):
            profiler = cProfile.Profile()
            profiler.enable()
            round_fn()
            profiler.disable()
            compat.flush()
        print(f"== host profile of one round, mode {mode} (shadow: every call compared)")
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)  # where the time itself is spent


def compared_call_cost(model, x, residual, device, reports: str, rounds: int = 7, steps: int = 20) -> float:
    """µs one compared call adds over an `off` call: rounds with every call compared
    (IRSHIM_SHADOW_SAMPLE=1) against off rounds, median of the paired differences."""
    diffs = []
    calls = 3 * len(model)
    for _ in range(rounds):
        with compat.override(dispatch="off", report_dir=reports):
            off = run(model, x, residual, steps, device)
        with compat.override(dispatch="shadow", shadow_sample=1, report_dir=reports):
            every = run(model, x, residual, steps, device)
            compat.flush()
        diffs.append((every - off) / calls)
    return statistics.median(diffs)


def interleaved_steps(model, x, residual, device, reports: str, pairs: int, sample: float,
                      block: int = 1) -> dict:
    """Blocks of `block` steps (single steps by default), off and shadow in a random order
    within each pair (see the docstring); a time is a block's mean step."""
    order = random.Random(0)
    times: dict[str, list[float]] = {"off": [], "shadow": []}
    compares: list[int] = []  # compared calls in each shadow block

    def compared() -> int:
        return sum(c.compared for c in list(recorder._counters.values()))

    with compat.override(report_dir=reports):  # one folder throughout: no flush at each switch
        for _ in range(pairs):
            for mode in ("off", "shadow") if order.random() < 0.5 else ("shadow", "off"):
                with compat.override(dispatch=mode, shadow_sample=sample):
                    before = compared()
                    times[mode].append(statistics.fmean(run(model, x, residual, 1, device) for _ in range(block)))
                    if mode == "shadow":
                        compares.append(compared() - before)
        compat.flush()
    off, shadow = times["off"], times["shadow"]
    quiet = [t for t, n in zip(shadow, compares) if n == 0]
    resample = random.Random(1)
    boot = []
    for _ in range(2000):
        idx = [resample.randrange(pairs) for _ in range(pairs)]
        boot.append(sum(shadow[i] for i in idx) / sum(off[i] for i in idx) - 1)
    boot.sort()
    return {"pairs": pairs, "block_steps": block,
            "off_mean_us": statistics.fmean(off), "shadow_mean_us": statistics.fmean(shadow),
            "slowdown": sum(shadow) / sum(off) - 1, "ci95": [boot[50], boot[1949]],
            "off_median_us": statistics.median(off), "shadow_median_us": statistics.median(shadow),
            # Shadow steps that compared nothing: what the sampling path alone costs.
            "quiet_steps": len(quiet), "quiet_mean_us": statistics.fmean(quiet) if quiet else None,
            "quiet_median_us": statistics.median(quiet) if quiet else None,
            "times_us": times, "compares": compares}


def main(argv=None):
    a = _parser().parse_args(argv)
    if a.grad_mode == "inference_mode":
        with torch.inference_mode():
            return _main(a)
    with torch.no_grad():
        return _main(a)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--inter", type=int, default=14336)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=31)  # off rounds alone varied 1.7x on the H200 machine
    p.add_argument("--sample", type=float, default=0.01)
    p.add_argument("--step-pairs", type=int, default=1000, help="pairs of single steps (the headline estimate)")
    p.add_argument("--block-steps", type=int, default=1,
                   help="steps a mode runs before the next switch in the interleaved estimate (1: single steps)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--suffix", default="", help="appended to the result files' names (e.g. _t2048)")
    p.add_argument("--profile", action="store_true",
                   help="after the measurement, print where one shadow round's host time goes (cProfile)")
    p.add_argument("--grad-mode", choices=("no_grad", "inference_mode"), default="no_grad",
                   help="inference_mode is vLLM's: no version counters, so a compared call also tests "
                        "on the device which inputs either side mutated")
    return p


def _main(a: argparse.Namespace) -> dict:
    device = torch.device(a.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = nn.ModuleList(DecoderMLP(a.hidden, a.inter, dtype) for _ in range(a.layers)).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.tokens, a.hidden, generator=g).to(device, dtype)
    residual = torch.randn(a.tokens, a.hidden, generator=g).to(device, dtype)
    times = {"off": [], "shadow": []}
    with tempfile.TemporaryDirectory() as reports:
        # Warm-up: provider loading, the IR side's kernels (Triton compiles each
        # new shape on its first call: ~100 ms that a 1% sample would otherwise
        # hit inside a timed round), the allocator.
        with compat.override(dispatch="shadow", shadow_sample=1, report_dir=reports):
            run(model, x, residual, 2, device)
        for mode in ("off", "shadow"):
            with compat.override(dispatch=mode, shadow_sample=a.sample, report_dir=reports):
                run(model, x, residual, 3, device)
        compat.flush()
        for f in Path(reports).rglob("*.jsonl"):  # the warm-up's records are not the measurement's
            f.unlink()
        for r in range(a.repeats):
            for mode in ("off", "shadow") if r % 2 == 0 else ("shadow", "off"):
                with compat.override(dispatch=mode, shadow_sample=a.sample, report_dir=reports):
                    times[mode].append(run(model, x, residual, a.steps, device))
                    compat.flush()
        steps = interleaved_steps(model, x, residual, device, reports, a.step_pairs, a.sample, a.block_steps)
        records = [json.loads(line) for f in Path(reports).rglob("*.jsonl") for line in f.read_text().splitlines()]
        per_compare = compared_call_cost(model, x, residual, device, reports)
        if a.profile:
            _profile(lambda: run(model, x, residual, 10, device), reports)
    compares = [r for r in records if r["kind"] == "compare"]
    off, shadow = statistics.median(times["off"]), statistics.median(times["shadow"])
    # Each shadow round runs beside an off round (before it in every other repeat):
    # the median of their ratios is robust to drift across rounds (on the H200
    # machine off rounds ranged 3.3-5.7 ms/step within one run).
    paired = statistics.median(s / o for s, o in zip(times["shadow"], times["off"])) - 1
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "dtype": str(dtype), "args": {k: v for k, v in vars(a).items() if k not in ("out", "suffix")},
        "off_us_per_step": off, "shadow_us_per_step": shadow, "slowdown": shadow / off - 1,
        "paired_slowdown": paired, "steps": steps, "within_5_percent": steps["slowdown"] <= 0.05,
        "compared_calls": len(compares), "mismatches": sum(not r["passed"] for r in compares),
        "compared_call_us": per_compare,
        "expected_slowdown": a.sample * 3 * a.layers * per_compare / off,
        "times_us": times,
    }
    unit = ("single synchronised steps" if a.block_steps == 1
            else f"blocks of {a.block_steps} synchronised steps, a block's time its mean step")
    text = (f"# shadow overhead: decoder MLP loop ({result['device']}, {result['dtype']})\n\n"
            f"{a.layers} layers x {a.tokens} tokens, hidden {a.hidden}, inter {a.inter}; "
            f"IRSHIM_SHADOW_SAMPLE={a.sample}; torch.{a.grad_mode}; target: shadow within +5% of off.\n\n"
            f"**Interleaved steps** ({steps['pairs']} pairs of {unit}, off and shadow "
            f"in a random order): mean step off {steps['off_mean_us']:.1f} µs, shadow "
            f"{steps['shadow_mean_us']:.1f} µs; slowdown **{100 * steps['slowdown']:+.2f}%** "
            f"(95% bootstrap interval {100 * steps['ci95'][0]:+.2f}% to {100 * steps['ci95'][1]:+.2f}%; "
            f"median steps {steps['off_median_us']:.1f} / {steps['shadow_median_us']:.1f} µs). "
            f"The {steps['quiet_steps']} shadow {'steps' if a.block_steps == 1 else 'blocks'} that compared "
            f"nothing: mean {steps['quiet_mean_us']:.1f} µs, "
            f"median {steps['quiet_median_us']:.1f} µs.\n\n"
            f"**Rounds**: median of {a.repeats} interleaved rounds of {a.steps} steps "
            "(off first in every other pair).\n\n"
            f"| mode | µs / step |\n| --- | ---: |\n| off | {off:.1f} |\n| shadow | {shadow:.1f} |\n\n"
            f"slowdown: {100 * result['slowdown']:+.2f}% (ratio of medians), "
            f"{100 * paired:+.2f}% (median of the per-round shadow/off ratios).\n\n"
            f"Compared calls (both estimates): {result['compared_calls']}, mismatches: {result['mismatches']}.\n\n"
            f"One compared call adds {per_compare:.0f} µs of step time over an off call (rounds with "
            f"every call compared); at this sample that predicts "
            f"{100 * result['expected_slowdown']:+.2f}%.\n"
            f"\nRounds, µs / step (off, shadow): "
            + ", ".join(f"({o:.0f}, {s:.0f})" for o, s in zip(times["off"], times["shadow"])) + "\n")
    print(text)
    write_report(a.out, f"shadow_overhead_{'gpu' if device.type == 'cuda' else 'cpu'}{a.suffix}", result, text)
    return result


if __name__ == "__main__":
    main()
