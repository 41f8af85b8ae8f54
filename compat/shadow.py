"""Shadow mode: legacy path on the real inputs, IR path on snapshots, compare, record.

Order per compared call: snapshot the input tensors, run legacy on the real
inputs (its result is what the caller gets, bit for bit), run the IR plan on
the snapshots, then compare every output and every input that either side
mutated, with the IR op's tolerance: one `compare_pairs` call for all of them
(one kernel launch on a GPU). Its few numbers stay on the inputs' device and
are fetched in one transfer when records are flushed (or at once on the CPU
and in strict mode), so a GPU stream does not stall on every sampled call. So
is the test of which inputs were mutated under torch.inference_mode (no version
counters there): the same call compares each such input with a pristine copy,
and its entry is dropped at resolve time if neither side changed it.

Skipped (and counted): calls not sampled, calls during CUDA-graph capture,
calls under a tracing dispatch mode (torch.compile traces never reach here;
see dispatch.py), calls a port refuses, and calls whose IR path would run the
legacy code itself (`same_code`).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import traceback
from typing import Any

import torch

from irshim.ir import capturing_cuda_graph, tracing
from irshim.ir.ops.compare import compare_pairs as _compare_pairs

from . import flags as _flags
from .dispatch import ClassState, _log_once, _skip, effective_method, legacy_method_name
from .records import recorder

logger = logging.getLogger(__name__)

MAX_PENDING = 256
"""Deferred comparisons kept before they are fetched from the device in one go."""


class ShadowMismatch(AssertionError):
    """Raised in strict mode (IRSHIM_STRICT=1) when the IR path disagrees with legacy."""


def run_shadow(layer: Any, state: ClassState, args: tuple, kwargs: dict, legacy) -> Any:
    """One sampled call (dispatch.call counted it and drew the sample)."""
    counter = state.counter
    flags = _flags.current()
    if capturing_cuda_graph():
        counter.skip("cuda_graph_capture")
        return legacy(*args, **kwargs)
    if tracing():  # a dispatch mode (make_fx, fake tensors); Dynamo never gets here
        counter.skip("compiling")
        return legacy(*args, **kwargs)

    legacy_name = legacy_method_name(layer)
    method = effective_method(type(layer), legacy_name, state.base)
    plan = state.plan(layer, args, kwargs, method, shadow=True)
    if isinstance(plan, str):
        _skip(state, plan)
        return legacy(*args, **kwargs)

    mapping, inputs = _snapshot(args, kwargs, _param_names(state, layer))
    base = {"kind": "compare", "op": state.op, "cls": state.label, "mode": _flags.SHADOW,
            "legacy": legacy_name, "ir": "?", "signature": _signature(args, kwargs)}
    try:
        plan = plan.rebind(mapping)
        base["ir"] = plan.label()  # before timing: the first call loads provider packages
    except Exception as exc:
        plan, label_error = None, exc
    timer = _Timer(inputs)
    result = legacy(*args, **kwargs)
    timer.mark()
    try:
        if plan is None:
            raise label_error
        ir_result = plan.run()
        timer.mark()
    except Exception as exc:
        counter.compared += 1
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f"{frame.filename}:{frame.lineno}" if frame else "?"
        base.update(kind="error", error={"type": type(exc).__name__, "message": str(exc)[:2000], "where": where})
        _Pending(base, [], timer).resolve()
        _log_once(state.op, f"error:{type(exc).__name__}", logging.WARNING,
                  "irshim shadow: the IR path of %s (%s) raised %s: %s; the legacy result was used",
                  state.op, base["ir"], type(exc).__name__, exc)
        if flags.strict:
            raise
        return result

    counter.compared += 1
    ours, theirs = _flatten(result), _flatten(ir_result)
    batch = _Batch(plan)
    entries = _compare_outputs(ours, theirs, batch)
    # An in-place method returns the inputs it mutated (vLLM's fused norm returns x
    # and residual): that pair was just compared as an output, so its mutation entry
    # reuses those figures instead of comparing the same tensors again.
    as_output = {(id(a), id(b)): e for a, b, e in zip(ours, theirs, entries)} if len(ours) == len(theirs) else {}
    for name, real, snap, v_real, v_snap in inputs:
        # Inference tensors (no version counter) carry their pristine copy: the kernel that
        # compares the pair also tells whether either side changed it, and the entry is kept
        # at resolve time only if one did, so that deciding costs no device synchronisation.
        pristine = v_real if isinstance(v_real, torch.Tensor) else None
        if pristine is None and _version(real) == v_real and _version(snap) == v_snap:
            continue
        same = as_output.get((id(real), id(snap)))
        entries.append(batch.compare(f"mutated:{name}", real, snap, pristine) if same is None
                       else batch.share(same, f"mutated:{name}", pristine))
    try:
        rows = batch.run()
    except Exception as exc:  # irshim's own comparison failed: recorded, the model goes on
        rows, note = None, f"comparison raised {type(exc).__name__}: {str(exc)[:500]}"
        entries = [_Entry({**e.fields, "passed": False, "note": note}) if e.row is not None else e for e in entries]
        _log_once(state.op, f"compare:{type(exc).__name__}", logging.WARNING,
                  "irshim shadow: comparing the results of %s raised %s: %s; the legacy result was used",
                  state.op, type(exc).__name__, exc)
    pending = _Pending(base, entries, timer, strict=flags.strict, rows=rows)
    if flags.strict or not timer.cuda:
        pending.resolve()
    else:
        _queue(pending)
    return result


# ------------------------------------------------------------- snapshots
def _version(t: torch.Tensor) -> int | None:
    """The tensor's version counter; None for inference tensors (vLLM runs under
    torch.inference_mode, whose tensors have none)."""
    return None if t.is_inference() else t._version


def _snapshot(args: tuple, kwargs: dict, names: tuple[str, ...]):
    """Copies of the input tensors for the IR side (id -> copy: the plan is rebound
    through it), and what is needed to tell afterwards which inputs either side
    mutated: version counters, or for inference tensors a pristine copy to compare with."""
    found: dict[int, tuple[str, torch.Tensor]] = {}

    def collect(value: Any, name: str) -> None:
        if isinstance(value, torch.Tensor):
            found.setdefault(id(value), (name, value))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
            for i, v in enumerate(value):
                collect(v, f"{name}[{i}]")

    for i, a in enumerate(args):
        collect(a, names[i] if i < len(names) else f"arg{i}")
    for k, v in kwargs.items():
        collect(v, k)
    return _copies(list(found.values()))


def _copies(tensors: list[tuple[str, torch.Tensor]]):
    """id -> snapshot, and (name, real, snapshot, version or pristine, version or pristine) for
    each tensor. Contiguous inference tensors of the first one's shape, dtype and device (a
    norm's x and residual) are copied twice, snapshot and pristine, by one `torch.stack`: one
    launch where a clone each took four under inference_mode. Others: a clone each, and a
    pristine contiguous clone for inference tensors. Never stacked when version counters tell
    mutations: views of one stack share a counter. Only tensors of a multiple of 16 bytes:
    every copy then starts 16-byte aligned, as a fresh allocation does (Triton specialises
    its kernels on that)."""
    stacked: list[torch.Tensor] = []
    first = None
    for _, value in tensors:
        if value.is_inference() and value.is_contiguous():
            if first is None:
                if value.nbytes % 16:
                    continue
                first = value
            if value is first or (value.shape == first.shape and value.dtype == first.dtype
                                  and value.device == first.device):
                stacked.append(value)
    copies: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    if stacked:
        views = torch.stack(stacked + stacked).unbind(0)
        n = len(stacked)
        copies = {id(t): (views[i], views[n + i]) for i, t in enumerate(stacked)}
    mapping: dict[int, torch.Tensor] = {}
    inputs: list[tuple[str, torch.Tensor, torch.Tensor, Any, Any]] = []
    for name, value in tensors:
        pair = copies.get(id(value))
        if pair is not None:
            copy, pristine = pair
            v_real = v_snap = pristine
        else:
            copy = value.detach().clone()
            v_real, v_snap = _version(value), _version(copy)
            if v_real is None or v_snap is None:
                # pristine; contiguous, as `compare_pairs`' Triton provider reads it
                v_real = v_snap = value.detach().clone(memory_format=torch.contiguous_format)
        mapping[id(value)] = copy
        inputs.append((name, value, copy, v_real, v_snap))
    return mapping, inputs


_names_cache: dict[type, tuple[str, ...]] = {}


def _param_names(state: ClassState, layer: Any) -> tuple[str, ...]:
    if state.port is not None:
        return state.port._names
    cls = type(layer)
    names = _names_cache.get(cls)
    if names is None:
        try:
            params = list(inspect.signature(cls.forward_native).parameters.values())[1:]
            names = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        except (TypeError, ValueError):
            names = ()
        _names_cache[cls] = names
    return names


def _dtype_name(dtype: torch.dtype) -> str:
    """The dtype's name without "torch." (kept: formatting it took ~1 µs on the dev VM)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def _describe(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"shape": list(value.shape), "dtype": _dtype_name(value.dtype),
                "stride": list(value.stride()), "device": str(value.device)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    return repr(value)[:200]


