"""The per-call decision: legacy, shadow or IR path, cached per class.

Every intercepted call (irshim's CustomOp, or a wrapped foreign base's
forward) lands in `call`. The class's mode, op name and IR path are computed
once per `flags.generation` and kept in `_states`; in `off` mode the caller
never gets here (its inlined fast path checks membership in `_fast`).
"""

from __future__ import annotations

import inspect
import logging
import math
import random
import threading
from collections.abc import Callable
from typing import Any

import torch

from . import flags as _flags
from .ports import Port, Refusal, find_port
from .records import recorder

logger = logging.getLogger(__name__)

_is_dynamo_compiling = torch.compiler.is_dynamo_compiling
_compiler = torch.compiler

BASES: list[type] = []
"""CustomOp bases whose subclasses are intercepted: irshim's own, then installed foreign ones."""


class ClassState:
    """What the shim knows about one CustomOp subclass, for one flags generation."""

    __slots__ = ("cls", "op", "label", "generation", "mode", "fast", "port", "on_port", "on_runners", "sample",
                 "sampling", "counter", "_auto", "base", "_methods")

    def __init__(self, cls: type, generation: int):
        self.cls = cls
        self.base = base_of(cls)
        self.op = op_name(cls)
        self.label = f"{cls.__module__}.{cls.__qualname__}"
        self.generation = generation
        flags = _flags.current()
        self.mode = flags.mode_for(self.op)
        # Counting needs a records run: only when irshim is switched on at all.
        self.counter = None if flags.dispatch == _flags.OFF else recorder.counter(self.op, self.label, self.mode)
        self.fast = self.mode == _flags.OFF and self.counter is None
        self.port = find_port(cls)
        self.on_port = self.port if self.mode == _flags.ON else None
        """The port, when calls take the `on` fast path (see `call`)."""
        plain = self.on_port is not None and type(self.on_port).call_on is Port.call_on
        self.on_runners: dict[Any, tuple[Callable | None, ...]] | None = {} if plain else None
        """legacy function -> the port's runners, indexed by positional argument count
        (None: not built yet): the `on` fast path that irshim's CustomOp inlines (ports
        whose call_on adds work, like QuantFP8's, are left to `call`). Not keyed by
        (function, count): building and hashing that tuple cost ~0.6 µs a call with a
        real op on the 2-core dev VM."""
        self.sample = flags.shadow_sample
        self.sampling = self.mode == _flags.SHADOW and self.sample < 1.0
        """Shadow with sampling: CustomOp.__call__ inlines `sample_shadow`."""
        if self.counter is not None:  # a new sample (or none) from the next call on
            self.counter.new_run(run_length(self.sample) if self.sampling else 0)
        self._auto = None
        # function -> the forward_* whose code it runs; filled now because
        # torch.compile traces legacy_method() and cannot take the slow path.
        self._methods: dict[Any, str] = {}
        for name in dir(cls):
            if name.startswith("forward_"):
                func = getattr(cls, name)
                self._methods[getattr(func, "__func__", func)] = effective_method(cls, name, self.base)

    def legacy_method(self, layer: Any) -> str:
        """The forward_* whose code the layer's bound legacy method runs (cached per function)."""
        bound = layer._forward_method
        func = getattr(bound, "__func__", bound)
        name = self._methods.get(func)
        if name is None:
            name = self._methods[func] = effective_method(self.cls, legacy_method_name(layer), self.base)
        return name

    @property
    def auto(self):
        """The automatic IR op of an unported class (built on first use)."""
        if self._auto is None:
            from .auto import auto_op_for

            self._auto = auto_op_for(self.cls, self.op, self.base)
        return self._auto

    def plan(self, layer: Any, args: tuple, kwargs: dict, legacy: str, shadow: bool) -> Any:
        """A runnable IR plan for this call, or a str: why there is none."""
        if self.port is not None:
            return self.port.plan(layer, args, kwargs, legacy)
        return self.auto.plan(layer, args, kwargs, legacy, shadow)


