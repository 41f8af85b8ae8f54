"""Where an op's provider priority comes from, lowest first.

1. platform defaults (registered by provider packages per device family);
2. `IRSHIM_PRIORITY`, e.g. ``rms_norm=triton,native;silu_and_mul=native``;
3. `irshim.ir.set_priority({op: [...]})`, the process default set in code;
4. `op.set_priority([...])`, a context manager (kept on the op itself).

The highest source that names an op decides its list; lists are not merged.
Every change bumps `generation`, which ops compare against their cached
resolution, so the dispatch hot path never re-reads these tables.
"""

from __future__ import annotations

import os
import re

from .errors import ConfigError
from .platform import FAMILIES

ENV_VAR = "IRSHIM_PRIORITY"
ENV_SYNTAX = "'op=provider,provider;op=provider' with names matching [a-z_][a-z0-9_]*"
NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

generation = 0
"""Bumped on every change to any source; ops re-resolve lazily when it moves."""

_platform_defaults: dict[str, dict[str, list[str]]] = {}
_process: dict[str, list[str]] = {}
_env: dict[str, list[str]] = {}
_env_value = ""


def bump() -> None:
    """Invalidate every op's cached resolution."""
    global generation
    generation += 1


def parse_priority(value: str, setting: str = ENV_VAR) -> dict[str, list[str]]:
    """Parse ``op=a,b;op2=c`` into ``{op: [a, b], op2: [c]}``, or raise ConfigError."""
    parsed: dict[str, list[str]] = {}
    for entry in value.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        op, sep, providers_text = entry.partition("=")
        op = op.strip()
        if not sep or not NAME.match(op):
            raise ConfigError(setting, value, ENV_SYNTAX, f"entry {entry!r} is not 'op=providers'")
        if op in parsed:
            raise ConfigError(setting, value, ENV_SYNTAX, f"op {op!r} is listed twice")
        providers = [p.strip() for p in providers_text.split(",")]
        bad = [p for p in providers if not NAME.match(p)]
        if bad:
            raise ConfigError(setting, value, ENV_SYNTAX, f"bad provider name(s) {bad} for op {op!r}")
        if len(set(providers)) != len(providers):
            raise ConfigError(setting, value, ENV_SYNTAX, f"op {op!r} lists a provider twice")
        parsed[op] = providers
    return parsed


def reload_env() -> None:
    """Re-read `IRSHIM_PRIORITY` (done at import; call after changing the variable)."""
    global _env, _env_value
    value = os.environ.get(ENV_VAR, "")
    _env = parse_priority(value)
    _env_value = value
    bump()


def env_value() -> str:
    """The `IRSHIM_PRIORITY` text in force (for error messages and status)."""
    return _env_value


def set_platform_default(op: str, family: str, providers: list[str]) -> None:
    """Record a provider package's preferred order for `op` on `family`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown device family {family!r}; expected one of {FAMILIES}")
    _platform_defaults.setdefault(op, {})[family] = list(providers)
    bump()


def set_process_priority(op: str, providers: list[str] | None) -> None:
    """Set (or with None, clear) the process-wide priority of `op`."""
    if providers is None:
        _process.pop(op, None)
    else:
        _process[op] = list(providers)
    bump()


def platform_default(op: str, family: str) -> list[str]:
    """The provider packages' order for `op` on `family` ([] when none registered one)."""
    return list(_platform_defaults.get(op, {}).get(family, []))


def requested(op: str, family: str) -> tuple[list[str], str]:
    """The unfiltered list for `op` below the context-manager level, and its source."""
    if op in _process:
        return _process[op], "ir.set_priority"
    if op in _env:
        return _env[op], ENV_VAR
    defaults = _platform_defaults.get(op, {})
    if family in defaults:
        return defaults[family], f"platform default ({family})"
    return [], "none"


reload_env()