def _signature(args: tuple, kwargs: dict) -> dict[str, Any]:
    return {"args": [_describe(a) for a in args], "kwargs": {k: _describe(v) for k, v in kwargs.items()}}


# ------------------------------------------------------------------ timing
class _Timer:
    """Marks around each side: CUDA events when the inputs live on a GPU, else perf_counter."""

    def __init__(self, inputs: list) -> None:
        index = next((real.get_device() for _, real, *_ in inputs if real.is_cuda), None)
        self.cuda = index is not None
        # Looked up once: Event.record() without a stream looks it up on every mark.
        self.index = index
        self.stream = _current_stream(index) if self.cuda else None
        self.marks: list[Any] = []
        self.mark()

    def mark(self) -> None:
        if self.cuda:
            try:
                event = _free_events[self.index].pop()
            except (KeyError, IndexError):
                event = torch.cuda.Event(enable_timing=True)
            event.record(self.stream)
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def spans_us(self) -> list[float]:
        """µs between consecutive marks (once: CUDA events go back to the pool)."""
        if self.cuda:
            self.marks[-1].synchronize()
            spans = [a.elapsed_time(b) * 1e3 for a, b in zip(self.marks, self.marks[1:])]
            _free_events.setdefault(self.index, []).extend(self.marks)
            self.marks = []
            return spans
        return [(b - a) * 1e6 for a, b in zip(self.marks, self.marks[1:])]


