"""Automatic IR ops for unported classes: providers are the class's own forward_* methods."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import irshim.compat as compat
from irshim.compat import CustomOp, set_custom_ops
from irshim.compat.dispatch import state_of


@CustomOp.register("test_auto_scaled_add")
class ScaledAdd(CustomOp):
    """Parameters, a buffer it updates, a scalar attribute, optional + keyword args, tuple returns."""

    def __init__(self, n):
        super().__init__()
        self.scale = nn.Parameter(torch.full((n,), 2.0))
        self.register_buffer("calls", torch.zeros(()))
        self.shift = 0.5

    def forward_native(self, x, other=None, *, alpha=1.0):
        self.calls += 1
        y = x * self.scale + self.shift
        if other is None:
            return y
        return y + alpha * other, other

    def forward_cpu(self, x, other=None, *, alpha=1.0):
        self.calls += 1
        self.last_alpha = alpha
        y = torch.addcmul(torch.full_like(x, self.shift), x, self.scale)
        return y if other is None else (y + alpha * other, other)


@CustomOp.register("test_auto_inplace")
class InplaceClamp(CustomOp):
    """Mutates its input and returns None (forward_cpu) or the input (forward_native)."""

    def forward_native(self, x):
        return x.clamp_(min=0)

    def forward_cpu(self, x):
        x.clamp_(min=0.1)  # subtly different lower bound


def _read(tmp_path, op):
    compat.flush()
    recs = [json.loads(x) for f in Path(tmp_path).rglob("*.jsonl") for x in f.read_text().splitlines()]
    return [r for r in recs if r.get("op") == op]


def test_providers_and_default_priority_mirror_the_legacy_choice():
    saved = compat.get_custom_ops()
    op = state_of(ScaledAdd).auto
    assert op.providers == {"native": "forward_native", "forward_cpu": "forward_cpu"}
    assert op.get_priority() == ["forward_cpu", "native"]
    try:
        set_custom_ops(["none"])
        assert op.get_priority() == ["native"]
    finally:
        set_custom_ops(saved)
    with compat.override(priority="test_auto_scaled_add=native"):
        assert op.get_priority() == ["native"]
    with pytest.raises(compat.ConfigError, match="no method"):
        with compat.override(priority="test_auto_scaled_add=forward_cuda"):
            op.get_priority()


def test_shadow_compares_forward_cpu_with_native_without_touching_layer_state(tmp_path):
    layer = ScaledAdd(4)
    x, other = torch.randn(3, 4), torch.randn(3, 4)
    with compat.override(dispatch="shadow", report_dir=tmp_path):
        compat.flush()
        y = layer(x)
        y2, same = layer(x, other, alpha=0.5)
        recs = _read(tmp_path, "test_auto_scaled_add")
    assert torch.equal(y, layer.forward_cpu(x)) and same is other
    # Legacy ran twice; forward_cpu above once more. The IR side's `calls += 1` hit a copy.
    assert layer.calls.item() == 3 and layer.last_alpha == 1.0
    compared = [r for r in recs if r["kind"] == "compare"]
    assert [r["ir"] for r in compared] == ["test_auto_scaled_add/native"] * 2
    assert all(r["passed"] and r["legacy"] == "forward_cpu" for r in compared)
    assert [o["name"] for o in compared[1]["outputs"]] == ["out0", "out1"]
    assert compared[1]["signature"]["kwargs"] == {"alpha": 0.5}


def test_in_place_methods_are_compared_through_their_inputs(tmp_path):
    layer = InplaceClamp()
    x = torch.tensor([-1.0, 0.05, 2.0])
    with compat.override(dispatch="shadow", report_dir=tmp_path):
        compat.flush()
        assert layer(x) is None
        recs = _read(tmp_path, "test_auto_inplace")
    assert torch.equal(x, torch.tensor([0.1, 0.1, 2.0]))  # legacy's mutation, untouched by the IR side
    (rec,) = [r for r in recs if r["kind"] == "compare"]
    assert not rec["passed"]
    # legacy returned None, native returned its input: structure differs, and so does x.
    (mut,) = [o for o in rec["outputs"] if o["name"] == "mutated:x"]
    assert mut["max_abs"] == pytest.approx(0.1) and mut["n_outside"] == 2


def test_on_mode_runs_the_dispatched_method():
    layer = ScaledAdd(2)
    x = torch.ones(1, 2)
    with compat.override(dispatch="on"):
        layer(x)
        assert layer.last_alpha == 1.0  # forward_cpu ran: the legacy choice
        del layer.last_alpha
        with state_of(ScaledAdd).auto.set_priority(["native"]):
            layer(x, alpha=3.0)
        assert not hasattr(layer, "last_alpha")
    assert layer.calls.item() == 2