_states: dict[type, ClassState] = {}
_states_lock = threading.Lock()

_fast: set[type] = set()
_on: dict[type, ClassState] = {}
_sampled: dict[type, ClassState] = {}
"""The hot paths' registries, for the current settings only: emptied on every change
(before `prepare_all` refills them), filled by `state_of`. `_fast` holds the classes
whose calls run legacy alone (`ClassState.fast`), `_on` the states whose port runs
through cached runners (`ClassState.on_runners`), `_sampled` those in shadow mode with
sampling (`ClassState.sampling`). Callers check membership alone, no generation: on
the 2-core dev VM an `off` call went from 0.47 to 0.16 µs over no irshim
(benchmarks/compat_overhead.py), the `on` path's checks from 1.46 to 1.21 µs."""


def state_of(cls: type) -> ClassState:
    state = _states.get(cls)
    generation = _flags.generation
    if state is None or state.generation != generation:
        state = ClassState(cls, generation)
        with _states_lock:
            _states[cls] = state
            # Settings that changed while the state was built leave it out: the
            # change empties the registries under this lock, after moving the generation.
            if generation == _flags.generation:
                if state.fast:
                    _fast.add(cls)
                elif state.on_runners is not None:
                    _on[cls] = state
                elif state.sampling:
                    _sampled[cls] = state
    return state


def _settings_changed() -> None:
    with _states_lock:
        _fast.clear()
        _on.clear()
        _sampled.clear()
    prepare_all()


# ------------------------------------------------------------- class facts
def base_of(cls: type) -> type:
    for klass in cls.__mro__:
        if klass in BASES:
            return klass
    return _custom_op.CustomOp


def op_name(cls: type) -> str:
    """The name flags and reports use: the registered name of the class or of its in-tree ancestor.

    Out-of-tree classes (register_oot) are named after the in-tree class they
    replace; unregistered classes get their snake_cased class name.
    """
    registry_names = set()
    for base in BASES:
        registry = getattr(base, "op_registry", None) or _module_registry(base)
        registry_names |= {n for n, c in registry.items()}
    for klass in cls.__mro__:
        name = klass.__dict__.get("name")
        if isinstance(name, str) and name in registry_names:
            return name
    name = getattr(cls, "name", None) or cls.__name__
    return _snake(name)


def _module_registry(base: type) -> dict[str, type]:
    module = inspect.getmodule(base)
    registry = getattr(module, "op_registry", None)
    return registry if isinstance(registry, dict) else {}


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower() if ch.isalnum() else "_")
    text = "".join(out)
    return text if text[:1].isalpha() or text[:1] == "_" else "_" + text


_effective: dict[tuple[type, str], str] = {}


def effective_method(cls: type, name: str, base: type | None = None) -> str:
    """The forward_* whose code `name` runs: base defaults delegate (cpu -> native, hip -> cuda, ...)."""
    key = (cls, name)
    found = _effective.get(key)
    if found is None:
        found = _effective[key] = _effective_method(cls, name, base)
    return found


def _effective_method(cls: type, name: str, base: type | None) -> str:
    base = base or base_of(cls)
    seen = set()
    while name in _custom_op.BASE_DEFAULTS and name not in seen:
        seen.add(name)
        mine = getattr(cls, name, None)
        if mine is None or mine is not base.__dict__.get(name):
            break
        name = _custom_op.BASE_DEFAULTS[name]
    return name


def legacy_method_name(layer: Any) -> str:
    method = getattr(layer, "_forward_method", None)
    func = getattr(method, "__func__", method)
    return getattr(func, "__name__", "forward")


def _subclasses() -> list[type]:
    """Every subclass of every intercepted base."""
    found: dict[type, None] = {}
    for base in BASES:
        stack = list(base.__subclasses__())
        while stack:
            cls = stack.pop()
            if cls in found:
                continue
            found[cls] = None
            stack.extend(cls.__subclasses__())
    return list(found)