def _current_stream(index: int) -> torch.cuda.Stream:
    """``torch.cuda.current_stream(index)`` without its Python device resolution and a new
    Stream object a call (CUDA is initialised: an input lives there). Streams are kept by
    their (id, device, type), which is all a Stream object holds."""
    data = torch._C._cuda_getCurrentStream(index)
    stream = _streams.get(data)
    if stream is None:
        if len(_streams) >= 64:  # streams made and dropped by the model: forget, do not grow
            _streams.clear()
        stream = _streams[data] = torch.cuda.Stream(stream_id=data[0], device_index=data[1], device_type=data[2])
    return stream


_streams: dict[tuple[int, int, int], torch.cuda.Stream] = {}

_free_events: dict[int, list[torch.cuda.Event]] = {}
"""Device index -> CUDA events whose times were read, for reuse: a fresh event per mark
also created and destroyed a CUDA event each time. At most MAX_PENDING calls' worth."""


# ------------------------------------------------------------- comparison
class _Entry:
    __slots__ = ("fields", "row", "if_changed")

    def __init__(self, fields: dict[str, Any], row: int | None = None, if_changed: bool = False):
        self.fields = fields
        self.row = row
        """The entry's row of its call's `compare_pairs` result (None: no figures to fetch)."""
        self.if_changed = if_changed
        """Recorded only if the row's `changed` field says either side changed the input
        (mutation entries of inference tensors, decided at resolve time)."""


