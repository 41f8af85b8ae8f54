"""`on` mode: IR results within the op's tolerance; torch.compile(fullgraph=True) without breaks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import irshim.compat as compat
from irshim.compat import CustomOp
from irshim.compat import custom_op as custom_op_module
from irshim.compat.layers import (FastGELU, FatreluAndMul, GeluAndMul, GemmaRMSNorm, MulAndSilu, NewGELU,
                                  QuickGELU, ReLUSquaredActivation, RMSNorm, SiluAndMul)
from irshim.ir import ops
from irshim.ir.tolerances import assert_close
from records_reading import summed_counts  # tests/records_reading.py


def _halves(x):
    d = x.shape[-1] // 2
    return x[..., :d].double(), x[..., d:].double()


def _rms64(x, w, eps, offset=0.0):
    x = x.double()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (w.double() + offset)


# layer, op whose tolerance applies, float64 reference
LAYERS = {
    "RMSNorm": (lambda: RMSNorm(64, eps=1e-5), "rms_norm", lambda L, x: _rms64(x, L.weight, 1e-5)),
    "GemmaRMSNorm": (lambda: GemmaRMSNorm(64, eps=1e-6), "gemma_rms_norm",
                     lambda L, x: _rms64(x, L.weight, 1e-6, 1.0)),
    "SiluAndMul": (SiluAndMul, "silu_and_mul", lambda L, x: F.silu(_halves(x)[0]) * _halves(x)[1]),
    "MulAndSilu": (MulAndSilu, "mul_and_silu", lambda L, x: _halves(x)[0] * F.silu(_halves(x)[1])),
    "GeluAndMul-tanh": (lambda: GeluAndMul("tanh"), "gelu_and_mul",
                        lambda L, x: F.gelu(_halves(x)[0], approximate="tanh") * _halves(x)[1]),
    "FatreluAndMul": (lambda: FatreluAndMul(0.3), "fatrelu_and_mul",
                      lambda L, x: torch.where(_halves(x)[0] > 0.3, _halves(x)[0], 0.0) * _halves(x)[1]),
    "NewGELU": (NewGELU, "gelu_new", lambda L, x: 0.5 * x.double() * (1 + torch.tanh(
        math.sqrt(2 / math.pi) * (x.double() + 0.044715 * x.double() ** 3)))),
    "FastGELU": (FastGELU, "gelu_fast", lambda L, x: 0.5 * x.double() * (1 + torch.tanh(
        0.7978845608 * x.double() * (1 + 0.044715 * x.double() ** 2)))),
    "QuickGELU": (QuickGELU, "quick_gelu", lambda L, x: x.double() * torch.sigmoid(1.702 * x.double())),
    "ReLUSquared": (ReLUSquaredActivation, "relu2", lambda L, x: torch.relu(x.double()) ** 2),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_on_mode_matches_the_reference_within_tolerance(name, dtype):
    make, op, ref = LAYERS[name]
    layer = make().to(dtype)
    if hasattr(layer, "weight"):
        with torch.no_grad():
            layer.weight.copy_(0.1 * torch.randn(64, generator=torch.Generator().manual_seed(2)) + (0 if "Gemma" in name else 1))
    x = torch.randn(9, 64, generator=torch.Generator().manual_seed(0)).to(dtype)
    with compat.override(dispatch="on", ops="all"):
        out = layer(x)
    tol = ops.__getattr__(op).tolerance(dtype)
    assert out.dtype == dtype
    assert_close(out, ref(layer, x).to(dtype), tol, what=f"{name} on")


def test_on_mode_rms_norm_residual_keeps_the_fused_in_place_convention(monkeypatch):
    with pytest.MonkeyPatch.context() as cuda:  # a layer bound as on a GPU: forward_cuda, in place
        cuda.setattr(custom_op_module, "device_family", lambda: "cuda")
        layer = RMSNorm(32)
    x, res = torch.randn(3, 32), torch.randn(3, 32)
    x0, res0 = x.clone(), res.clone()
    with compat.override(dispatch="on"):
        out, new_res = layer(x, res)
    assert out is x and new_res is res
    assert_close(new_res, x0 + res0, ops.fused_add_rms_norm.tolerance(torch.float32))
    assert_close(out, _rms64(x0 + res0, layer.weight, 1e-6).float(), ops.rms_norm.tolerance(torch.float32))
    # forward_native never mutates, so neither does the IR path behind it.
    layer = RMSNorm(32)
    x, res = x0.clone(), res0.clone()
    with compat.override(dispatch="on"):
        out, new_res = layer(x, res)
    assert torch.equal(x, x0) and torch.equal(res, res0) and out is not x


def test_on_mode_refusals_run_legacy_every_time_and_are_counted(tmp_path):
    """The first call goes through the shim, later ones through the runner CustomOp.__call__
    caches: both refuse a norm over a prefix of the hidden size, run legacy and count it."""
    layer = RMSNorm(16, var_hidden_size=8)
    plain = RMSNorm(16)
    x = torch.randn(2, 1, 16)
    compat.flush()  # counts of earlier tests go to the session's folder, not this one
    with compat.override(dispatch="on", report_dir=tmp_path):
        outs = [layer(x) for _ in range(3)]
        normed = [plain(x) for _ in range(3)]
        compat.flush()
    assert all(torch.equal(out, layer.forward_native(x)) for out in outs)
    assert all(torch.equal(out, ops.rms_norm(x, plain.weight, plain.variance_epsilon)) for out in normed)
    records = [json.loads(line) for f in Path(tmp_path).rglob("*.jsonl") for line in f.read_text().splitlines()]
    (count,) = [r for r in summed_counts(records) if r["op"] == "rms_norm"]
    assert count["seen"] == 6 and count["skipped"] == {"port_refused": 3}, count


def test_ops_selection_keeps_other_ops_on_legacy(monkeypatch):
    # The spy sits on the provider dispatch runs (op.native is never called by dispatch).
    calls = []
    layer = SiluAndMul()
    impl = ops.silu_and_mul._impls["native"]
    real = impl.impl_fn
    monkeypatch.setattr(impl, "impl_fn", lambda x: calls.append(x) or real(x))
    with ops.silu_and_mul.set_priority(["native"]):
        with compat.override(dispatch="on", ops="none,+rms_norm"):
            layer(torch.randn(2, 8))
        assert calls == []
        with compat.override(dispatch="on", ops="all"):  # the spy does see a selected op
            layer(torch.randn(2, 8))
    assert len(calls) == 1


def test_flag_changes_take_effect_on_existing_layers():
    layer = RMSNorm(8)
    x = torch.randn(2, 8)
    layer(x)
    with compat.override(dispatch="on"):
        with ops.rms_norm.set_priority(["native"]):
            assert torch.equal(layer(x), ops.rms_norm.native(x, layer.weight, 1e-6))


class TinyBlock(torch.nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.norm = RMSNorm(hidden)
        self.up = torch.nn.Linear(hidden, 4 * hidden, bias=False)
        self.act = SiluAndMul()
        self.down = torch.nn.Linear(2 * hidden, hidden, bias=False)
        self.post = RMSNorm(hidden)

    def forward(self, x, residual):
        h, residual = self.norm(x, residual)
        h = self.down(self.act(self.up(h)))
        return self.post(h, residual)


def test_on_mode_compiles_fullgraph_with_ir_ops_as_single_nodes():
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    block = TinyBlock()
    x, res = torch.randn(4, 32), torch.randn(4, 32)
    with compat.override(dispatch="on", ops="all"), torch.no_grad():
        expected = block(x.clone(), res.clone())
        compiled = torch.compile(block, fullgraph=True, backend=backend)
        got = compiled(x.clone(), res.clone())
        for _ in range(2):  # same inputs: no recompile (a port resolving its op mid-trace made one)
            compiled(x.clone(), res.clone())
    assert len(graphs) == 1
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    assert sum("irshim.fused_add_rms_norm" in t for t in targets) == 2, targets
    assert sum("irshim.silu_and_mul" in t for t in targets) == 1, targets
    for a, b in zip(got, expected):
        assert_close(a, b, ops.rms_norm.tolerance(torch.float32))
    torch._dynamo.reset()


def test_shadow_calls_traced_by_torch_compile_are_counted_as_skipped(tmp_path):
    from irshim.compat.records import recorder

    torch._dynamo.reset()
    recorder.flush()  # counts of earlier tests go to their own folder
    block = TinyBlock()
    x, res = torch.randn(4, 32), torch.randn(4, 32)
    with compat.override(dispatch="shadow", ops="all", report_dir=str(tmp_path)), torch.no_grad():
        compiled = torch.compile(block, fullgraph=True, backend="eager")
        for _ in range(3):
            compiled(x.clone(), res.clone())
        recorder.flush()
    import json

    counts = {}
    for path in tmp_path.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec["kind"] == "counts":
                entry = counts.setdefault(rec["op"], {"seen": 0, "compiling": 0})
                entry["seen"] += rec["seen"]
                entry["compiling"] += rec["skipped"].get("compiling", 0)
    # Traced once: two RMSNorm calls and one SiluAndMul call, each counted while Dynamo traced.
    assert counts == {"rms_norm": {"seen": 2, "compiling": 2}, "silu_and_mul": {"seen": 1, "compiling": 1}}


class _Doubler(CustomOp):
    """Unported: its automatic op runs forward_native under compile."""

    def forward_native(self, x):
        return 2 * x


def test_compile_right_after_switching_on_ported_and_automatic_layers():
    # No eager call first: the class states must exist before Dynamo traces
    # (it cannot take the locks that building them needs).
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    block, doubler = TinyBlock(), _Doubler()
    x, res = torch.randn(4, 32), torch.randn(4, 32)
    with torch.no_grad():
        expected = block(x.clone(), res.clone())
        with compat.override(dispatch="on", ops="all"):
            compiled = torch.compile(lambda a, r: (block(a, r), doubler(a)), fullgraph=True, backend=backend)
            (out, new_res), doubled = compiled(x.clone(), res.clone())
    assert len(graphs) == 1
    assert torch.equal(doubled, 2 * x)
    assert_close(out, expected[0], ops.rms_norm.tolerance(torch.float32))
    assert_close(new_res, expected[1], ops.rms_norm.tolerance(torch.float32))
