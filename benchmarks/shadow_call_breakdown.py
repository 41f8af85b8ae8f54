#!/usr/bin/env python3
"""Where the host time of one compared shadow call goes, phase by phase.

A compared call of the decoder's RMSNorm-with-residual layer (the costliest layer
of shadow_overhead.py's loop) is taken apart into the steps of
`irshim.compat.shadow.run_shadow`, and each step is timed alone in a loop (host
clock, synchronised at both ends, no synchronisation inside: the host's cost,
as in a serving loop where the GPU runs behind). The whole compared call and
an `off` call are timed the same way, so the phases can be checked against
their sum. Diagnostic: it reads the shadow module's private functions.

    python benchmarks/shadow_call_breakdown.py [--device cuda] [--grad-mode inference_mode] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import irshim.compat as compat
from irshim.compat import dispatch as D
from irshim.compat import shadow as S
from irshim.compat.layers import RMSNorm
from harness import cpu_name


def _timed(fn, device: torch.device, n: int, repeats: int) -> float:
    """Median over `repeats` of the mean µs of `n` calls."""
    per = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        per.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(per)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--grad-mode", choices=("no_grad", "inference_mode"), default="inference_mode")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--whole-only", action="store_true",
                   help="time the off call and the whole compared call only (public API: any irshim version)")
    a = p.parse_args(argv)
    with torch.inference_mode() if a.grad_mode == "inference_mode" else torch.no_grad():
        return _main(a)


def _main(a: argparse.Namespace) -> dict:
    device = torch.device(a.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    layer = RMSNorm(a.hidden, dtype=dtype).to(device)
    x = torch.randn(a.tokens, a.hidden, device=device, dtype=dtype)
    residual = torch.randn(a.tokens, a.hidden, device=device, dtype=dtype)
    args, kwargs = (x, residual), {}
    rows: dict[str, float] = {}
    t = lambda fn: _timed(fn, device, a.calls, a.repeats)  # noqa: E731

    with tempfile.TemporaryDirectory() as reports:
        with compat.override(dispatch="off", report_dir=reports):
            layer(x, residual)
            rows["off call (legacy alone)"] = t(lambda: layer(x, residual))
        with compat.override(dispatch="shadow", shadow_sample=1, report_dir=reports):
            layer(x, residual)
            rows["compared call (whole)"] = t(lambda: layer(x, residual))
            if a.whole_only:
                compat.flush()
                print(json.dumps({"grad_mode": a.grad_mode, **rows}))
                return rows
            state = D.state_of(type(layer))
            legacy_name = D.legacy_method_name(layer)
            method = D.effective_method(type(layer), legacy_name, state.base)
            names = S._param_names(state, layer)
            rows["plan"] = t(lambda: state.plan(layer, args, kwargs, method, shadow=True))
            plan = state.plan(layer, args, kwargs, method, shadow=True)
            rows["snapshot"] = t(lambda: S._snapshot(args, kwargs, names))
            mapping, inputs = S._snapshot(args, kwargs, names)
            rows["signature"] = t(lambda: S._signature(args, kwargs))
            rows["rebind + label"] = t(lambda: plan.rebind(mapping).label())
            bound = plan.rebind(mapping)
            rows["timer (3 marks)"] = t(lambda: S._Timer(inputs).mark() or None)
            rows["legacy run"] = t(lambda: layer._forward_method(x.clone(), residual.clone()))
            rows["  (two clones, inside legacy run)"] = t(lambda: (x.clone(), residual.clone()))
            rows["IR run"] = t(lambda: bound.run())
            ours, theirs = S._flatten(layer._forward_method(x.clone(), residual.clone())), S._flatten(bound.run())
            pristine = [v for *_, v, _ in inputs if isinstance(v, torch.Tensor)]

            def compare():
                batch = S._Batch(bound)
                entries = S._compare_outputs(ours, theirs, batch)
                for entry, p in zip(entries, pristine):  # the in-place layer's mutation entries
                    batch.share(entry, "mutated", p)
                return entries, batch.run()
            rows["compare (outputs and mutation tests)"] = t(compare)
            rows["  torch.zeros(4)"] = t(lambda: torch.zeros(4, device=device))
            rows["  one torch.ne"] = t(lambda: torch.ne(x, residual))
            entries, stats = compare()

            def queue_and_resolve():
                for _ in range(16):
                    timer = S._Timer(inputs)
                    timer.mark()
                    timer.mark()
                    S._queue(S._Pending({"kind": "compare", "op": "x", "cls": "x", "ir": "x", "legacy": "x",
                                         "mode": "shadow", "signature": {}}, list(entries), timer, rows=stats))
                S.resolve_pending()
            rows["pending + resolve (per call, batches of 16, 3 marks each)"] = t(queue_and_resolve) / 16
            compat.flush()
    listed = {k: v for k, v in rows.items() if not k.startswith("  ") and "whole" not in k and "off call" not in k}
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "host": cpu_name(), "torch": torch.__version__, "grad_mode": a.grad_mode,
        "tokens": a.tokens, "hidden": a.hidden, "rows_us": rows,
        "sum_of_phases_us": sum(listed.values()),
    }
    print(json.dumps(result, indent=1))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"shadow_call_breakdown_{a.grad_mode}.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
