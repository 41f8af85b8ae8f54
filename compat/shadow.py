"""Shadow mode: legacy path on the real inputs, IR path on snapshots, compare, record.

Order per compared call: snapshot the input tensors, run legacy on the real
inputs (its result is what the caller gets, bit for bit), run the IR plan on
the snapshots, then compare every output and every input that either side
mutated, with the IR op's tolerance. The comparison is computed on the
inputs' device without synchronising: its few numbers are fetched in one
transfer when records are flushed (or at once on the CPU and in strict mode),
so a GPU stream does not stall on every sampled call. So is the test of which
inputs were mutated under torch.inference_mode (no version counters there):
each input's entry carries an on-device flag and is dropped at resolve time if
neither side changed it.

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
from irshim.ir.ops.compare import tolerance_stats as _tolerance_stats
from irshim.ir.tolerances import Tolerance

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

    snap_args, snap_kwargs, mapping, inputs = _snapshot(args, kwargs, _param_names(state, layer))
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
        _Pending(base, [], timer, has_ir_time=False).resolve()
        _log_once(state.op, f"error:{type(exc).__name__}", logging.WARNING,
                  "irshim shadow: the IR path of %s (%s) raised %s: %s; the legacy result was used",
                  state.op, base["ir"], type(exc).__name__, exc)
        if flags.strict:
            raise
        return result

    counter.compared += 1
    ours, theirs = _flatten(result), _flatten(ir_result)
    entries = _compare_outputs(ours, theirs, plan)
    # An in-place method returns the inputs it mutated (vLLM's fused norm returns x
    # and residual): that pair was just compared as an output, so its mutation entry
    # reuses those figures instead of launching the same comparison again.
    as_output = {(id(a), id(b)): e for a, b, e in zip(ours, theirs, entries)} if len(ours) == len(theirs) else {}
    for name, real, snap, v_real, v_snap in inputs:
        # Inference tensors (no version counter) are compared with their pristine copy on
        # the device: the entry is kept at resolve time only if either side changed them,
        # so that deciding costs no device synchronisation.
        changed = _changed_on_device(real, snap, v_real) if isinstance(v_real, torch.Tensor) else None
        if changed is None and _version(real) == v_real and _version(snap) == v_snap:
            continue
        same = as_output.get((id(real), id(snap)))
        entries.append(_compare(f"mutated:{name}", real, snap, plan, changed) if same is None
                       else _Entry({**same.fields, "name": f"mutated:{name}"}, same.device_stats, same.tol, changed))
    pending = _Pending(base, entries, timer, has_ir_time=True, state=state, strict=flags.strict)
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
    """Copies of the input tensors for the IR side, and what is needed to tell
    afterwards which inputs either side mutated: version counters, or for
    inference tensors a pristine copy to compare with."""
    mapping: dict[int, torch.Tensor] = {}
    inputs: list[tuple[str, torch.Tensor, torch.Tensor, Any, Any]] = []

    def snap(value: Any, name: str) -> Any:
        if isinstance(value, torch.Tensor):
            copy = mapping.get(id(value))
            if copy is None:
                copy = value.detach().clone()
                mapping[id(value)] = copy
                v_real, v_snap = _version(value), _version(copy)
                if v_real is None or v_snap is None:
                    v_real = v_snap = value.detach().clone()  # pristine
                inputs.append((name, value, copy, v_real, v_snap))
            return copy
        if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
            return type(value)(snap(v, f"{name}[{i}]") for i, v in enumerate(value))
        return value

    snap_args = tuple(snap(a, names[i] if i < len(names) else f"arg{i}") for i, a in enumerate(args))
    snap_kwargs = {k: snap(v, k) for k, v in kwargs.items()}
    return snap_args, snap_kwargs, mapping, inputs


_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
"""Element size -> the integer dtype a tensor's bits are compared as."""


def _changed_on_device(real: torch.Tensor, snap: torch.Tensor, pristine: torch.Tensor) -> torch.Tensor:
    """A 0-d bool tensor, computed where the tensors live: legacy changed `real` or the
    IR side changed `snap` (both started as copies of `pristine`). Their bits are compared:
    a NaN left alone is unchanged, and four kernel launches do it on a GPU where comparing
    values NaN-aware took fourteen (a compared call of an in-place layer under
    inference_mode, vLLM's mode, made two of these)."""
    if real.shape != pristine.shape or snap.shape != pristine.shape:  # resized in place
        return torch.ones((), dtype=torch.bool, device=real.device)
    bits = _BITS.get(real.element_size()) if real.dtype == snap.dtype == pristine.dtype else None
    if bits is None:  # complex128, or a dtype changed in place: compare values
        return ~(_equal(real, pristine) & _equal(snap, pristine))
    p = pristine.view(bits)
    return torch.ne(real.view(bits), p).logical_or_(torch.ne(snap.view(bits), p)).any()


def _equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.is_floating_point() or a.is_complex():
        return torch.eq(a, b).logical_or_(a.isnan() & b.isnan()).all()
    return torch.eq(a, b).all()


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


def _describe(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch."),
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
        device = next((real.device for _, real, *_ in inputs if real.is_cuda), None)
        self.cuda = device is not None
        # Looked up once: torch.cuda.current_stream() resolves the device in Python
        # on every Event.record() that is not given a stream.
        self.stream = torch.cuda.current_stream(device) if self.cuda else None
        self.marks: list[Any] = []
        self.mark()

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(self.stream)
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def spans_us(self) -> list[float]:
        if self.cuda:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) * 1e3 for a, b in zip(self.marks, self.marks[1:])]
        return [(b - a) * 1e6 for a, b in zip(self.marks, self.marks[1:])]


