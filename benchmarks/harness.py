"""Shared benchmark harness: providers side by side on one GPU, in one run.

For every (op, shape, dtype) case and every provider it records
- the CUDA-graph replay median per call (µs): K calls captured in one graph,
  each on one of several input sets (rotated so that repeated calls do not
  measure a warm L2), replayed R times; the median replay / K. A functional
  provider's output comes from the graph's pool and is dropped at once, so
  every call writes the same block (as a model's layers reuse the block the
  caching allocator freed), while an in-place provider writes into the rotating
  inputs: at small sizes the first can find its output lines in L2 (H100, RoPE
  at 70B/TP8 heads x 1024 tokens: the production kernel 2.39 µs, a copy of it
  writing into per-set outputs 3.11; explore_configs.py rope7);
- GB/s over the fewest bytes the op must move (inputs read once, outputs
  written once) and the fraction of the device-to-device copy bandwidth
  measured in the same run (bytes read + written, like the copy);
- for small shapes, the eager per-call wall time (host clock over N calls,
  synchronised at both ends): what an un-captured caller pays.

Results go to ``<out>/<name>.json`` and ``<out>/<name>.md`` with the GPU name
and torch / triton versions. Every number here is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

L2_FLUSH_BYTES = 256 << 20   # rotate input sets until one graph touches this much (L2: 50-60 MB)
GRAPH_BYTES = 1 << 30        # bytes moved per captured graph (amortises the graph launch)
MAX_CALLS = 100
REPLAYS = 20
EAGER_CALLS = 200


def cpu_name() -> str:
    """The CPU model (for CPU-bound figures such as dispatch overheads)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


@dataclass
class Case:
    """One benchmark point. `make_args(device)` returns fresh inputs (a tuple)."""

    op: str
    shape: str
    dtype: str
    tokens: int
    bytes: int
    make_args: Callable[[], tuple]
    eager: bool = False  # also measure eager per-call wall time


@dataclass
class Provider:
    """`bind(case, args) -> zero-arg callable` or None when it lacks the op."""

    name: str
    bind: Callable[[Case, tuple], Callable[[], Any] | None]
    peer: bool = True  # counted as a peer for "ratio to the best peer"


@dataclass
class Row:
    op: str
    shape: str
    dtype: str
    tokens: int
    bytes: int
    graph_us: dict[str, float] = field(default_factory=dict)
    eager_us: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def environment() -> dict[str, Any]:
    import triton

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "sm_count": props.multi_processor_count,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def copy_bandwidth_gbs(nbytes: int = 1 << 30) -> dict[str, float]:
    """Device-to-device copy of `nbytes` (bytes read + written), CUDA-graph replay
    median: `memcpy` is ``dst.copy_(src)`` (a memcpy node in a graph, which ran
    at ~2.7 TB/s on H200: the copy engines), `kernel` an SM copy kernel
    (``torch.mul(src, 1, out=dst)``). The larger is the reference ("copy")."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    # Clocks ramp up from idle (345 MHz SM seen at start): run copies for ~0.3 s first.
    deadline = time.perf_counter() + 0.3
    while time.perf_counter() < deadline:
        torch.mul(src, 1, out=dst)
        torch.cuda.synchronize()
    result = {}
    for name, fn in (("memcpy", lambda: dst.copy_(src)), ("kernel", lambda: torch.mul(src, 1, out=dst))):
        us = graph_time_us([fn], calls=8, replays=30)
        result[name] = 2 * nbytes / (us * 1e-6) / 1e9
    result["copy"] = max(result["memcpy"], result["kernel"])
    return result


def capture(fns: Sequence[Callable[[], Any]], calls: int) -> torch.cuda.CUDAGraph:
    """One graph of `calls` calls cycling through `fns` (warmed up first, outside the capture)."""
    for fn in fns:  # compile, autotune, allocate outside the capture
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fns[i % len(fns)]()
    graph.replay()
    torch.cuda.synchronize()
    return graph


def replay_times(graphs: dict[str, torch.cuda.CUDAGraph], calls: int, replays: int = REPLAYS,
                 alternate: bool = False) -> dict[str, list[float]]:
    """µs per call of each graph at every replay, replayed round-robin so that clock or
    thermal drift during the case hits every provider alike (`alternate`: the order
    reversed every other round, so that no provider always follows the same one)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    names = list(graphs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(replays):
        for name in (names[::-1] if alternate and r % 2 else names):
            start.record()
            graphs[name].replay()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end) * 1e3 / calls)
    return times


def replay_medians(graphs: dict[str, torch.cuda.CUDAGraph], calls: int, replays: int = REPLAYS) -> dict[str, float]:
    """Median µs per call of each graph (`replay_times`)."""
    return {name: statistics.median(ts) for name, ts in replay_times(graphs, calls, replays).items()}


