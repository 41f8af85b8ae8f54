"""Ports: declared mappings "legacy layer call -> IR op calls", one table per family.

A `Port` names the registered CustomOp (``rms_norm``), the legacy call
convention (``("x", "residual=None")``) and a list of `Variant`s, the first of
which whose `when` matches the call runs. A variant is one IR op call whose
arguments come from the call (``"x"``), the layer (``"self.weight"``) or
constants, and says how results map back: which outputs are returned, and
which are written into the caller's tensors when the legacy method works in
place (``write_back`` / ``inplace_methods``). `refuse` lists conditions under
which the port does not express the call: the legacy path then runs and the
call is counted as skipped ``port_refused``.

A port applies to every class registered under its name, irshim's or vLLM's,
and to out-of-tree subclasses of such a class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from irshim.ir import get_op
from irshim.ir.op import IrOp
from irshim.ir.tolerances import Tolerance, default_tolerance

logger = logging.getLogger(__name__)

TENSOR = torch.Tensor
"""`when={"residual": TENSOR}`: the argument is a tensor; `None`: it is None."""

INPLACE_METHODS = ("forward_cuda", "forward_hip", "forward_xpu")
"""vLLM's fused kernels overwrite their inputs; forward_native never does."""


@dataclass(frozen=True)
class Variant:
    """One way to express a call: a single IR op call and how its results map back."""

    op: str
    args: tuple[Any, ...]
    """Each entry: a call parameter name, ``"self.<attr>"``, or a constant (non-str, or `Const`)."""
    when: Mapping[str, Any] = field(default_factory=dict)
    """param -> None (must be None) or TENSOR (must be a tensor)."""
    returns: tuple[int, ...] | int = 0
    """Output index (or indices, returned as a tuple) of the IR op's result."""
    write_back: Mapping[str, int] = field(default_factory=dict)
    """param -> output index copied into that tensor when the legacy method is in place."""
    inplace_methods: tuple[str, ...] = INPLACE_METHODS

    def matches(self, bound: Mapping[str, Any]) -> bool:
        for name, kind in self.when.items():
            value = bound[name]
            if kind is None and value is not None:
                return False
            if kind is TENSOR and not isinstance(value, torch.Tensor):
                return False
        return True


class Refusal(str):
    """Why a port does not express a call (the legacy path runs instead)."""


@dataclass(frozen=True)
class Const:
    """A constant string argument (plain strings name parameters or attributes)."""

    value: Any