def known_classes() -> list[dict[str, str]]:
    """Every registered subclass of every intercepted base (the "ops" record)."""
    out = []
    for cls in _subclasses():
        if "name" not in dir(cls):
            continue
        out.append({"op": op_name(cls), "cls": f"{cls.__module__}.{cls.__qualname__}",
                    "port": "ported" if find_port(cls) is not None else "automatic"})
    return out


recorder.known_classes = known_classes


# --------------------------------------------------------------- the call
def call(layer: Any, args: tuple, kwargs: dict, legacy: Callable[..., Any] | None = None) -> Any:
    """Run one intercepted call in the class's mode; `legacy` defaults to `layer._forward_method`."""
    if _is_dynamo_compiling() or _compiler._is_compiling_flag:  # is_compiling(), without its two calls
        return _call_compiling(layer, args, kwargs, legacy or layer._forward_method)
    state = _states.get(type(layer))
    if state is None or state.generation != _flags.generation:
        state = state_of(type(layer))
    port = state.on_port
    if port is not None:
        # `on` with a port, the common case: the port runs the call (compiled runners).
        state.counter.seen += 1
        runners = state.on_runners
        if runners is None or kwargs:
            result = port.call_on(layer, args, kwargs, state.legacy_method(layer))
        else:
            bound = layer._forward_method
            func, nargs = getattr(bound, "__func__", bound), len(args)
            runs = runners.get(func, ())
            run = runs[nargs] if nargs < len(runs) else None
            if run is None:
                run = port.runner(state.legacy_method(layer), nargs, layer)
                grown = list(runs) + [None] * (nargs + 1 - len(runs))
                grown[nargs] = run
                runners[func] = tuple(grown)  # replaced whole: readers see the old or the new
            result = run(layer, args)
        if type(result) is not Refusal:
            return result
        _skip(state, result)
        return (legacy or layer._forward_method)(*args, **kwargs)
    if legacy is None:
        legacy = layer._forward_method
    mode = state.mode
    if mode == _flags.OFF:
        if state.counter is not None:
            state.counter.seen += 1
        return legacy(*args, **kwargs)
    if mode == _flags.ON:
        return _call_on(layer, state, args, kwargs, legacy)
    if state.sampling:
        return sample_shadow(layer, state, args, kwargs, legacy)
    state.counter.seen += 1
    return _shadow.run_shadow(layer, state, args, kwargs, legacy)


def sample_shadow(layer: Any, state: ClassState, args: tuple, kwargs: dict,
                  legacy: Callable[..., Any] | None = None) -> Any:
    """Shadow mode with sampling (CustomOp.__call__ inlines it): legacy alone while the
    counter's run of sampled-out calls lasts (a countdown, nothing else counted), then
    the comparison (`compare_sampled`)."""
    if legacy is None:
        legacy = layer._forward_method
    counter = state.counter
    left = counter.left
    if left:
        counter.left = left - 1
        return legacy(*args, **kwargs)
    return compare_sampled(layer, state, args, kwargs, legacy)


def compare_sampled(layer: Any, state: ClassState, args: tuple, kwargs: dict, legacy: Callable[..., Any]) -> Any:
    """The call that ends a run of sampled-out calls: counted, compared; the next run drawn."""
    counter = state.counter
    counter.new_run(run_length(state.sample))
    counter.seen += 1
    return _shadow.run_shadow(layer, state, args, kwargs, legacy)


def run_length(sample: float) -> int:
    """How many calls to sample out before the next compared one: geometric, so that each
    call is compared with probability `sample` independently of the others, as with one
    random draw a call, but drawn once a compared call. The hot path then only counts down:
    a sampled-out SiluAndMul call 0.34-0.41 -> 0.25-0.28 µs over an `off` call on an H200
    machine's host (results/shadow_sampling_ab_h200.md), 1.4-1.7 -> 1.1-1.3 µs on the dev VM."""
    if sample >= 1.0:
        return 0
    # P(length = k) = (1 - p)^k p. 1 - u is in (0, 1]; a length past 2**62 (p ~ 1e-17) is as good as never.
    return int(min(math.log1p(-_random()) / math.log1p(-sample), 2.0**62))


