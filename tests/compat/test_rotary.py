"""RotaryEmbedding (vLLM's layer) and its port: legacy semantics, on and shadow modes, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import irshim.compat as compat
from irshim.compat import CustomOp, find_port
from irshim.compat import custom_op as custom_op_module
from irshim.compat.layers.rotary_embedding import RotaryEmbedding
from irshim.compat.ports import rotary as rotary_port
from irshim.ir import ops
from irshim.ir.tolerances import Tolerance, assert_close

from references import rope_float64 as ref_rope  # tests/references.py

op = ops.rotary_embedding


def _inputs(tokens=7, hq=4, hk=2, head_size=32, dtype=torch.bfloat16, seed=0):
    g = torch.Generator().manual_seed(seed)
    positions = torch.randint(0, 256, (tokens,), generator=g)
    qkv = torch.randn(tokens, (hq + 2 * hk) * head_size, generator=g).to(dtype)
    query, key, _ = qkv.split([hq * head_size, hk * head_size, hk * head_size], dim=-1)
    return positions, query, key


@pytest.fixture(autouse=True)
def layers_bind_as_on_a_cpu_host(monkeypatch):
    """The inputs here are CPU tensors: layers bind forward_native (functional) as on a
    CPU host, also when the tests run on a GPU machine (forward_cuda works in place)."""
    monkeypatch.setattr(custom_op_module, "device_family", lambda: "cpu")


def _cuda_layer(monkeypatch, *args):
    """A layer constructed as on a CUDA machine: its bound method is forward_cuda (in place)."""
    monkeypatch.setattr(custom_op_module, "device_family", lambda: "cuda")
    layer = RotaryEmbedding(*args)
    monkeypatch.setattr(custom_op_module, "device_family", lambda: "cpu")
    assert layer._forward_method.__func__ is RotaryEmbedding.forward_cuda
    return layer


# ------------------------------------------------------------------- layer


def test_cache_is_vllms_formula_in_the_layer_dtype():
    layer = RotaryEmbedding(64, 32, 512, 10000.0, True, torch.bfloat16)
    assert layer.cos_sin_cache.shape == (512, 32) and layer.cos_sin_cache.dtype == torch.bfloat16
    assert "cos_sin_cache" not in layer.state_dict()  # a non-persistent buffer, as in vLLM
    t = torch.arange(512, dtype=torch.float64)[:, None]
    angles = t * 10000.0 ** (-torch.arange(0, 32, 2, dtype=torch.float64) / 32)
    assert_close(layer.cos_sin_cache, torch.cat((angles.cos(), angles.sin()), dim=-1),
                 Tolerance(1e-3, 4e-3, "bf16 cache of float32 angles"))
    assert "rotary_dim=32" in repr(layer)
    with pytest.raises(ValueError, match="rotary_dim must be even"):
        RotaryEmbedding(64, 33, 512, 10000.0, True, torch.float32)


@pytest.mark.parametrize("neox", [True, False], ids=["neox", "gptj"])
@pytest.mark.parametrize("rotary_dim", [32, 16], ids=["full", "partial"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_forward_native_matches_the_float64_reference(neox, rotary_dim, dtype):
    layer = RotaryEmbedding(32, rotary_dim, 256, 10000.0, neox, dtype)
    positions, query, key = _inputs(dtype=dtype)
    q, k = layer.forward_native(positions, query, key)
    tol = op.tolerance(dtype)  # includes the legacy's rounding of each product in the dtype
    assert_close(q, ref_rope(positions, query, 32, rotary_dim, layer.cos_sin_cache, neox), tol)
    assert_close(k, ref_rope(positions, key, 32, rotary_dim, layer.cos_sin_cache, neox), tol)
    q_only, no_key = layer.forward_native(positions, query)
    assert no_key is None and torch.equal(q_only, q)


def test_forward_cuda_rotates_in_place_like_vllms_kernel():
    layer = RotaryEmbedding(32, 32, 256, 10000.0, True, torch.bfloat16)
    positions, query, key = _inputs()
    e_q, e_k = layer.forward_native(positions, query, key)
    q, k = layer.forward_cuda(positions, query, key)
    assert q is query and k is key
    assert torch.equal(query, e_q) and torch.equal(key, e_k)


def test_cache_follows_the_query_dtype_like_vllm():
    layer = RotaryEmbedding(32, 32, 256, 10000.0, True, torch.float32)
    positions, query, key = _inputs(dtype=torch.bfloat16)
    layer.forward_native(positions, query, key)
    assert layer.cos_sin_cache.dtype == torch.bfloat16


# -------------------------------------------------------------------- port


def test_port_is_registered_for_the_layer():
    assert find_port(RotaryEmbedding).name == "rotary_embedding"


@pytest.mark.parametrize("neox", [True, False], ids=["neox", "gptj"])
def test_on_mode_matches_the_reference_and_keeps_none(neox):
    layer = RotaryEmbedding(32, 16, 256, 10000.0, neox, torch.bfloat16)
    positions, query, key = _inputs()
    q0, k0 = query.clone(), key.clone()
    with compat.override(dispatch="on", ops="all"):
        q, k = layer(positions, query, key)
        q_only, none = layer(positions, query)
        q_kw, none_kw = layer(positions, query, key=None)
    tol = op.tolerance(torch.bfloat16)
    assert_close(q, ref_rope(positions, q0, 32, 16, layer.cos_sin_cache, neox), tol)
    assert_close(k, ref_rope(positions, k0, 32, 16, layer.cos_sin_cache, neox), tol)
    assert none is None and none_kw is None
    assert torch.equal(q_only, q) and torch.equal(q_kw, q)
    assert torch.equal(query, q0) and torch.equal(key, k0)  # forward_native's path never mutates


def test_on_mode_keeps_the_in_place_convention_of_forward_cuda(monkeypatch):
    layer = _cuda_layer(monkeypatch, 32, 32, 256, 10000.0, True, torch.bfloat16)
    positions, query, key = _inputs()
    e_q, e_k = layer.forward_native(positions, query, key)
    with compat.override(dispatch="on"):
        q, k = layer(positions, query, key)
        assert q is query and k is key
        tol = op.tolerance(torch.bfloat16)
        assert_close(query, e_q, tol)
        assert_close(key, e_k, tol)
        positions, query, key = _inputs(seed=1)
        e_q, _ = layer.forward_native(positions, query, None)
        q, none = layer(positions, query, None)
        assert q is query and none is None
        assert_close(query, e_q, tol)
        assert torch.equal(key, _inputs(seed=1)[2])  # not passed, not touched


@pytest.fixture
def shadow(tmp_path):
    def read(kind: str) -> list[dict]:
        compat.flush()
        lines = [json.loads(line) for f in Path(tmp_path).rglob("*.jsonl") for line in f.read_text().splitlines()]
        return [r for r in lines if r["kind"] == kind and r.get("op") == "rotary_embedding"]

    with compat.override(dispatch="shadow", report_dir=tmp_path, shadow_sample=1, strict=True):
        compat.flush()
        yield read
        compat.flush()


@pytest.mark.parametrize("cuda_path", [False, True], ids=["forward_native", "forward_cuda"])
def test_shadow_returns_legacy_bit_for_bit_and_compares_mutations(shadow, monkeypatch, cuda_path):
    args = (32, 32, 256, 10000.0, True, torch.bfloat16)
    layer = _cuda_layer(monkeypatch, *args) if cuda_path else RotaryEmbedding(*args)
    reference = RotaryEmbedding(*args)
    for key_given in (True, False):
        positions, query, key = _inputs()
        e_q, e_k = reference.forward_native(positions, query.clone(), key.clone() if key_given else None)
        q, k = layer(positions, query, key if key_given else None)
        assert torch.equal(q, e_q) and (k is None if not key_given else torch.equal(k, e_k))
        if cuda_path:
            assert q is query
    records = shadow("compare")
    assert len(records) == 2 and all(r["passed"] for r in records)
    names = {o["name"] for r in records for o in r["outputs"]}
    if cuda_path:  # the in-place legacy mutated query (and key): compared with the IR's write-back
        assert {"mutated:query", "mutated:key"} <= names
    assert records[0]["ir"] == "rotary_embedding/native"


def test_offsets_are_refused_by_the_call_convention():
    layer = RotaryEmbedding(32, 32, 256, 10000.0, True, torch.float32)
    positions, query, key = _inputs(dtype=torch.float32)
    port = find_port(RotaryEmbedding)
    plan = port.plan(layer, (positions, query, key), {"offsets": positions}, "forward_native")
    assert isinstance(plan, str) and "offsets" in plan
    plan = port.plan(layer, (positions, query, key, positions), {}, "forward_native")
    assert isinstance(plan, str) and "4 positional arguments" in plan


class ScaledRotaryEmbedding(RotaryEmbedding):
    """Like vLLM's linear/YaRN/Llama-3 scaling: only the cache differs (ported)."""

    def _compute_inv_freq(self, base):
        return super()._compute_inv_freq(base) / 4.0