@dataclass(frozen=True)
class Port:
    name: str
    params: tuple[str, ...]
    """Legacy forward parameters after self; ``"residual=None"`` marks an optional one."""
    variants: tuple[Variant, ...]
    refuse: Mapping[str, Callable[..., bool]] = field(default_factory=dict)
    """reason -> predicate(layer, **bound): True when the port cannot express the call."""

    def __post_init__(self) -> None:
        names, defaults = [], {}
        for p in self.params:
            name, eq, default = p.partition("=")
            if eq and default != "None":
                raise ValueError(f"port {self.name!r}: only '=None' defaults are supported, got {p!r}")
            names.append(name)
            if eq:
                defaults[name] = None
        object.__setattr__(self, "_names", tuple(names))
        object.__setattr__(self, "_defaults", defaults)
        object.__setattr__(self, "_runners", {})
        for v in self.variants:
            unknown = [k for k in (*v.when, *v.write_back) if k not in names]
            if unknown:
                raise ValueError(f"port {self.name!r}: variant {v.op!r} names unknown parameter(s) {unknown}")
            # Precompiled argument sources: (0, param) call argument, (1, attr) layer attribute, (2, value).
            sources = []
            for spec in v.args:
                if isinstance(spec, Const):
                    sources.append((2, spec.value))
                elif isinstance(spec, str) and spec.startswith("self."):
                    sources.append((1, spec[5:]))
                elif isinstance(spec, str):
                    if spec not in names:
                        raise ValueError(f"port {self.name!r}: variant {v.op!r} argument {spec!r} is neither a "
                                         f"parameter {tuple(names)} nor 'self.<attr>' (wrap strings in Const)")
                    sources.append((0, spec))
                else:
                    sources.append((2, spec))
            object.__setattr__(v, "_sources", tuple(sources))
            object.__setattr__(v, "_op", None)

    def bind(self, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any] | str:
        """Bound arguments, or the reason they don't fit the declared convention."""
        names = self._names
        if not kwargs and len(args) == len(names):
            return dict(zip(names, args))
        if len(args) > len(names):
            return f"{len(args)} positional arguments, convention is {self.params}"
        bound = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names or key in bound:
                return f"unexpected or repeated argument {key!r}, convention is {self.params}"
            bound[key] = value
        for name in names:
            if name not in bound:
                if name not in self._defaults:
                    return f"missing argument {name!r}"
                bound[name] = None
        return bound

    def plan(self, layer: Any, args: tuple, kwargs: Mapping[str, Any], legacy_method: str) -> PortPlan | str:
        """How this call runs on the IR path, or why the port refuses it."""
        bound = self.bind(args, kwargs)
        if isinstance(bound, str):
            return bound
        for reason, predicate in self.refuse.items():
            try:
                if predicate(layer, **bound):
                    return reason
            except Exception as exc:  # a predicate that cannot decide refuses
                return f"{reason} (check raised {type(exc).__name__}: {exc})"
        for variant in self.variants:
            if variant.matches(bound):
                op_args = tuple(bound[key] if kind == 0 else getattr(layer, key) if kind == 1 else key
                                for kind, key in variant._sources)
                op = variant._op
                if op is None:
                    op = get_op(variant.op)
                    object.__setattr__(variant, "_op", op)
                write_back = variant.write_back if legacy_method in variant.inplace_methods else None
                return PortPlan(op, op_args, variant.returns,
                                {bound[k]: i for k, i in write_back.items()} if write_back else {})
        return f"no variant of port {self.name!r} matches this call"


    # ------------------------------------------------------------ on mode
    def call_on(self, layer: Any, args: tuple, kwargs: Mapping[str, Any], legacy_method: str) -> Any:
        """Run the call on the IR path and return what the legacy call would return,
        or a `Refusal`. This is `plan(...).run()` for `on` mode, without building a
        plan: calls with every parameter given positionally use a runner compiled
        once per (legacy method, which arguments are None) — a few attribute reads
        and the IR op call (benchmarks/results/compat_overhead.md)."""
        if kwargs or len(args) != len(self._names):
            plan = self.plan(layer, args, kwargs, legacy_method)
            return Refusal(plan) if isinstance(plan, str) else plan.run()
        key = (legacy_method, *[a is None for a in args])
        runner = self._runners.get(key)
        if runner is None:
            runner = self._runners[key] = self._compile_runner(legacy_method, key[1:])
        return runner(layer, args)

    def _compile_runner(self, legacy_method: str, none_pattern: tuple[bool, ...]) -> Callable:
        """Generate `run(layer, a)` for calls whose positional args have this None pattern."""
        bound = {n: (None if is_none else torch.empty(0)) for n, is_none in zip(self._names, none_pattern)}
        variant = next((v for v in self.variants if v.matches(bound)), None)
        env: dict[str, Any] = {"_Refusal": Refusal, "_Tensor": torch.Tensor}
        lines = ["def run(layer, a):"]
        if self.refuse:
            lines.append("    try:")
            for i, (reason, predicate) in enumerate(self.refuse.items()):
                env[f"_p{i}"], env[f"_r{i}"] = predicate, Refusal(reason)
                lines.append(f"        if _p{i}(layer, *a): return _r{i}")
            lines += ["    except Exception as exc:",
                      "        return _Refusal(f'refusal check raised {type(exc).__name__}: {exc}')"]
        if variant is None:
            env["_none"] = Refusal(f"no variant of port {self.name!r} matches this call")
            lines.append("    return _none")
        else:
            index = {n: i for i, n in enumerate(self._names)}
            for name, kind in variant.when.items():
                if kind is TENSOR:
                    env["_mismatch"] = Refusal(f"{name} is not a tensor")
                    lines.append(f"    if not isinstance(a[{index[name]}], _Tensor): return _mismatch")
            op = get_op(variant.op)
            parts = []
            for i, (kind, key) in enumerate(variant._sources):
                if kind == 0:
                    parts.append(f"a[{index[key]}]")
                elif kind == 1:
                    parts.append(f"layer.{key}")
                else:
                    env[f"_c{i}"] = key
                    parts.append(f"_c{i}")
            call = ", ".join(parts) + ("," if len(parts) == 1 else "")
            write_back = dict(variant.write_back) if legacy_method in variant.inplace_methods else {}
            # An in-place legacy method overwrites its inputs: the IR op may do the same.
            env["_op"] = op.maybe_inplace if write_back and op.allow_inplace else op
            lines.append(f"    o = _op({call})")
            target_of = {out: index[param] for param, out in write_back.items()}
            for out, arg in target_of.items():
                lines.append(f"    if o[{out}] is not a[{arg}]: a[{arg}].copy_(o[{out}])")

            def result(i: int) -> str:
                return f"a[{target_of[i]}]" if i in target_of else f"o[{i}]"

            if isinstance(variant.returns, int):
                returns_tuple = op.schema.rsplit("->", 1)[1].strip().startswith("(")
                lines.append(f"    return {result(variant.returns)}" if returns_tuple else "    return o")
            else:
                lines.append(f"    return ({', '.join(result(i) for i in variant.returns)},)")
        exec("\n".join(lines), env)  # noqa: S102 - code generated from the port table only
        return env["run"]