# ------------------------------------------------------------- comparison
class _Entry:
    __slots__ = ("fields", "device_stats", "tol", "keep_if")

    def __init__(self, fields: dict[str, Any], device_stats: torch.Tensor | None, tol: Tolerance | None,
                 keep_if: torch.Tensor | None = None):
        self.fields, self.device_stats, self.tol = fields, device_stats, tol
        self.keep_if = keep_if
        """A 0-d bool tensor: the entry is recorded only if it holds (mutation entries of
        inference tensors, decided at resolve time)."""

    def device_numbers(self) -> torch.Tensor | None:
        """What resolve fetches: the stats, then the keep_if flag when there is one."""
        if self.keep_if is None or self.device_stats is None:
            return self.device_stats
        return torch.cat([self.device_stats.float(), self.keep_if.to(torch.float32).reshape(1)])


def _flatten(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (tuple, list)):
        return list(value)
    return [value]


def _compare_outputs(ours: list[Any], theirs: list[Any], plan: Any) -> list[_Entry]:
    """Entries comparing the flattened IR outputs with legacy's."""
    if len(ours) != len(theirs):
        return [_Entry({"name": "out", "passed": False,
                        "note": f"legacy returned {len(ours)} outputs, IR path {len(theirs)}"}, None, None)]
    return [_compare(f"out{i}", a, b, plan) for i, (a, b) in enumerate(zip(ours, theirs))]


def _compare(name: str, legacy: Any, ir: Any, plan: Any, keep_if: torch.Tensor | None = None) -> _Entry:
    """Entry comparing IR value `ir` against the legacy value (the reference)."""
    if not isinstance(legacy, torch.Tensor) or not isinstance(ir, torch.Tensor):
        same = type(legacy) is type(ir) and legacy == ir
        return _Entry({"name": name, "passed": bool(same),
                       **({} if same else {"note": f"legacy {legacy!r:.80} != IR {ir!r:.80}"})}, None, None)
    fields: dict[str, Any] = {"name": name, "shape": list(legacy.shape),
                              "dtype": str(legacy.dtype).removeprefix("torch."), "numel": legacy.numel()}
    if legacy.shape != ir.shape:
        fields.update(passed=False, note=f"IR shape {list(ir.shape)} != legacy {list(legacy.shape)}")
        return _Entry(fields, None, None)  # recorded whatever keep_if says: a shape change is a change
    if legacy.dtype != ir.dtype:
        fields["note"] = f"IR dtype {ir.dtype} != legacy {legacy.dtype}"
    tol = plan.tolerance(legacy.dtype)
    fields.update(atol=tol.atol, rtol=tol.rtol)
    with torch.no_grad():
        # One IR op computes every figure (one kernel launch per output on a GPU).
        stats = _tolerance_stats(ir.detach().to(legacy.device), legacy.detach(), tol.atol, tol.rtol)
    return _Entry(fields, stats, tol, keep_if)


class _Pending:
    """A compare/error record waiting for its device numbers."""

    def __init__(self, base: dict[str, Any], entries: list[_Entry], timer: _Timer, has_ir_time: bool,
                 state: ClassState | None = None, strict: bool = False):
        self.base, self.entries, self.timer, self.has_ir_time = base, entries, timer, has_ir_time
        self.state, self.strict = state, strict

    def resolve(self, stats: list[list[float]] | None = None) -> dict[str, Any]:
        if stats is None:
            stats = [_fetch(e.device_numbers()) for e in self.entries]
        spans = self.timer.spans_us()
        record = dict(self.base)
        if record["kind"] == "error":
            record["legacy_us"] = spans[0] if spans else None
            recorder.add(record)
            return record
        outputs = []
        for entry, numbers in zip(self.entries, stats):
            if entry.keep_if is not None and numbers is not None:
                numbers, keep = numbers[:4], numbers[4]
                if not keep:
                    continue
            fields = dict(entry.fields)
            if numbers is not None:
                max_abs, max_rel, n_out, nonfinite = numbers
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


def _fetch(numbers: torch.Tensor | None) -> list[float] | None:
    return numbers.tolist() if numbers is not None else None


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
    entries = [e for p in batch for e in p.entries]
    by_device: dict[torch.device, list[int]] = {}
    for i, e in enumerate(entries):
        if e.device_stats is not None:
            by_device.setdefault(e.device_stats.device, []).append(i)
    values: list[list[float] | None] = [None] * len(entries)
    for indices in by_device.values():
        # Every entry's stats in one stack, every keep_if flag in another: a few launches
        # and two transfers for the whole batch, where a row each (padded to one width)
        # cost a launch or two per entry.
        stats = torch.stack([entries[i].device_stats.float() for i in indices]).cpu().tolist()
        flagged = [i for i in indices if entries[i].keep_if is not None]
        flags = torch.stack([entries[i].keep_if for i in flagged]).cpu().tolist() if flagged else []
        for i, row in zip(indices, stats):
            values[i] = row
        for i, flag in zip(flagged, flags):
            values[i] = [*values[i], float(flag)]
    it = iter(values)
    for p in batch:
        p.resolve([next(it) for _ in p.entries])
    return len(batch)


recorder.before_flush.append(resolve_pending)