class OtherRotary(RotaryEmbedding):
    """Like DeepSeek's or M-RoPE: its own forward (refused)."""

    def forward_native(self, positions, query, key=None):
        return query * 2, key


def test_cache_only_subclasses_are_ported_and_others_refused():
    positions, query, key = _inputs(dtype=torch.float32)
    scaled = ScaledRotaryEmbedding(32, 32, 256, 10000.0, True, torch.float32)
    other = OtherRotary(32, 32, 256, 10000.0, True, torch.float32)
    port = find_port(RotaryEmbedding)
    assert rotary_port.foreign_forward(ScaledRotaryEmbedding) is None
    assert rotary_port.foreign_forward(OtherRotary) == "OtherRotary.forward_native"
    assert not isinstance(port.plan(scaled, (positions, query, key), {}, "forward_native"), str)
    reason = port.plan(other, (positions, query, key), {}, "forward_native")
    assert isinstance(reason, str) and "overrides RotaryEmbedding's forward" in reason
    with compat.override(dispatch="on"):
        q, _ = scaled(positions, query, key)
        assert_close(q, scaled.forward_native(positions, query, key)[0], op.tolerance(torch.float32))
        q, _ = other(positions, query, key)
        assert torch.equal(q, query * 2)  # refused: the legacy method ran