def _flatten(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (tuple, list)):
        return list(value)
    return [value]


def _compare_outputs(ours: list[Any], theirs: list[Any], batch: _Batch) -> list[_Entry]:
    """Entries comparing the flattened IR outputs with legacy's."""
    if len(ours) != len(theirs):
        return [_Entry({"name": "out", "passed": False,
                        "note": f"legacy returned {len(ours)} outputs, IR path {len(theirs)}"})]
    return [batch.compare(f"out{i}", a, b) for i, (a, b) in enumerate(zip(ours, theirs))]


class _Batch:
    """The tensor pairs of one compared call, compared by one `compare_pairs` call (on a GPU,
    a zeroed output and one kernel launch per two pairs: a norm with residual under
    inference_mode takes two launches, where a launch per pair and four per mutation test
    took twelve)."""

    __slots__ = ("plan", "actual", "expected", "baseline", "atol", "rtol")

    def __init__(self, plan: Any):
        self.plan = plan
        self.actual: list[torch.Tensor] = []
        self.expected: list[torch.Tensor] = []
        self.baseline: list[torch.Tensor | None] = []
        self.atol: list[float] = []
        self.rtol: list[float] = []

    def compare(self, name: str, legacy: Any, ir: Any, pristine: torch.Tensor | None = None) -> _Entry:
        """Entry comparing IR value `ir` against the legacy value (the reference); with
        `pristine`, recorded only if either side differs from it."""
        if not isinstance(legacy, torch.Tensor) or not isinstance(ir, torch.Tensor):
            same = type(legacy) is type(ir) and legacy == ir
            return _Entry({"name": name, "passed": bool(same),
                           **({} if same else {"note": f"legacy {legacy!r:.80} != IR {ir!r:.80}"})})
        fields: dict[str, Any] = {"name": name, "shape": list(legacy.shape),
                                  "dtype": _dtype_name(legacy.dtype), "numel": legacy.numel()}
        if legacy.shape != ir.shape:
            fields.update(passed=False, note=f"IR shape {list(ir.shape)} != legacy {list(legacy.shape)}")
            return _Entry(fields)  # recorded whatever the pristine copy says: a shape change is a change
        if legacy.dtype != ir.dtype:
            fields["note"] = f"IR dtype {ir.dtype} != legacy {legacy.dtype}"
        if pristine is not None and pristine.shape != legacy.shape:
            pristine = None  # resized in place: changed, recorded
        tol = self.plan.tolerance(legacy.dtype)
        fields.update(atol=tol.atol, rtol=tol.rtol)
        # Contiguous copies of strided values (RoPE's query and key are column slices of one
        # qkv buffer in vLLM): the Triton provider reads dense tensors, and one strided pair
        # would send the whole call to the native provider, ~20 launches a pair on a GPU.
        if ir.get_device() != legacy.get_device() or ir.is_cuda != legacy.is_cuda:  # no torch.device built
            ir = ir.to(legacy.device)
        self.actual.append(ir.contiguous())
        self.expected.append(legacy.contiguous())
        self.baseline.append(pristine)  # (contiguous: `_snapshot` made it so)
        self.atol.append(tol.atol)
        self.rtol.append(tol.rtol)
        return _Entry(fields, len(self.actual) - 1, pristine is not None)

    def share(self, entry: _Entry, name: str, pristine: torch.Tensor | None) -> _Entry:
        """A mutation entry with the figures of output `entry` (the same tensors), its
        pristine copy attached to that row."""
        fields = {**entry.fields, "name": name}
        if entry.row is None or pristine is None or pristine.shape != self.expected[entry.row].shape:
            return _Entry(fields, entry.row)
        self.baseline[entry.row] = pristine
        return _Entry(fields, entry.row, True)

    def run(self) -> torch.Tensor | None:
        """The [pairs, 5] figures on the inputs' device (None: no pair), not fetched."""
        if not self.actual:
            return None
        args = (self.actual, self.expected, self.baseline, self.atol, self.rtol)
        if torch.is_grad_enabled():
            with torch.no_grad():
                return _compare_pairs(*args)
        return _compare_pairs(*args)


