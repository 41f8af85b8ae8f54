"""Fixtures for IR tests: fresh test ops and clean priority state."""

from __future__ import annotations

import itertools

import pytest
from torch import Tensor

import irshim.ir as ir
from irshim.ir import priority

_counter = itertools.count()


@pytest.fixture
def fresh_name() -> str:
    """A new op name per test: torch cannot unregister an op, so names never repeat."""
    return f"_test_op_{next(_counter)}"


@pytest.fixture
def scale_op(fresh_name):
    """An op `scale(x, factor) = x * factor` with no providers yet."""

    def scale(x: Tensor, factor: float) -> Tensor:
        return x * factor

    scale.__name__ = fresh_name
    return ir.register_op(scale)


@pytest.fixture(autouse=True)
def clean_priority(monkeypatch):
    """Every test starts and ends with IRSHIM_PRIORITY unset and no process priorities."""
    monkeypatch.delenv(priority.ENV_VAR, raising=False)
    priority.reload_env()
    yield
    for name in list(priority._process):
        priority.set_process_priority(name, None)
    monkeypatch.delenv(priority.ENV_VAR, raising=False)
    priority.reload_env()