def test_vllms_own_classes_count_as_faithful():
    def fake(module, name, base=CustomOp, **methods):
        cls = type(name, (base,), {"__module__": module, "__qualname__": name, **methods})
        return cls

    vllm_base = fake("vllm.model_executor.layers.rotary_embedding.base", "RotaryEmbeddingBase",
                     forward_native=lambda self, p, q, k=None: (q, k))
    vllm_rope = fake("vllm.model_executor.layers.rotary_embedding.base", "RotaryEmbedding", vllm_base,
                     forward_cuda=lambda self, p, q, k=None: (q, k))
    llama3 = fake("vllm.model_executor.layers.rotary_embedding.llama3_rope", "Llama3RotaryEmbedding", vllm_rope,
                  _compute_inv_freq=lambda self, base: None)
    mrope = fake("vllm.model_executor.layers.rotary_embedding.mrope", "MRotaryEmbedding", vllm_rope,
                 forward_native=lambda self, p, q, k=None: (q, k))
    assert rotary_port.foreign_forward(llama3) is None
    assert rotary_port.foreign_forward(mrope) == "MRotaryEmbedding.forward_native"


def test_on_mode_compiles_fullgraph_with_one_rotary_node():
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    layer = RotaryEmbedding(32, 32, 256, 10000.0, True, torch.float32)
    positions, query, key = _inputs(dtype=torch.float32)
    with compat.override(dispatch="on", ops="all"), torch.no_grad():
        expected = layer(positions, query, key)
        q, k = torch.compile(lambda p, q, k: layer(p, q, k), fullgraph=True, backend=backend)(positions, query, key)
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    assert sum("irshim.rotary_embedding" in t for t in targets) == 1, targets
    assert torch.equal(q, expected[0]) and torch.equal(k, expected[1])
    torch._dynamo.reset()


def test_demo_model_runs_its_rotary_layer_through_the_port(tmp_path):
    from irshim.compat import records
    from irshim.compat import report as rp
    from irshim.compat.demo import run_demo

    records.recorder.flush()
    run = run_demo(steps=2, layers=1, report_dir=tmp_path, run_id="demo-rope", log=lambda text: None)
    assert run.identical is True
    rope = rp.aggregate(rp.log_files(run.logs))["ops"]["rotary_embedding"]
    assert rope["compared"] == 2 and rope["mismatches"] == rope["errors"] == 0
    assert rope["port"] == "ported"