class _Pending:
    """A compare/error record waiting for its device numbers."""

    def __init__(self, base: dict[str, Any], entries: list[_Entry], timer: _Timer, strict: bool = False,
                 rows: torch.Tensor | None = None):
        self.base, self.entries, self.timer, self.strict = base, entries, timer, strict
        self.rows = rows
        """The call's `compare_pairs` figures, on the device until resolved."""

    def resolve(self, rows: list[list[float]] | None = None) -> dict[str, Any]:
        if rows is None:
            rows = self.rows.tolist() if self.rows is not None else []
        spans = self.timer.spans_us()
        record = self.base  # this call's own dicts (run_shadow, _Batch): filled in, not copied
        if record["kind"] == "error":
            record["legacy_us"] = spans[0] if spans else None
            recorder.add(record)
            return record
        outputs = []
        for entry in self.entries:
            numbers = rows[entry.row] if entry.row is not None else None
            if entry.if_changed and not numbers[4]:
                continue
            fields = entry.fields
            if numbers is not None:
                max_abs, max_rel, n_out, nonfinite, _ = numbers
                fields.update(max_abs=max_abs, max_rel=max_rel, n_outside=int(n_out),
                              nonfinite_mismatch=bool(nonfinite))
                fields["passed"] = n_out == 0 and not nonfinite and "note" not in fields
            outputs.append(fields)
        record["outputs"] = outputs
        record["passed"] = all(o["passed"] for o in outputs)
        record["legacy_us"] = spans[0] if spans else None
        record["ir_us"] = spans[1] if len(spans) > 1 else None
        recorder.add(record)
        if not record["passed"]:
            self._report_mismatch(record)
        return record

    def _report_mismatch(self, record: dict[str, Any]) -> None:
        bad = [o for o in record["outputs"] if not o["passed"]]
        detail = "; ".join(
            f"{o['name']}: max abs err {o.get('max_abs', float('nan')):.3g}, "
            f"{o.get('n_outside', '?')} of {o.get('numel', '?')} outside atol={o.get('atol')} rtol={o.get('rtol')}"
            + (f" ({o['note']})" if "note" in o else "")
            for o in bad)
        msg = (f"irshim shadow: {record['op']} ({record['cls']}): IR path {record['ir']} disagrees with "
               f"legacy {record['legacy']}: {detail}")
        if self.strict:
            raise ShadowMismatch(msg + ". Unset IRSHIM_STRICT to record mismatches without raising.")
        _log_once(record["op"], "mismatch", logging.WARNING, "%s", msg)


_pending: list[_Pending] = []
_pending_lock = threading.Lock()


def _queue(pending: _Pending) -> None:
    with _pending_lock:
        _pending.append(pending)
        full = len(_pending) >= MAX_PENDING
    if full:
        resolve_pending()


def resolve_pending() -> int:
    """Fetch every deferred comparison's numbers in one transfer and record them."""
    with _pending_lock:
        batch = list(_pending)
        _pending.clear()
    if not batch:
        return 0
    by_device: dict[torch.device, list[_Pending]] = {}
    for p in batch:
        if p.rows is not None:
            by_device.setdefault(p.rows.device, []).append(p)
    fetched: dict[int, list[list[float]]] = {}
    for group in by_device.values():
        # Every call's rows in one tensor: one launch and one transfer per device for the batch.
        values = torch.cat([p.rows for p in group]).tolist()
        start = 0
        for p in group:
            fetched[id(p)] = values[start:start + len(p.rows)]
            start += len(p.rows)
    for p in batch:
        p.resolve(fetched.get(id(p), []))
    return len(batch)


recorder.before_flush.append(resolve_pending)
