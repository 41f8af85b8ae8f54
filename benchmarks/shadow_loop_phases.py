#!/usr/bin/env python3
"""Where a compared call's step time goes inside the running shadow loop.

`shadow_overhead.py`'s interleaved steps (off and shadow steps in a random order,
IRSHIM_SHADOW_SAMPLE=0.01) again, with every compared call and the phases of
`irshim.compat.shadow.run_shadow` timed by wrappers (host clock, no synchronisation),
and each step split into its host time and its wait at the closing synchronisation.
The same phases are then timed with every call compared, back to back. It answers:
does a shadow step that compares one call grow by that call's own host time, or by
more (a synchronisation, the garbage collector, the next layers running slower)? And
which phases grow when compared calls come one every few steps instead of back to back?
Diagnostic: it wraps the shadow module's private functions.

    python benchmarks/shadow_loop_phases.py [--pairs 1000] [--grad-mode inference_mode] [--out DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

import irshim.compat as compat
from irshim.compat import dispatch as D
from irshim.compat import ports as P
from irshim.compat import shadow as S
from irshim.compat.records import recorder
from harness import cpu_name
from report_files import write_report
from shadow_overhead import DecoderMLP

PHASES = ((D.ClassState, "plan"), (S, "_snapshot"), (S, "_signature"), (P.PortPlan, "rebind"),
          (P.PortPlan, "label"), (S._Timer, "__init__"), (S._Timer, "mark"), (P.PortPlan, "run"),
          (S, "_compare_outputs"), (S._Batch, "run"), (S, "_queue"))
"""run_shadow's steps, in order (`_Timer.__init__` includes its first mark; the legacy
call is timed apart, as `legacy`)."""


class PhaseTimer:
    """Wraps `run_shadow` and its phases; `take()` returns and clears what was timed."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.phases: dict[str, list[float]] = {}
        for owner, name in PHASES:
            self._wrap(owner, name, f"{getattr(owner, '__name__', '?').split('.')[-1]}.{name}")
        run_shadow = S.run_shadow

        def timed_run_shadow(layer, state, args, kwargs, legacy):
            def timed_legacy(*a, **k):
                t0 = time.perf_counter()
                try:
                    return legacy(*a, **k)
                finally:
                    self.phases.setdefault("legacy", []).append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            try:
                return run_shadow(layer, state, args, kwargs, timed_legacy)
            finally:
                self.calls.append(time.perf_counter() - t0)

        S.run_shadow = timed_run_shadow  # dispatch calls it through the module

    def _wrap(self, owner, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.phases.setdefault(label, []).append(time.perf_counter() - t0)

        setattr(owner, name, timed)

    def take(self) -> tuple[list[float], dict[str, list[float]]]:
        calls, phases = self.calls, self.phases
        self.calls, self.phases = [], {}
        return calls, phases


def _step(model, x, residual) -> tuple[float, float]:
    """One synchronised step: µs of host time, then µs waiting at the closing synchronisation."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    h, r = x.clone(), residual.clone()
    for layer in model:
        h, r = layer(h, r)
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) * 1e6, (time.perf_counter() - t1) * 1e6


def _phase_table(phases: dict[str, list[float]], calls: int) -> dict[str, dict[str, float]]:
    """µs per compared call (sum / calls: what a call pays) and the median of one timing."""
    return {k: {"per_call_us": sum(v) * 1e6 / calls, "median_us": statistics.median(v) * 1e6}
            for k, v in phases.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--sample", type=float, default=0.01)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--grad-mode", choices=("no_grad", "inference_mode"), default="inference_mode")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("shadow_loop_phases.py times CUDA steps: it needs a GPU")
    with torch.inference_mode() if a.grad_mode == "inference_mode" else torch.no_grad():
        return _main(a)


def _main(a: argparse.Namespace) -> dict:
    dtype = torch.bfloat16
    model = nn.ModuleList(DecoderMLP(4096, 14336, dtype) for _ in range(a.layers)).cuda()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.tokens, 4096, generator=g).to("cuda", dtype)
    residual = torch.randn(a.tokens, 4096, generator=g).to("cuda", dtype)
    timer = PhaseTimer()
    order = random.Random(0)
    steps: dict[str, list[tuple[float, float, int, float]]] = {"off": [], "shadow": []}
    with tempfile.TemporaryDirectory() as reports, compat.override(report_dir=reports):
        for mode in ("shadow", "off"):  # warm-up: Triton compiles, providers load
            with compat.override(dispatch=mode, shadow_sample=1):
                for _ in range(3):
                    _step(model, x, residual)
        compat.flush()
        timer.take()
        for _ in range(a.pairs):
            for mode in ("off", "shadow") if order.random() < 0.5 else ("shadow", "off"):
                with compat.override(dispatch=mode, shadow_sample=a.sample):
                    n0 = len(timer.calls)
                    host, wait = _step(model, x, residual)
                    new = timer.calls[n0:]
                    steps[mode].append((host, wait, len(new), sum(new) * 1e6))
        compat.flush()
        loop_calls, loop_phases = timer.take()
        with compat.override(dispatch="shadow", shadow_sample=1):
            for _ in range(20):
                _step(model, x, residual)
            compat.flush()
        warm_calls, warm_phases = timer.take()
    if not loop_calls:
        raise SystemExit(f"no call was compared in {a.pairs} step pairs at sample {a.sample}: give more --pairs")

    by_count = []
    for n in sorted({s[2] for s in steps["shadow"]}):
        pairs = [(s, o) for s, o in zip(steps["shadow"], steps["off"]) if s[2] == n]
        by_count.append({
            "compared_calls": n, "steps": len(pairs),
            "host_delta_mean_us": statistics.fmean(s[0] - o[0] for s, o in pairs),
            "host_delta_median_us": statistics.median(s[0] - o[0] for s, o in pairs),
            "wait_delta_mean_us": statistics.fmean(s[1] - o[1] for s, o in pairs),
            "compared_time_mean_us": statistics.fmean(s[3] for s, o in pairs),
            "compared_time_median_us": statistics.median(s[3] for s, o in pairs),
        })
    total = lambda rows: sum(h + w for h, w, *_ in rows)  # noqa: E731
    result = {
        "device": torch.cuda.get_device_name(), "cpu": cpu_name(), "torch": torch.__version__,
        "args": {k: v for k, v in vars(a).items() if k != "out"},
        "slowdown": total(steps["shadow"]) / total(steps["off"]) - 1,
        "off_host_mean_us": statistics.fmean(s[0] for s in steps["off"]),
        "off_wait_mean_us": statistics.fmean(s[1] for s in steps["off"]),
        "by_compared_calls": by_count,
        "loop": {"compared_calls": len(loop_calls), "run_shadow_mean_us": statistics.fmean(loop_calls) * 1e6,
                 "phases": _phase_table(loop_phases, len(loop_calls))},
        "back_to_back": {"compared_calls": len(warm_calls), "run_shadow_mean_us": statistics.fmean(warm_calls) * 1e6,
                         "phases": _phase_table(warm_phases, len(warm_calls))},
    }
    lines = [f"# A compared call inside the shadow loop ({result['device']}, host {result['cpu']})", "",
             f"`benchmarks/shadow_loop_phases.py`: {a.layers} decoder layers x {a.tokens} tokens, "
             f"torch.{a.grad_mode}, {a.pairs} interleaved off/shadow step pairs at sample {a.sample}; "
             f"torch {result['torch']}. Slowdown of the shadow steps: {100 * result['slowdown']:+.2f}% "
             f"(off steps: {result['off_host_mean_us']:.0f} µs of host time, then "
             f"{result['off_wait_mean_us']:.0f} µs waiting for the GPU).", "",
             "| compared calls in the step | steps | host time over the paired off step, mean / median µs "
             "| wait over off, mean µs | the compared calls' own time, mean / median µs |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['compared_calls']} | {r['steps']} | {r['host_delta_mean_us']:.0f} / "
              f"{r['host_delta_median_us']:.0f} | {r['wait_delta_mean_us']:.0f} | "
              f"{r['compared_time_mean_us']:.0f} / {r['compared_time_median_us']:.0f} |" for r in by_count]
    loop, warm = result["loop"], result["back_to_back"]
    lines += ["", f"A compared call: {loop['run_shadow_mean_us']:.0f} µs in the loop ({loop['compared_calls']} "
              f"calls), {warm['run_shadow_mean_us']:.0f} µs back to back ({warm['compared_calls']} calls, every "
              "call compared).", "",
              "| phase of run_shadow | in the loop, µs a compared call | back to back, µs a compared call |",
              "| --- | ---: | ---: |"]
    lines += [f"| {k} | {v['per_call_us']:.1f} | {warm['phases'].get(k, {}).get('per_call_us', float('nan')):.1f} |"
              for k, v in loop["phases"].items()]
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(a.out, f"shadow_loop_phases_{a.grad_mode}", result, text)
    return result


if __name__ == "__main__":
    main()
