"""Choosing a provider by measurement, per op and signature bucket.

`AutoImpl` stands in an op's resolved priority where ``auto`` was asked for.
Per call it finds the bucket's choice in memory, else in the disk cache, else
measures: fresh inputs shaped like the call (from the op's input generator),
each candidate checked against ``native`` with the op's tolerance (outside it:
disqualified, with the reason kept), then timed — warm-up, then the median of
several runs (CUDA-graph replay on a GPU, a monotonic clock on the CPU).
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError
from ..tolerances import outside
from .bucket import default_bucket, is_concrete
from .cache import TuneCache, machine_key

if TYPE_CHECKING:
    from ..op import IrOp, IrOpImpl

logger = logging.getLogger(__name__)

ENV_TUNE = "IRSHIM_TUNE"
WARMUP, RUNS = 3, 10

stats: Counter = Counter()
"""measured, memory_hits, disk_hits, and fallback_<reason> counts (tracing,
cuda_graph_capture, tune_off, symbolic_shapes)."""


def tune_enabled() -> bool:
    value = os.environ.get(ENV_TUNE, "on").strip().lower()
    if value not in ("on", "off", ""):
        raise ConfigError(ENV_TUNE, value, "'on' (measure on demand, the default) or 'off' (cached choices only)")
    return value != "off"


@dataclass
class Choice:
    """The outcome of tuning one bucket."""

    op: str
    bucket: str
    winner: str
    times_us: dict[str, float] = field(default_factory=dict)
    disqualified: dict[str, str] = field(default_factory=dict)
    source: str = "measured"  # or "disk"
    tuning_ms: float = 0.0


# ------------------------------------------------------------------ inputs
def _clone_tensors(values: tuple) -> tuple:
    return tuple(v.clone() if isinstance(v, torch.Tensor) else v for v in values)


def _shaped_like(generated: Any, wanted: torch.Tensor) -> torch.Tensor | None:
    if not isinstance(generated, torch.Tensor) or generated.numel() != wanted.numel():
        return None
    if wanted.dim() and generated.dim() and generated.shape[-1] != wanted.shape[-1]:
        return None
    return generated.reshape(wanted.shape).to(dtype=wanted.dtype, device=wanted.device)


def tuning_inputs(op: IrOp, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Fresh real inputs shaped like the call's: from the op's input generator
    where it can produce these shapes, random tensors otherwise. Non-tensor
    arguments are the call's own (they select the variant measured)."""
    tensors = [(i, a) for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
    fresh = list(args)
    generated = None
    if op._input_generator is not None and op.activation_indices and op.activation_indices[0] < len(args):
        x = args[op.activation_indices[0]]
        last = int(x.shape[-1]) if x.dim() else 1
        tokens = x.numel() // last if last else 0
        for hidden in (last, last // 2):
            try:
                candidate = op.generate_inputs(tokens, hidden, x.dtype, x.device)
            except Exception:
                continue
            shaped = [_shaped_like(candidate[i], a) if i < len(candidate) else None for i, a in tensors]
            if all(s is not None for s in shaped):
                generated = shaped
                break
    for k, (i, a) in enumerate(tensors):
        if generated is not None:
            fresh[i] = generated[k]
        elif a.is_floating_point():
            fresh[i] = torch.randn(a.shape, dtype=a.dtype, device=a.device)
        else:
            fresh[i] = torch.zeros(a.shape, dtype=a.dtype, device=a.device)
    new_kwargs = {k: (torch.randn_like(v) if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
                  for k, v in kwargs.items()}
    return tuple(fresh), new_kwargs


# ------------------------------------------------------------------ timing
def _time_us(run: Callable[[], Any], prepare: Callable[[], None], device: torch.device) -> float:
    """Median time of one call: CUDA-graph replay on a GPU (the launch-free time a
    graph-captured model sees, and what do_bench_cudagraph reports), per-call CUDA
    events where a candidate cannot be captured, a monotonic clock on the CPU.
    `prepare` (untimed) refreshes the inputs of in-place candidates."""
    if device.type == "cuda":
        try:
            return _graph_time_us(run, prepare, device)
        except Exception as exc:  # not capturable: time it call by call
            logger.debug("autotune: CUDA-graph timing failed (%s); timing with events", exc)
    for _ in range(WARMUP):
        prepare()
        run()
    samples = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(RUNS):
            prepare()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) * 1e3)
    else:
        for _ in range(RUNS):
            prepare()
            t0 = time.perf_counter()
            run()
            samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


REPLAYS = 10
"""Graph replays per timed sample: enough to hide the replay's own launch."""


def _graph_time_us(run: Callable[[], Any], prepare: Callable[[], None], device: torch.device) -> float:
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up off the capture stream, as capture requires
        for _ in range(WARMUP):
            prepare()
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    prepare()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    graph.replay()
    samples = []
    for _ in range(RUNS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(REPLAYS):
            graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1e3 / REPLAYS)
    return statistics.median(samples)


def _outputs(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _verdict(op: IrOp, got: Any, want: Any) -> str | None:
    """None when every output is within the op's tolerance of native, else why not."""
    for k, (g, w) in enumerate(zip(_outputs(got), _outputs(want))):
        if not isinstance(w, torch.Tensor):
            continue
        if not isinstance(g, torch.Tensor) or g.shape != w.shape:
            return f"output {k}: shape {getattr(g, 'shape', None)} != native's {tuple(w.shape)}"
        tol = op.tolerance(w.dtype)
        bad = outside(g, w, tol)
        if bad.any():
            err = (g.double() - w.double()).abs().nan_to_num(nan=float("inf")).max().item()
            return (f"output {k}: {int(bad.sum())} of {w.numel()} elements outside tolerance "
                    f"(atol={tol.atol:g}, rtol={tol.rtol:g}); max abs err {err:.3g}")
    return None


def measure(op: IrOp, candidates: list[IrOpImpl], args: tuple, kwargs: dict, bucket: str) -> Choice:
    """Verify every candidate against native on fresh inputs, time the valid ones."""
    started = time.perf_counter()
    inputs, kw = tuning_inputs(op, args, kwargs)
    device = next((a.device for a in inputs if isinstance(a, torch.Tensor)), torch.device("cpu"))
    reference = op._impls["native"].impl_fn(*_clone_tensors(inputs), **kw)
    choice = Choice(op.name, bucket, winner="")
    for impl in candidates:
        state: dict[str, tuple] = {"args": _clone_tensors(inputs)}

        def prepare(impl=impl, state=state) -> None:
            if impl.inplace:  # an in-place provider must not see its own output
                state["args"] = _clone_tensors(inputs)

        def run(impl=impl, state=state) -> Any:
            return impl.impl_fn(*state["args"], **kw)

        try:
            reason = _verdict(op, run(), reference)
            prepare()
            if reason is None:
                choice.times_us[impl.provider] = _time_us(run, prepare, device)
        except Exception as exc:
            reason = f"raised {type(exc).__name__}: {exc}"
        if reason is not None:
            choice.disqualified[impl.provider] = reason
            logger.info("autotune %s [%s]: %s disqualified: %s", op.name, bucket, impl.provider, reason)
    if choice.times_us:
        choice.winner = min(choice.times_us, key=choice.times_us.__getitem__)
    choice.tuning_ms = (time.perf_counter() - started) * 1e3
    return choice


# ------------------------------------------------------------------- choice
def cache_key(op: IrOp, bucket: str, candidates: list[IrOpImpl], device_type: str) -> str:
    """Machine, op, bucket and every candidate with its source hash."""
    providers = ",".join(f"{c.provider}:{c.source_hash}" for c in candidates)
    return f"{machine_key(device_type)}|{op.name}|{bucket}|{providers}"


def _device_type(args: tuple) -> str:
    return next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")


def _bucket(op: IrOp, args: tuple, kwargs: dict) -> str:
    return (getattr(op, "tuning_bucket", None) or default_bucket)(op, args, kwargs)


class AutoImpl:
    """The ``auto`` entry of a resolved priority: chooses per call, by bucket."""

    provider = "auto"
    inplace = False
    _supports_args = None
    supported = True
    supports_all_args = True

    def __init__(self, op: IrOp, candidates: list[IrOpImpl], fallback: tuple[IrOpImpl, ...]):
        self.op = op
        self.candidates = candidates
        self.fallback = fallback
        self._memo: dict[str, IrOpImpl] = {}
        self._lock = threading.Lock()

    def impl_fn(self, *args: Any, **kwargs: Any) -> Any:
        impl = self.choose(args, kwargs)
        if impl.inplace:
            args = self.op._clone_activations(args)
        return impl.impl_fn(*args, **kwargs)

    def _static(self, args: tuple, kwargs: dict, reason: str) -> IrOpImpl:
        stats[f"fallback_{reason}"] += 1
        for impl in self.fallback:
            if impl.supports(*args, **kwargs):
                return impl
        return self.op._impls["native"]

    def choose(self, args: tuple, kwargs: dict) -> IrOpImpl:
        """The tuned provider for this call's bucket (measuring it if needed and allowed)."""
        from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily

        from ..op import capturing_cuda_graph, tracing

        bucket = _bucket(self.op, args, kwargs)
        impl = self._memo.get(bucket)
        if impl is not None:
            stats["memory_hits"] += 1
            return impl
        fake = any(isinstance(a, FakeTensor) for a in (*args, *kwargs.values()))
        if not fake and tracing():
            return self._static(args, kwargs, "tracing")
        if capturing_cuda_graph():
            return self._static(args, kwargs, "cuda_graph_capture")
        if not is_concrete(args, kwargs):
            return self._static(args, kwargs, "symbolic_shapes")
        accepting = [c for c in self.candidates if c.supports(*args, **kwargs)]
        key = cache_key(self.op, bucket, self.candidates, _device_type(args))
        cache = TuneCache()
        with self._lock:
            entry = cache.get(key)
            if entry is not None and entry.get("winner") in self.op._impls:
                stats["disk_hits"] += 1
                impl = self.op._impls[entry["winner"]]
            elif not tune_enabled():
                return self._static(args, kwargs, "tune_off")
            else:
                # At lowering time the arguments are fake: measure on real tensors.
                with unset_fake_temporarily():
                    choice = measure(self.op, accepting, args, kwargs, bucket)
                stats["measured"] += 1
                if not choice.winner:
                    return self._static(args, kwargs, "all_disqualified")
                cache.put(key, {k: v for k, v in asdict(choice).items() if k != "source"})
                impl = self.op._impls[choice.winner]
                logger.info("autotune %s [%s]: %s (%s)", self.op.name, bucket, choice.winner,
                            ", ".join(f"{p} {t:.1f} µs" for p, t in choice.times_us.items()))
            self._memo[bucket] = impl
        return impl


def tune(op: IrOp, args: tuple, kwargs: dict | None = None, *, candidates: list[str] | None = None,
         force: bool = False) -> Choice:
    """Tune `op` for the bucket of `args` now (the `irshim tune` command); returns the outcome."""
    kwargs = kwargs or {}
    names = candidates or [p for p, impl in op.impls.items() if impl.supported]
    impls = [op._impls[p] for p in names if op._impls[p].supported and op._impls[p].supports(*args, **kwargs)]
    bucket = _bucket(op, args, kwargs)
    key = cache_key(op, bucket, impls, _device_type(args))
    cache = TuneCache()
    entry = None if force else cache.get(key)
    if entry is not None:
        return Choice(**{**entry, "source": "disk"})
    choice = measure(op, impls, args, kwargs, bucket)
    if choice.winner:
        cache.put(key, {k: v for k, v in asdict(choice).items() if k != "source"})
    return choice


def cached_choices(device_type: str = "cpu") -> list[dict[str, Any]]:
    """The choices the disk cache holds for this machine (for `irshim status`)."""
    prefix = machine_key(device_type) + "|"
    choices = []
    for key, entry in sorted(TuneCache().entries().items()):
        if not key.startswith(prefix) or not isinstance(entry, dict):
            continue
        op, bucket, providers = (key[len(prefix):].split("|", 2) + ["", ""])[:3]
        choices.append({"op": op, "bucket": bucket, "candidates": providers, "winner": entry.get("winner"),
                        "times_us": entry.get("times_us", {}), "disqualified": entry.get("disqualified", {})})
    return choices