class PortPlan:
    """A prepared IR call: run it, label it, give its tolerance."""

    __slots__ = ("op", "args", "returns", "write_back")

    def __init__(self, op: IrOp, args: tuple, returns: tuple[int, ...] | int,
                 write_back: dict[torch.Tensor, int]):
        self.op, self.args, self.returns, self.write_back = op, args, returns, write_back

    def label(self) -> str:
        return f"{self.op.name}/{self.op.dispatch(*self.args).provider}"

    def tolerance(self, dtype: torch.dtype) -> Tolerance:
        if not dtype.is_floating_point:
            return Tolerance(0.0, 0.0, "exact for non-float dtypes")
        try:
            return self.op.tolerance(dtype)
        except ValueError:
            return default_tolerance(torch.float32)

    def run(self) -> Any:
        result = self.op(*self.args)
        if not self.write_back and self.returns == 0 and not isinstance(result, tuple):
            return result
        outputs = result if isinstance(result, tuple) else (result,)
        if self.write_back:
            outputs = list(outputs)
            for target, index in self.write_back.items():
                target.copy_(outputs[index])
                outputs[index] = target
        if isinstance(self.returns, int):
            return outputs[self.returns]
        return tuple(outputs[i] for i in self.returns)

    def rebind(self, mapping: dict[int, Any]) -> PortPlan:
        """The same plan with some tensors replaced (id -> snapshot), for shadow runs."""
        args = tuple(mapping.get(id(a), a) if isinstance(a, torch.Tensor) else a for a in self.args)
        write_back = {mapping.get(id(t), t): i for t, i in self.write_back.items()}
        return PortPlan(self.op, args, self.returns, write_back)


PORTS: dict[str, Port] = {}


def register_port(port: Port, *, replace: bool = False) -> Port:
    """Add `port` to the table (`replace=True` to supersede a shipped one)."""
    if port.name in PORTS and not replace:
        raise ValueError(f"a port for {port.name!r} is already registered; pass replace=True to supersede it")
    for v in port.variants:
        get_op(v.op)  # fail now, naming the op, rather than on the first call
    PORTS[port.name] = port
    from .. import flags

    flags.bump()
    return port


def find_port(cls: type) -> Port | None:
    """The port for `cls`: by its registered name, or that of a registered ancestor."""
    for klass in cls.__mro__:
        name = klass.__dict__.get("name")
        if isinstance(name, str) and name in PORTS:
            return PORTS[name]
    return None


from . import activation, layernorm  # noqa: E402,F401  (fill the table)