def _call_on(layer: Any, state: ClassState, args: tuple, kwargs: dict, legacy: Callable[..., Any]) -> Any:
    """`on` for an unported class (ported ones take the fast path in `call`)."""
    state.counter.seen += 1
    plan = state.plan(layer, args, kwargs, state.legacy_method(layer), shadow=False)
    if isinstance(plan, str):
        _skip(state, plan)
        return legacy(*args, **kwargs)
    return plan.run()


def _call_compiling(layer: Any, args: tuple, kwargs: dict, legacy: Callable[..., Any]) -> Any:
    # Dynamo traces this, so it takes no lock and builds no state: every known
    # class's state is prepared whenever the settings change (prepare_all).
    # Counting runs through comptime: once, at trace time, outside the graph.
    # No shadow comparison runs under compile; such calls count as skipped "compiling".
    cls = type(layer)
    state = _states.get(cls)
    if state is None or state.generation != _flags.generation:
        state = _prepare(cls)  # a class unknown to prepare_all: only works outside Dynamo
    if state.mode != _flags.ON:
        if state.mode == _flags.SHADOW:
            from torch._dynamo.comptime import comptime  # loaded: Dynamo is tracing

            comptime(_count_compiling)
        return legacy(*args, **kwargs)
    plan = state.plan(layer, args, kwargs, state.legacy_method(layer), shadow=False)
    if isinstance(plan, str):
        return legacy(*args, **kwargs)
    return plan.run()


def _prepare(cls: type) -> ClassState:
    state = state_of(cls)
    if state.mode == _flags.ON and state.port is None:
        state.auto  # noqa: B018 - builds the automatic op (takes a lock)
    return state


def prepare_all() -> None:
    """Build the state of every known class now: torch.compile cannot (it traces no locks)."""
    for cls in _subclasses():
        _prepare(cls)


def _count_compiling(ctx: Any) -> None:
    """Runs at trace time (comptime): count the traced call of the caller's `cls`."""
    counter = state_of(ctx.get_local("cls").as_python_constant()).counter
    counter.seen += 1
    counter.skip("compiling")


_SKIP_REASONS = {"same_code"}


def run_refused(layer: Any, state: ClassState, refusal: Refusal, args: tuple) -> Any:
    """A runner refused the call (CustomOp.__call__'s inlined `on` path): count it, run legacy."""
    _skip(state, refusal)
    return layer._forward_method(*args)


def _skip(state: ClassState, reason: str) -> None:
    """Count a refused call: 'port_refused' (the reason goes to the debug log)."""
    key = reason if reason in _SKIP_REASONS else "port_refused"
    state.counter.skip(key)
    if key == "port_refused":
        _log_once(state.op, f"refused:{reason}", logging.INFO,
                  "irshim: %s (%s) runs its legacy path for some calls: %s", state.op, state.label, reason)


_logged: set[tuple[str, str]] = set()


def _log_once(op: str, reason: str, level: int, msg: str, *args: Any) -> None:
    """Log once per (op, reason) at `level`, later repeats at DEBUG."""
    key = (op, reason)
    if key in _logged:
        logger.debug(msg, *args)
        return
    _logged.add(key)
    logger.log(level, msg, *args)


_random = random.Random().random
"""The shadow sampler's draws (`run_length`)."""

# Imported last: custom_op imports this module's registries, `call`, `compare_sampled` and
# `run_refused`, and shadow imports this module, so any of them may be imported first.
from . import custom_op as _custom_op  # noqa: E402
from . import shadow as _shadow  # noqa: E402

BASES.append(_custom_op.CustomOp)
_flags.on_change(_settings_changed)
