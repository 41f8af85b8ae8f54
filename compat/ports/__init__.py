"""Ports: declared mappings "legacy layer call -> IR op calls", one table per family.

A `Port` names the registered CustomOp (``rms_norm``), the legacy call
convention (``("x", "residual=None")``) and a list of `Variant`s, the first of
which whose `when` matches the call runs. A variant is one IR op call whose
arguments come from the call (``"x"``), the layer (``"self.weight"``) or
constants, and says how results map back: which outputs are returned, and
which are written into the caller's tensors when the legacy method works in
place (``write_back`` / ``inplace_methods``). `refuse` lists conditions under
which the port does not express the call: the legacy path then runs and the
call is counted as skipped ``port_refused``. Several conditions may share one
predicate (a tuple of reasons as key) that returns the reason that holds: one
Python call per `on` call instead of one per condition.

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
from irshim.ir.tolerances import Tolerance, comparison_tolerance

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
    refuse: Mapping[str | tuple[str, ...], Callable[..., Any]] = field(default_factory=dict)
    """reason -> predicate(layer, **bound): True when the port cannot express the call;
    checked in order, the first that holds refuses. A tuple of reasons -> one predicate
    checking them all, in the tuple's order: it returns the reason that holds (one of
    the tuple), or a false value. Each predicate is a Python call on every `on` call:
    one check of three conditions cost 0.9 µs against 2.2 µs for three predicates on
    the 2-core dev VM (RMSNorm's, layernorm.py)."""

    def __post_init__(self) -> None:
        for reasons in self.refuse:
            if not (isinstance(reasons, str) or (isinstance(reasons, tuple) and reasons
                                                 and all(isinstance(r, str) for r in reasons))):
                raise ValueError(f"port {self.name!r}: refuse keys are reasons (str) or non-empty tuples of "
                                 f"reasons, got {reasons!r}")
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
        for reasons, predicate in self.refuse.items():
            try:
                why = predicate(layer, **bound)
                if why:
                    return reasons if isinstance(reasons, str) else _declared(reasons, why)
            except Exception as exc:  # a predicate that cannot decide refuses
                label = reasons if isinstance(reasons, str) else " / ".join(reasons)
                return f"{label} (check raised {type(exc).__name__}: {exc})"
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
    def runner(self, legacy_method: str, nargs: int, layer: Any = None) -> Callable[[Any, tuple], Any]:
        """`run(layer, args)` for `on` mode: the IR call for `nargs` positional
        arguments (no keywords), returning what the legacy call would return or a
        `Refusal`. Generated once per (legacy method, nargs) from the port table, so
        a call costs the refusal checks, a few attribute reads and the IR op call
        (benchmarks/results/compat_overhead.md).

        Given a sample `layer`, the ``self.<attr>`` arguments that it holds as
        parameters or buffers are read from nn.Module's tables (see `module_attr`;
        1.7 -> 0.2 µs a read on the 2-core dev machine), with a plain attribute read
        as fallback: the runner serves any layer."""
        key = (legacy_method, nargs, self._tables(layer) if layer is not None else ())
        run = self._runners.get(key)
        if run is None:
            run = self._runners[key] = self._compile_runner(*key)
        return run

    def _tables(self, layer: Any) -> tuple[tuple[str, str], ...]:
        """(attr, "_parameters" | "_buffers") for each ``self.<attr>`` argument that
        `layer` holds there (as for `module_attr`: when its class keeps nn.Module's __getattr__)."""
        if getattr(type(layer), "__getattr__", None) is not _module_getattr:
            return ()
        found = []
        for attr in dict.fromkeys(key for v in self.variants for kind, key in v._sources if kind == 1):
            for table in _TABLES:
                if attr in layer.__dict__.get(table, ()):
                    found.append((attr, table))
                    break
        return tuple(found)

    def call_on(self, layer: Any, args: tuple, kwargs: Mapping[str, Any], legacy_method: str) -> Any:
        """`plan(...).run()` for `on` mode, through a compiled runner when it can."""
        if kwargs:
            plan = self.plan(layer, args, kwargs, legacy_method)
            return Refusal(plan) if isinstance(plan, str) else plan.run()
        return self.runner(legacy_method, len(args))(layer, args)

    def _compile_runner(self, legacy_method: str, nargs: int, tables: tuple[tuple[str, str], ...] = ()) -> Callable:
        env: dict[str, Any] = {"_Refusal": Refusal, "_Tensor": torch.Tensor, "_M": _MISSING}
        names = self._names
        missing = [n for n in names[nargs:] if n not in self._defaults]
        if nargs > len(names) or missing:
            env["_bad"] = Refusal(f"{nargs} positional arguments, convention is {self.params}")
            exec("def run(layer, a):\n    return _bad", env)  # noqa: S102
            return env["run"]
        # Parameters not passed take their default (None): a literal in the code.
        value = {n: (f"a[{i}]" if i < nargs else "None") for i, n in enumerate(names)}
        lines = ["def run(layer, a):"]
        if self.refuse:
            lines.append("    try:")
            for i, (reasons, predicate) in enumerate(self.refuse.items()):
                env[f"_p{i}"] = predicate
                call = f"_p{i}(layer, {', '.join(value[n] for n in names)})"
                if isinstance(reasons, str):
                    env[f"_r{i}"] = Refusal(reasons)
                    lines.append(f"        if {call}: return _r{i}")
                else:  # the predicate names the reason: an undeclared one raises KeyError (refused)
                    env[f"_r{i}"] = {reason: Refusal(reason) for reason in reasons}
                    lines += [f"        why = {call}", f"        if why: return _r{i}[why]"]
            lines += ["    except Exception as exc:",
                      "        return _Refusal(f'refusal check raised {type(exc).__name__}: {exc}')"]
        for k, variant in enumerate(self.variants):
            tests = []
            for name, kind in variant.when.items():
                if kind is None and value[name] != "None":
                    tests.append(f"{value[name]} is None")
                elif kind is TENSOR:
                    tests.append(f"isinstance({value[name]}, _Tensor)")
            if any(kind is TENSOR and value[n] == "None" for n, kind in variant.when.items()):
                continue  # needs an argument this call shape never passes
            body = self._variant_code(variant, k, value, legacy_method, env, dict(tables))
            if tests:
                lines.append(f"    if {' and '.join(tests)}:")
                lines += ["    " + line for line in body]
            else:
                lines += body
                break
        else:
            env["_none"] = Refusal(f"no variant of port {self.name!r} matches this call")
            lines.append("    return _none")
        exec("\n".join(lines), env)  # noqa: S102 - code generated from the port table only
        return env["run"]

    @staticmethod
    def _variant_code(variant: Variant, k: int, value: dict[str, str], legacy_method: str,
                      env: dict[str, Any], tables: Mapping[str, str]) -> list[str]:
        """Lines (indented once) running one variant's IR call and mapping its results back."""
        op = get_op(variant.op)
        parts, lines = [], []
        for i, (kind, key) in enumerate(variant._sources):
            if kind == 0:
                parts.append(value[key])
            elif kind == 1 and key in tables:
                # module_attr, inlined: a parameter or buffer read from its table
                lines += [f"    v{i} = layer.{tables[key]}.get({key!r}, _M)",
                          f"    if v{i} is _M: v{i} = layer.{key}"]
                parts.append(f"v{i}")
            elif kind == 1:
                parts.append(f"layer.{key}")
            else:
                env[f"_c{k}_{i}"] = key
                parts.append(f"_c{k}_{i}")
        write_back = dict(variant.write_back) if legacy_method in variant.inplace_methods else {}
        # The bound __call__, not the op object: calling an instance looks __call__ up and
        # binds it on every call (0.77 against 1.03 µs an op call on the 2-core dev VM).
        env[f"_op{k}"] = ir_callable(op, write_back).__call__
        lines.append(f"    o = _op{k}({', '.join(parts)})")
        target_of = {out: value[param] for param, out in write_back.items()}
        for out, arg in target_of.items():
            lines.append(f"    if o[{out}] is not {arg}: {arg}.copy_(o[{out}])")

        def result(i: int) -> str:
            return target_of.get(i, f"o[{i}]")

        if isinstance(variant.returns, int):
            returns_tuple = op.schema.rsplit("->", 1)[1].strip().startswith("(")
            lines.append(f"    return {result(variant.returns)}" if returns_tuple else "    return o")
        else:
            lines.append(f"    return ({', '.join(result(i) for i in variant.returns)},)")
        return lines


def _declared(reasons: tuple[str, ...], why: Any) -> str:
    """The reason a several-reason predicate returned, checked against those it declares."""
    if why in reasons:
        return why
    raise KeyError(f"{why!r} is none of the declared reasons {reasons}")


_MISSING = object()
_TABLES = ("_parameters", "_buffers")
_module_getattr = torch.nn.Module.__getattr__


def module_attr(layer: Any, name: str) -> Any:
    """`getattr(layer, name)`, reading a parameter of an nn.Module from its table.

    nn.Module.__getattr__ finds a parameter only after normal lookup has failed:
    ~1.7 µs a read on the 2-core dev machine (Python 3.11), ~0.3 µs this way. Same
    result: nn.Module registers a parameter only under a name that no instance or
    class attribute holds, and its __setattr__ keeps it so; a class that overrides
    __getattr__ gets plain getattr.
    """
    if getattr(type(layer), "__getattr__", None) is _module_getattr:
        try:
            return layer.__dict__["_parameters"][name]
        except KeyError:
            pass
    return getattr(layer, name)


def ir_callable(op: IrOp, write_back: Mapping[Any, int] | None) -> Callable[..., Any]:
    """What a port calls: an in-place legacy method overwrites its inputs, so the IR
    call may too (`maybe_inplace`); otherwise the functional op."""
    return op.maybe_inplace if write_back and op.allow_inplace else op


class PortPlan:
    """A prepared IR call: run it, label it, give its tolerance.

    Like the generated runners, a plan whose legacy method works in place calls the
    op's `maybe_inplace` overload (the inputs are the caller's, or in shadow mode
    their snapshots): shadow mode compares the very provider that `on` runs."""

    __slots__ = ("op", "call", "args", "returns", "write_back", "impl")

    def __init__(self, op: IrOp, args: tuple, returns: tuple[int, ...] | int,
                 write_back: dict[torch.Tensor, int]):
        self.op, self.args, self.returns, self.write_back = op, args, returns, write_back
        self.call = ir_callable(op, write_back)
        self.impl = None
        """The provider `label` chose: `run` then calls it without dispatching again."""

    def label(self) -> str:
        self.impl = self.call.dispatch(*self.args)
        return f"{self.op.name}/{self.impl.provider}"

    def tolerance(self, dtype: torch.dtype) -> Tolerance:
        return comparison_tolerance(dtype, self.op)

    def _invoke(self) -> Any:
        impl, args = self.impl, self.args
        if impl is None:
            return self.call(*args)
        if impl.inplace and self.call is self.op:  # the default overload never mutates (as IrOp.__call__)
            args = self.op._clone_activations(args)
        return impl.impl_fn(*args)

    def run(self) -> Any:
        result = self._invoke()
        if not self.write_back and self.returns == 0 and not isinstance(result, tuple):
            return result
        outputs = result if isinstance(result, tuple) else (result,)
        if self.write_back:
            outputs = list(outputs)
            for target, index in self.write_back.items():
                if outputs[index] is not target:  # an in-place provider wrote it already
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
        # Resolved now: fails here, naming the op, rather than on the first call; and a
        # plan never sets it while Dynamo traces (which guarded on `_op is None` and
        # recompiled on the second call of a compiled model).
        object.__setattr__(v, "_op", get_op(v.op))
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


from . import activation, layernorm, quant, rotary  # noqa: E402,F401  (fill the table)
