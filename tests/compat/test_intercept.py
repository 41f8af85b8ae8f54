"""install()/uninstall() on a foreign base with vLLM's protocol: coverage, idempotence, exact restore."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import wrapt

import irshim.compat as compat
from irshim.compat import install, uninstall
from irshim.compat.layers import RMSNorm
from records_reading import summed_counts  # tests/records_reading.py


def make_foreign_base(ForeignCustomOp):
    """The `foreign_base` stand-in with two subclasses: a port-covered RMSNorm and one with its own forward."""

    @ForeignCustomOp.register("rms_norm")
    class ForeignRMSNorm(ForeignCustomOp):
        def __init__(self, hidden, eps=1e-6):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(hidden))
            self.variance_epsilon = eps
            self.variance_size_override = None
            self.hidden_size = hidden
            self.has_weight = True

        forward_native = RMSNorm.forward_native
        forward_cuda = RMSNorm.forward_cuda

    @ForeignCustomOp.register("foreign_scale")
    class Scale(ForeignCustomOp):
        def forward(self, x):  # a subclass with its own forward
            return self.forward_native(x)

        def forward_native(self, x):
            return 2 * x

    return ForeignCustomOp, ForeignRMSNorm, Scale


def _class_dicts(*classes):
    return {c: dict(c.__dict__) for c in classes}


def _same(a, b):
    return a.keys() == b.keys() and all(a[c].keys() == b[c].keys() and all(a[c][k] is b[c][k] for k in a[c])
                                        for c in a)


def _read(tmp_path):
    compat.flush()
    return [json.loads(x) for f in Path(tmp_path).rglob("*.jsonl") for x in f.read_text().splitlines()]


def test_install_twice_then_uninstall_restores_classes_exactly(tmp_path, foreign_base):
    base, norm, scale = make_foreign_base(foreign_base)
    before = _class_dicts(base, norm, scale)
    old_layer = norm(16)
    assert install(base) is base and install(base) is base

    @base.register("foreign_after")
    class After(base):
        def forward(self, x):
            return x + 1

    new_layer = norm(16)
    x = torch.randn(3, 16)
    with compat.override(dispatch="shadow", report_dir=tmp_path):
        assert isinstance(base.__dict__["forward"], wrapt.FunctionWrapper)
        assert not isinstance(base.__dict__["forward"].__wrapped__, wrapt.FunctionWrapper)  # not wrapped twice
        assert isinstance(scale.__dict__["forward"], wrapt.FunctionWrapper)
        assert isinstance(After.__dict__["forward"], wrapt.FunctionWrapper)
        compat.flush()
        assert torch.equal(old_layer(x), old_layer.forward_native(x))
        assert torch.equal(new_layer(x), new_layer.forward_native(x))
        assert torch.equal(scale()(x), 2 * x) and torch.equal(After()(x), x + 1)
        recs = _read(tmp_path)
    compared = [r for r in recs if r["kind"] == "compare" and r["op"] == "rms_norm" and "Foreign" in r["cls"]]
    assert len(compared) == 2 and all(r["passed"] and r["ir"] == "rms_norm/native" for r in compared)
    ops = {o["cls"].rsplit(".", 1)[-1]: o for r in recs if r["kind"] == "ops" for o in r["ops"]}
    assert ops["ForeignRMSNorm"]["port"] == "ported" and ops["Scale"]["port"] == "automatic"
    uninstall(base)
    uninstall(base)
    assert _same(_class_dicts(base, norm, scale), before)
    assert not isinstance(After.__dict__["forward"], wrapt.FunctionWrapper)
    assert torch.equal(old_layer(x), old_layer.forward_native(x))


def test_sampled_shadow_on_a_foreign_base_compares_a_fraction_and_counts_every_call(tmp_path, foreign_base):
    # A foreign base's calls take dispatch.call (not CustomOp.__call__'s inlined path).
    base, norm, _ = make_foreign_base(foreign_base)
    install(base)
    try:
        layer, x = norm(16), torch.randn(3, 16)
        with compat.override(dispatch="shadow", shadow_sample=0.25, report_dir=tmp_path):
            for _ in range(400):
                assert torch.equal(layer(x), layer.forward_native(x))
            recs = _read(tmp_path)
    finally:
        uninstall(base)
    (c,) = [r for r in summed_counts(recs) if r["op"] == "rms_norm" and "Foreign" in r["cls"]]
    assert c["seen"] == 400 and c["compared"] + c["skipped"]["sampling"] == 400
    assert 50 < c["compared"] < 150
    assert c["compared"] == sum(r["kind"] == "compare" and "Foreign" in r["cls"] for r in recs)


def test_concurrent_installs_wrap_once(foreign_base):
    base, norm, scale = make_foreign_base(foreign_base)
    before = _class_dicts(base, norm, scale)
    threads = [threading.Thread(target=install, args=(base,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert compat.installed().count(base) == 1
    with compat.override(dispatch="shadow"):
        assert not isinstance(base.__dict__["forward"].__wrapped__, wrapt.FunctionWrapper)
    uninstall()
    assert _same(_class_dicts(base, norm, scale), before)


def test_off_leaves_the_original_forward_in_place(tmp_path, foreign_base):
    # While dispatch is off an installed base costs nothing a call: its classes hold
    # their own forward; a change of settings puts the wrappers in and takes them out.
    base, norm, scale = make_foreign_base(foreign_base)
    before = _class_dicts(base, norm, scale)
    originals = {cls: cls.__dict__["forward"] for cls in (base, scale)}

    def forwards_are_originals():
        return all(cls.__dict__["forward"] is f for cls, f in originals.items()) and "forward" not in norm.__dict__

    layer = norm(16)
    x = torch.randn(3, 16)
    with compat.override(dispatch="off"):
        install(base)  # adds its __init_subclass__ hook to the base; forward stays
        assert forwards_are_originals()
        assert torch.equal(layer(x), layer.forward_native(x))
        with compat.override(dispatch="shadow", report_dir=tmp_path):
            assert isinstance(base.__dict__["forward"], wrapt.FunctionWrapper)
            assert isinstance(scale.__dict__["forward"], wrapt.FunctionWrapper)
            compat.flush()
            assert torch.equal(layer(x), layer.forward_native(x))
            compared = [r for r in _read(tmp_path) if r["kind"] == "compare" and r["op"] == "rms_norm"]
            assert len(compared) == 1  # the call went through the shim
        assert forwards_are_originals()
        with compat.override(dispatch="on"):
            uninstall(base)  # from the wrapped state
    assert _same(_class_dicts(base, norm, scale), before)
    with compat.override(dispatch="shadow"):
        assert _same(_class_dicts(base, norm, scale), before)  # uninstalled: no longer follows settings


def test_install_without_vllm_is_a_logged_no_op():
    pytest.importorskip  # noqa: B018  (documentational: vLLM absent on CI)
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert install() is None
    else:  # pragma: no cover - only where vLLM is installed
        pytest.skip("vLLM installed: covered by the vllm-marked integration tests")


def test_own_base_needs_no_install():
    assert install(compat.CustomOp) is compat.CustomOp
    assert compat.installed() == []


def test_bad_base_is_refused_with_a_hint():
    with pytest.raises(TypeError, match="CustomOp-like class"):
        install(object())