def graph_time_us(fns: Sequence[Callable[[], Any]], calls: int, replays: int = REPLAYS) -> float:
    """Median per-call time of `calls` calls (cycling through `fns`) captured in one graph."""
    graph = capture(fns, calls)
    return replay_medians({"one": graph}, calls, replays)["one"]


def eager_time_us(fn: Callable[[], Any], calls: int = EAGER_CALLS) -> float:
    """Host wall time per call, device synchronised before and after the loop."""
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e6 / calls


def input_sets(case: Case) -> tuple[list[tuple], int]:
    """Fresh input sets for `case` (enough to rotate through L2_FLUSH_BYTES, at most 8) and
    the calls one captured graph makes (GRAPH_BYTES moved, 2 to MAX_CALLS)."""
    n_sets = max(1, min(8, math.ceil(L2_FLUSH_BYTES / max(case.bytes, 1))))
    calls = max(2, min(MAX_CALLS, GRAPH_BYTES // max(case.bytes, 1)))
    return [case.make_args() for _ in range(n_sets)], calls


def capture_providers(case: Case, providers: Sequence[Provider], sets: list[tuple], calls: int) -> tuple[
        dict[str, torch.cuda.CUDAGraph], dict[str, list[Callable[[], Any]]], dict[str, Exception]]:
    """Each provider bound to every input set and captured (`capture`): the graphs, the bound
    callables and the providers that failed (a provider without the op is left out silently).

    Keep the bound callables alive until the graphs have been replayed: a callable may own
    tensors its graph reads (Liger's pre-split halves), and freeing them before the replay
    made the graph read freed memory."""
    graphs: dict[str, torch.cuda.CUDAGraph] = {}
    bound: dict[str, list[Callable[[], Any]]] = {}
    errors: dict[str, Exception] = {}
    for provider in providers:
        try:
            fns = [provider.bind(case, args) for args in sets]
            if fns[0] is None:
                continue
            bound[provider.name] = fns
            graphs[provider.name] = capture(fns, calls)
        except Exception as exc:  # one provider's failure must not hide the others
            errors[provider.name] = exc
    return graphs, bound, errors


def run_case(case: Case, providers: Sequence[Provider]) -> Row:
    row = Row(case.op, case.shape, case.dtype, case.tokens, case.bytes)
    sets, calls = input_sets(case)
    graphs, bound, errors = capture_providers(case, providers, sets, calls)
    row.errors.update({name: f"{type(exc).__name__}: {exc}"[:300] for name, exc in errors.items()})
    row.graph_us = replay_medians(graphs, calls)
    del graphs
    if case.eager:
        for name in row.graph_us:
            row.eager_us[name] = eager_time_us(bound[name][0])
    del sets, bound
    torch.cuda.empty_cache()
    return row


def summarise(row: Row, copy_gbs: float, subject: str, peers: Sequence[str]) -> dict[str, Any]:
    out = asdict(row)
    t = row.graph_us.get(subject)
    peer_times = {p: row.graph_us[p] for p in peers if p in row.graph_us and p != subject}
    if t is not None:
        gbs = row.bytes / (t * 1e-6) / 1e9
        out["gbs"] = gbs
        out["copy_fraction"] = gbs / copy_gbs
    if t is not None and peer_times:
        best = min(peer_times, key=peer_times.get)
        out["best_peer"] = best
        out["ratio_to_best_peer"] = peer_times[best] / t  # > 1: subject is faster
    return out


def write_results(name: str, out_dir: Path, env: dict[str, Any], copy: dict[str, float],
                  rows: list[dict[str, Any]], providers: Sequence[str], subject: str,
                  notes: str = "") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_gbs = copy["copy"]
    payload = {"benchmark": name, "environment": env, "copy_gbs": copy_gbs, "copy_measurements": copy,
               "providers": list(providers), "subject": subject, "rows": rows}
    (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=1))

    lines = [
        f"# {name}",
        "",
        f"{env['gpu']} ({env['sm_count']} SMs), torch {env['torch']}, triton {env['triton']}, "
        f"CUDA {env['cuda']}, {env['time_utc']} UTC.",
        f"Device-to-device copy bandwidth in this run: {copy_gbs:,.0f} GB/s (bytes read + written; "
        f"largest of: {', '.join(f'{k} {v:,.0f}' for k, v in copy.items() if k != 'copy')}).",
        "",
        "CUDA-graph replay median per call, µs. `ratio` = best peer's time / "
        f"{subject}'s (> 1: {subject} faster). GB/s and % copy are {subject}'s.",
        "",
    ]
    if notes:
        lines += [notes, ""]
    header = ["op", "shape", "dtype", *providers, "GB/s", "% copy", "best peer", "ratio"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in rows:
        cells = [r["op"], r["shape"], r["dtype"]]
        cells += [f"{r['graph_us'][p]:.1f}" if p in r["graph_us"] else ("err" if p in r["errors"] else "–")
                  for p in providers]
        cells += [f"{r['gbs']:,.0f}" if "gbs" in r else "–",
                  f"{100 * r['copy_fraction']:.0f}%" if "copy_fraction" in r else "–",
                  r.get("best_peer", "–"),
                  f"{r['ratio_to_best_peer']:.2f}" if "ratio_to_best_peer" in r else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    eager_rows = [r for r in rows if r["eager_us"]]
    if eager_rows:
        eager_providers = [p for p in providers if any(p in r["eager_us"] for r in eager_rows)]
        eager_providers += sorted({p for r in eager_rows for p in r["eager_us"]} - set(eager_providers))
        lines += ["", "## Eager per-call wall time, µs (host clock, N calls, synchronised at both ends)", ""]
        header = ["op", "shape", "dtype", *eager_providers]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for r in eager_rows:
            cells = [r["op"], r["shape"], r["dtype"]]
            cells += [f"{r['eager_us'][p]:.1f}" if p in r["eager_us"] else "–" for p in eager_providers]
            lines.append("| " + " | ".join(cells) + " |")
    errors = [(r["op"], r["shape"], p, e) for r in rows for p, e in r["errors"].items()]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {o} {s} {p}: {e}" for o, s, p, e in errors]
    (out_dir / f"{name}.md").write_text("\n".join(lines) + "\n")


def run_suite(name: str, args: argparse.Namespace, cases: Iterable[Case], providers: Sequence[Provider],
              notes: str = "", check: Callable[[Case, Sequence[Provider]], dict[str, str]] | None = None,
              subject: str = "triton") -> list[dict[str, Any]]:
    """Every benchmark script's main loop: time each case with every provider (after
    `check`, which returns provider -> error for results that disagree with native),
    print as it goes, measure the copy bandwidth before and after (the larger is the
    reference), and write JSON + Markdown under ``args.out``."""
    env = environment()
    copy = copy_bandwidth_gbs()
    print(f"{env['gpu']}: copy {copy}", flush=True)
    names = [p.name for p in providers]
    peers = [p.name for p in providers if p.peer]
    raw: list[Row] = []
    for case in cases:
        if args.eager_only and not case.eager:
            continue
        errors = check(case, providers) if check else {}
        row = run_case(case, providers)
        row.errors.update(errors)
        raw.append(row)
        print_table([summarise(row, copy["copy"], subject, peers)], names, header=len(raw) == 1)
        for p, e in row.errors.items():
            print(f"  error {p}: {e}", flush=True)
    copy_end = copy_bandwidth_gbs()
    print(f"copy bandwidth: {copy} at start, {copy_end} at end; using the larger", flush=True)
    if copy_end["copy"] > copy["copy"]:
        copy = copy_end
    rows = [summarise(row, copy["copy"], subject, peers) for row in raw]
    write_results(args.name or name, args.out, env, copy, rows, names, subject, notes=notes)
    return rows


def inductor(fn: Callable) -> Callable:
    """torch.compile of the native semantics, static shapes (a fresh compile per shape)."""
    return torch.compile(fn, dynamic=False)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--quick", action="store_true", help="a few shapes only (smoke test)")
    parser.add_argument("--ops", default="", help="comma-separated subset of ops")
    parser.add_argument("--sweep", action="store_true", help="time launch configurations instead")
    parser.add_argument("--tokens", default="", help="comma-separated token counts (default: all)")
    parser.add_argument("--widths", default="", help="comma-separated hidden/intermediate sizes (default: all)")
    parser.add_argument("--no-fp16", action="store_true", help="skip the fp16 row")
    parser.add_argument("--name", default="", help="results file name (default: the script's)")
    parser.add_argument("--eager-only", action="store_true", help="only the cases with an eager measurement")
    args = parser.parse_args()
    # The Inductor peer is compiled once per shape (static shapes): dozens per script.
    torch._dynamo.config.cache_size_limit = 1024
    torch._dynamo.config.accumulated_cache_size_limit = 4096
    return args


def print_table(rows: list[dict[str, Any]], providers: Sequence[str], header: bool = True) -> None:
    if header:
        print(f"{'op':<26}{'shape':>14}{'dtype':>6}" + "".join(f"{p:>10}" for p in providers)
              + f"{'%copy':>7}{'ratio':>7}")
    for r in rows:
        print(f"{r['op']:<26}{r['shape']:>14}{r['dtype'][:5]:>6}"
              + "".join(f"{r['graph_us'].get(p, float('nan')):>10.1f}" for p in providers)
              + f"{100 * r.get('copy_fraction', float('nan')):>6.0f}%"
              + f"{r.get('ratio_to_best_peer', float('nan')):>7.2f}", flush=True)


def int_list(text: str, default: list[int]) -> list[int]:
    return [int(v) for v in text.split(",") if v] or list(default)
