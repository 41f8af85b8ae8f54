"""IRSHIM_* settings: parsing, validation, the per-op mode, and an override context.

| variable | values | default |
| --- | --- | --- |
| IRSHIM_DISPATCH | off, shadow, on | off |
| IRSHIM_OPS | all, none, or a list like ``none,+rms_norm`` / ``all,-quant_fp8`` | all |
| IRSHIM_PRIORITY | ``rms_norm=triton,native;silu_and_mul=native`` (parsed by irshim.ir.priority) | |
| IRSHIM_SHADOW_SAMPLE | fraction of calls compared, 0 < p <= 1 | 1 |
| IRSHIM_REPORT_DIR | folder for logs and reports | ./migration_reports |
| IRSHIM_STRICT | 1 raises on the first mismatch (test suites), 0 | 0 |
| IRSHIM_RUN_ID | folder name shared by all processes of one run | set on first use |

`current()` is read on every intercepted call through a per-class cache that
compares `generation`; every change (reload, override) bumps it, so the hot
path never parses anything.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

from irshim.ir import ConfigError
from irshim.ir import priority as _ir_priority

OFF, SHADOW, ON = "off", "shadow", "on"
MODES = (OFF, SHADOW, ON)

DISPATCH = "IRSHIM_DISPATCH"
OPS = "IRSHIM_OPS"
PRIORITY = _ir_priority.ENV_VAR
SHADOW_SAMPLE = "IRSHIM_SHADOW_SAMPLE"
REPORT_DIR = "IRSHIM_REPORT_DIR"
STRICT = "IRSHIM_STRICT"
RUN_ID = "IRSHIM_RUN_ID"

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_RUN_ID_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_OPS_SYNTAX = ("'all', 'none', or a comma list starting with either, then +op / -op "
               "(e.g. 'none,+rms_norm,+silu_and_mul' or 'all,-quant_fp8'); op names match [a-z_][a-z0-9_]*")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class OpsSelection:
    """Which ops follow IRSHIM_DISPATCH; the others stay `off`."""

    default: bool = True
    enabled: frozenset[str] = frozenset()
    disabled: frozenset[str] = frozenset()

    def selects(self, op: str) -> bool:
        return (self.default or op in self.enabled) and op not in self.disabled


@dataclass(frozen=True)
class Flags:
    dispatch: str = OFF
    ops: OpsSelection = OpsSelection()
    shadow_sample: float = 1.0
    report_dir: str = "migration_reports"
    strict: bool = False

    def mode_for(self, op: str) -> str:
        """`off`, `shadow` or `on` for the op registered as `op`."""
        if self.dispatch == OFF or not self.ops.selects(op):
            return OFF
        return self.dispatch


def parse_dispatch(value: str) -> str:
    mode = value.strip().lower()
    if mode not in MODES:
        raise ConfigError(DISPATCH, value, "off, shadow or on",
                          "set IRSHIM_DISPATCH=shadow to compare, =on to use the IR path")
    return mode


def parse_ops(value: str) -> OpsSelection:
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        return OpsSelection()
    if any(not item for item in items):
        raise ConfigError(OPS, value, _OPS_SYNTAX, "empty entry (two commas in a row?)")
    bases = [item for item in items if item in ("all", "none")]
    if len(bases) > 1:
        raise ConfigError(OPS, value, _OPS_SYNTAX, "give 'all' or 'none' once, not both or twice")
    if bases and items[0] not in ("all", "none"):
        raise ConfigError(OPS, value, _OPS_SYNTAX, f"{bases[0]!r} must come first")
    enabled, disabled = set(), set()
    for item in items:
        if item in ("all", "none"):
            continue
        sign, name = item[0], item[1:]
        if sign not in "+-" or not _NAME.match(name):
            raise ConfigError(OPS, value, _OPS_SYNTAX, f"entry {item!r} is not +op or -op")
        (enabled if sign == "+" else disabled).add(name)
    both = enabled & disabled
    if both:
        raise ConfigError(OPS, value, _OPS_SYNTAX, f"op(s) {sorted(both)} both enabled and disabled")
    # Without 'all'/'none', a list of +op means "only these", a list of -op "all but these".
    default = bases[0] == "all" if bases else not enabled
    return OpsSelection(default, frozenset(enabled), frozenset(disabled))


def parse_shadow_sample(value: str) -> float:
    try:
        p = float(value)
    except ValueError:
        p = math.nan
    if not (0.0 < p <= 1.0):
        raise ConfigError(SHADOW_SAMPLE, value, "a number p with 0 < p <= 1 (e.g. 0.01 compares 1% of calls)")
    return p


def parse_strict(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(STRICT, value, "1 (raise on the first mismatch or IR error) or 0")


def parse_report_dir(value: str) -> str:
    if not value.strip() or "\0" in value:
        raise ConfigError(REPORT_DIR, value, "a folder path (created if missing), e.g. ./migration_reports")
    return value


def parse_run_id(value: str) -> str:
    if not _RUN_ID_CHARS.match(value):
        raise ConfigError(RUN_ID, value, "1-128 characters from [A-Za-z0-9._-], not starting with . or -",
                          "it names a folder under IRSHIM_REPORT_DIR")
    return value


def from_env(env: Mapping[str, str]) -> Flags:
    """Parse every IRSHIM_* variable of `env`; the first malformed one raises ConfigError."""
    flags = Flags(
        dispatch=parse_dispatch(env.get(DISPATCH, OFF) or OFF),
        ops=parse_ops(env.get(OPS, "all")),
        shadow_sample=parse_shadow_sample(env.get(SHADOW_SAMPLE, "1") or "1"),
        report_dir=parse_report_dir(env.get(REPORT_DIR, "migration_reports") or "migration_reports"),
        strict=parse_strict(env.get(STRICT, "0")),
    )
    if env.get(RUN_ID):
        parse_run_id(env[RUN_ID])
    _ir_priority.parse_priority(env.get(PRIORITY, ""))
    return flags


_lock = threading.RLock()
_current: Flags = Flags()
generation = 0
"""Bumped on every change; per-class mode caches compare against it."""


_listeners: list[Callable[[], None]] = []


def current() -> Flags:
    return _current


def on_change(listener: Callable[[], None]) -> None:
    """Call `listener()` after every change of settings (the generation has moved)."""
    _listeners.append(listener)


def _changed() -> None:
    for listener in _listeners:
        listener()


def _set(flags: Flags) -> None:
    global _current, generation
    with _lock:
        _current = flags
        generation += 1
    _changed()


def bump() -> None:
    """Invalidate cached per-class decisions (e.g. after `set_custom_ops` or new ports)."""
    global generation
    with _lock:
        generation += 1
    _changed()


def reload() -> Flags:
    """Re-read the IRSHIM_* environment (done at import); raises ConfigError on a bad value."""
    flags = from_env(os.environ)
    _ir_priority.reload_env()
    _set(flags)
    return flags


_UNSET = object()


@contextlib.contextmanager
def override(
    *,
    dispatch: str | object = _UNSET,
    ops: str | object = _UNSET,
    priority: str | object = _UNSET,
    shadow_sample: float | str | object = _UNSET,
    report_dir: str | object = _UNSET,
    strict: bool | str | object = _UNSET,
) -> Iterator[Flags]:
    """Override settings inside a block (code and tests); values use the variables' syntax.

    Process-wide (not per thread); nestable; the previous settings are restored
    on exit, exceptions included. `priority` sets IRSHIM_PRIORITY for the block.
    """
    changes = {}
    if dispatch is not _UNSET:
        changes["dispatch"] = parse_dispatch(dispatch)
    if ops is not _UNSET:
        changes["ops"] = parse_ops(ops)
    if shadow_sample is not _UNSET:
        changes["shadow_sample"] = parse_shadow_sample(str(shadow_sample))
    if report_dir is not _UNSET:
        changes["report_dir"] = parse_report_dir(os.fspath(report_dir))
    if strict is not _UNSET:
        changes["strict"] = strict if isinstance(strict, bool) else parse_strict(str(strict))
    if priority is not _UNSET:
        _ir_priority.parse_priority(priority)
    with _lock:
        previous = _current
        old_priority = os.environ.get(PRIORITY)
        if priority is not _UNSET:
            os.environ[PRIORITY] = priority
            _ir_priority.reload_env()
        _set(replace(previous, **changes))
    try:
        yield _current
    finally:
        with _lock:
            if priority is not _UNSET:
                if old_priority is None:
                    os.environ.pop(PRIORITY, None)
                else:
                    os.environ[PRIORITY] = old_priority
                _ir_priority.reload_env()
            _set(previous)


reload()  # a malformed IRSHIM_* value stops start-up here, naming the variable
