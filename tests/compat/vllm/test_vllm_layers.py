"""vLLM 0.33's own CustomOps through irshim, in each mode, on a CPU.

Layers are built under a VllmConfig (custom_ops "none" binds forward_native,
"all" binds the CPU method). The reference for "legacy behaviour" is the
layer's own bound `_forward_method` called directly, which is exactly what
vLLM's CustomOp.forward runs without irshim; `off` and `shadow` must match it
bit for bit (outputs and input mutations), `on` within the op's tolerance, and
the ported ops also match an independent float64 formula.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.vllm

custom_op = pytest.importorskip("vllm.model_executor.custom_op",
                                reason="vLLM is not installed (scripts/bootstrap.py test installs it)")

import irshim.compat as compat  # noqa: E402
from irshim.compat import dispatch  # noqa: E402
from irshim.compat.report import aggregate, log_files  # noqa: E402

# Every module of vLLM 0.33 that registers a CustomOp (vllm/model_executor/
# hw_agnostic re-registers rms_norm/silu_and_mul and is an alternative to these).
LAYER_MODULES = (
    "vllm.model_executor.layers.activation",
    "vllm.model_executor.layers.layernorm",
    "vllm.model_executor.layers.mamba.mamba_mixer2",
    "vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn",
    "vllm.model_executor.layers.hpc.rope_norm",
    "vllm.model_executor.layers.attention.static_sink_attention",
    "vllm.model_executor.layers.attention.mla_attention",
    "vllm.model_executor.layers.attention.mm_encoder_attention",
    "vllm.model_executor.layers.minimax_rms_norm.rms_norm_tp",
    "vllm.model_executor.layers.fusion.mm_input_norm",
    "vllm.model_executor.layers.mhc",
    "vllm.model_executor.layers.quantization.input_quant_fp8",
    "vllm.model_executor.layers.conv",
    "vllm.model_executor.layers.sparse_attn_indexer",
    "vllm.model_executor.layers.rotary_embedding",
    "vllm.model_executor.layers.rotary_embedding.dual_chunk_rope",
    "vllm.model_executor.layers.fused_moe.router.grouped_topk_router",
    "vllm.model_executor.layers.fused_moe.unquantized_fused_moe_method",
    "vllm.model_executor.layers.fused_moe.fused_moe_modular_method",
    "vllm.model_executor.models.nemotron",
    "vllm.third_party.flash_linear_attention.ops.kda",
)

H = 64  # hidden size of the test layers
T = 5   # tokens


@pytest.fixture(scope="module")
def vllm_base():
    """vLLM's CustomOp intercepted by irshim for this module, uninstalled after it."""
    for name in LAYER_MODULES:
        importlib.import_module(name)
    base = compat.install()
    assert base is custom_op.CustomOp
    yield base
    compat.uninstall(base)


@contextlib.contextmanager
def vllm_config(custom_ops: str):
    """A VllmConfig with compilation off (no Inductor on the CI CPU) and this custom_ops base."""
    from vllm.config import CompilationConfig, VllmConfig, set_current_vllm_config
    from vllm.config.compilation import CompilationMode

    config = VllmConfig(compilation_config=CompilationConfig(mode=CompilationMode.NONE, custom_ops=[custom_ops]))
    with set_current_vllm_config(config):
        yield config


def _randn(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32).to(dtype)


def _clone(args):
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


def _flat(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flat(v)]
    return []


def _assert_identical(got, want, what):
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), f"{what}: {len(got)} tensors, legacy gives {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, f"{what}[{i}]: {g.dtype}{tuple(g.shape)} vs {w.dtype}{tuple(w.shape)}"
        assert torch.equal(g, w) or (g.isnan() == w.isnan()).all() and torch.equal(g.nan_to_num(), w.nan_to_num()), \
            f"{what}[{i}]: not bit-identical, max abs diff {(g.double() - w.double()).abs().max().item()}"


def _assert_close(got, want, what, atol, rtol):
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), f"{what}: {len(got)} tensors vs {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, f"{what}[{i}]: {g.dtype}{tuple(g.shape)} vs {w.dtype}{tuple(w.shape)}"
        if not g.dtype.is_floating_point:
            assert torch.equal(g, w), f"{what}[{i}]"
            continue
        torch.testing.assert_close(g.double(), w.double(), atol=atol, rtol=rtol, msg=lambda m: f"{what}[{i}]: {m}")


def _records(path):
    return [json.loads(line) for f in Path(path).rglob("*.jsonl") for line in f.read_text().splitlines()]


def _run_modes(layer, args, tmp_path, tol):
    """Run `layer(*args)` in off, shadow and on; return {mode: result} after the legacy checks."""
    legacy_args = _clone(args)
    legacy = layer._forward_method(*legacy_args)
    results = {}
    for mode in ("off", "shadow", "on"):
        call_args = _clone(args)
        with compat.override(dispatch=mode, report_dir=tmp_path / mode):
            got = layer(*call_args)
            compat.flush()
        results[mode] = got
        if mode == "on":
            _assert_close(got, legacy, f"{type(layer).__name__} on", *tol)
            _assert_close(call_args, legacy_args, f"{type(layer).__name__} on: inputs after the call", *tol)
        else:
            _assert_identical(got, legacy, f"{type(layer).__name__} {mode}")
            _assert_identical(call_args, legacy_args, f"{type(layer).__name__} {mode}: inputs after the call")
    return legacy, results


# ----------------------------------------------------------------- ported ops
def _rms64(x, w, eps, residual=None, gemma=False):
    x = x.double()
    if residual is not None:
        x = x + residual.double()
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * ((1.0 + w.double()) if gemma else w.double())


def _gated64(fn):
    def ref(x):
        d = x.shape[-1] // 2
        return fn(x[..., :d].double()) * x[..., d:].double()
    return ref


def _gelu_tanh(a):
    return 0.5 * a * (1 + torch.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a.pow(3))))


PORTED = {
    # id: (layer factory, args factory, float64 reference of the returned tensors)
    "rms_norm": (lambda m: m.layernorm.RMSNorm(H, eps=1e-5),
                 lambda dt: (_randn(T, H, dtype=dt),),
                 lambda layer, x: _rms64(x, layer.weight, 1e-5)),
    "rms_norm+residual": (lambda m: m.layernorm.RMSNorm(H, eps=1e-5),
                          lambda dt: (_randn(T, H, dtype=dt), _randn(T, H, dtype=dt, seed=1)),
                          lambda layer, x, r: (_rms64(x, layer.weight, 1e-5, r), x.double() + r.double())),
    "gemma_rms_norm": (lambda m: m.layernorm.GemmaRMSNorm(H, eps=1e-6),
                       lambda dt: (_randn(T, H, dtype=dt),),
                       lambda layer, x: _rms64(x, layer.weight, 1e-6, gemma=True)),
    "gemma_rms_norm+residual": (lambda m: m.layernorm.GemmaRMSNorm(H, eps=1e-6),
                                lambda dt: (_randn(T, H, dtype=dt), _randn(T, H, dtype=dt, seed=1)),
                                lambda layer, x, r: (_rms64(x, layer.weight, 1e-6, r, gemma=True),
                                                     x.double() + r.double())),
    "silu_and_mul": (lambda m: m.activation.SiluAndMul(), lambda dt: (_randn(T, 2 * H, dtype=dt),),
                     lambda layer, x: _gated64(F.silu)(x)),
    "mul_and_silu": (lambda m: m.activation.MulAndSilu(), lambda dt: (_randn(T, 2 * H, dtype=dt),),
                     lambda layer, x: F.silu(x[..., H:].double()) * x[..., :H].double()),
    "gelu_and_mul": (lambda m: m.activation.GeluAndMul(), lambda dt: (_randn(T, 2 * H, dtype=dt),),
                     lambda layer, x: _gated64(F.gelu)(x)),
    "gelu_and_mul[tanh]": (lambda m: m.activation.GeluAndMul(approximate="tanh"),
                           lambda dt: (_randn(T, 2 * H, dtype=dt),),
                           lambda layer, x: _gated64(_gelu_tanh)(x)),
    "fatrelu_and_mul": (lambda m: m.activation.FatreluAndMul(threshold=0.25),
                        lambda dt: (_randn(T, 2 * H, dtype=dt),),
                        lambda layer, x: _gated64(lambda a: torch.where(a > 0.25, a, 0.0))(x)),
    "relu2": (lambda m: m.activation.ReLUSquaredActivation(), lambda dt: (_randn(T, H, dtype=dt),),
              lambda layer, x: F.relu(x.double()).pow(2)),
}


class _Modules:
    from vllm.model_executor.layers import activation, layernorm  # noqa: F401


def _weights(layer, seed=3):
    with torch.no_grad():
        if hasattr(layer, "weight") and isinstance(layer.weight, torch.nn.Parameter):
            layer.weight.copy_(_randn(*layer.weight.shape, seed=seed) * 0.5 + (0 if "Gemma" in type(layer).__name__ else 1))
    return layer


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("custom_ops", ["none", "all"])
@pytest.mark.parametrize("case", list(PORTED))
def test_ported_vllm_layer_in_each_mode(vllm_base, case, custom_ops, dtype, tmp_path):
    make, make_args, reference = PORTED[case]
    with vllm_config(custom_ops), torch.inference_mode():
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # vLLM builds weights in the model dtype this way
        try:
            layer = _weights(make(_Modules))
        finally:
            torch.set_default_dtype(default)
        state = dispatch.state_of(type(layer))
        assert state.port is not None and state.op == type(layer).name
        args = make_args(dtype)
        legacy, results = _run_modes(layer, args, tmp_path, _tolerance(dtype))
        want = reference(layer, *args)
        _assert_close(results["on"], tuple(w.to(dtype) for w in _flat(want)), f"{case} on vs float64",
                      *_tolerance(dtype, twice=True))

    shadow = [r for r in _records(tmp_path / "shadow") if r.get("op") == state.op and r["kind"] in ("compare", "error")]
    assert len(shadow) == 1 and shadow[0]["kind"] == "compare", shadow
    rec = shadow[0]
    assert rec["passed"], rec["outputs"]
    assert rec["legacy"] in (dispatch.legacy_method_name(layer), state.legacy_method(layer))
    assert rec["ir"].split("/")[0] in {"rms_norm", "fused_add_rms_norm", "gemma_rms_norm",
                                       "gemma_fused_add_rms_norm", state.op}
    on_counts = [r for r in _records(tmp_path / "on") if r["kind"] == "counts" and r["op"] == state.op]
    assert sum(r["seen"] for r in on_counts) == 1
    assert not any(r["skipped"] for r in on_counts), on_counts  # the port ran: nothing refused


def _tolerance(dtype, twice=False):
    atol, rtol = {torch.float32: (1e-5, 1.3e-6), torch.bfloat16: (1.6e-2, 1.6e-2)}[dtype]
    return (2 * atol, 2 * rtol) if twice else (atol, rtol)


# ----------------------------------------------------------- refused calls
REFUSED = {
    "variance_size_override": lambda m: m.layernorm.RMSNorm(H, var_hidden_size=H // 2),
    "has_weight=False": lambda m: m.layernorm.RMSNorm(H, has_weight=False),
    "weight dtype": lambda m: m.layernorm.RMSNorm(H, dtype=torch.bfloat16),
}


@pytest.mark.parametrize("residual", [False, True], ids=["x", "x+residual"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_port_refuses_what_ir_ops_do_not_take(vllm_base, case, residual, tmp_path):
    with vllm_config("none"), torch.inference_mode():
        layer = _weights(REFUSED[case](_Modules))
        args = (_randn(T, H),) + ((_randn(T, H, seed=1),) if residual else ())
        legacy = layer._forward_method(*_clone(args))
        for mode in ("shadow", "on"):
            with compat.override(dispatch=mode, report_dir=tmp_path / mode):
                _assert_identical(layer(*_clone(args)), legacy, f"{case} {mode}")
                compat.flush()
            counts = [r for r in _records(tmp_path / mode) if r["kind"] == "counts" and r["op"] == "rms_norm"]
            assert sum(r["skipped"].get("port_refused", 0) for r in counts) == 1, counts


# ------------------------------------------- every registered CustomOp subclass
def _gs():
    from vllm.model_executor.layers.quantization.utils.quant_utils import GroupShape

    return GroupShape


# name -> (constructor kwargs or a factory, inputs factory or None when not called here)
RECIPES = {
    "apply_rotary_emb": (dict(is_neox_style=True), lambda: (_randn(T, 2, 16), _randn(T, 8, seed=1), _randn(T, 8, seed=2))),
    "conv2d": (dict(in_channels=3, out_channels=4, kernel_size=2, stride=2), lambda: (_randn(1, 3, 8, 8),)),
    "conv3d": (dict(in_channels=3, out_channels=4, kernel_size=2, stride=2), lambda: (_randn(1, 3, 4, 8, 8),)),
    "dual_chunk_rotary_embedding": (dict(head_size=16, rotary_dim=16, max_position_embeddings=64, base=10000.0,
                                         is_neox_style=True, dtype=torch.float32, chunk_size=32, local_size=8), None),
    "fatrelu_and_mul": (dict(threshold=0.25), lambda: (_randn(T, 2 * H),)),
    "fused_mm_input_norm": (dict(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3], rescale_factor=1 / 255),
                            lambda: (torch.randint(0, 256, (4, 3 * 16), generator=torch.Generator().manual_seed(0)).float(),
                                     torch.float32)),
    "fused_rms_norm_gated": (dict(hidden_size=H), lambda: (_randn(T, H), _randn(T, H, seed=1))),
    "gelu": ({}, lambda: (_randn(T, H),)),
    "gelu_and_mul": ({}, lambda: (_randn(T, 2 * H),)),
    "gelu_and_mul_sparse": (dict(activation_sparsity=0.5), lambda: (_randn(T, 2 * H),)),
    "gelu_fast": ({}, lambda: (_randn(T, H),)),
    "gelu_new": ({}, lambda: (_randn(T, H),)),
    "gelu_tanh": ({}, lambda: (_randn(T, H),)),
    "gemma_rms_norm": (dict(hidden_size=H), lambda: (_randn(T, H), _randn(T, H, seed=1))),
    "grouped_topk": (dict(topk=2, renormalize=True, num_expert_group=2, topk_group=1),
                     lambda: (_randn(T, H), _randn(T, 8, seed=1))),
    "hc_head": ({}, None),
    "layer_norm": (dict(hidden_size=H), lambda: (_randn(T, H),)),
    "mhc_fused_post_pre": ({}, None),
    "mhc_post": ({}, None),
    "mhc_pre": ({}, None),
    "mhc_pre_delayed": ({}, None),
    "minimax_text01_rmsnorm_tp": (dict(hidden_size=H), lambda: (_randn(T, H),)),
    "mixer2_gated_rms_norm": (dict(full_hidden_size=H, full_n_groups=1), lambda: (_randn(T, H), _randn(T, H, seed=1))),
    "mla_decode_concat_quant_fp8": (lambda: dict(static=True, group_shape=_gs().PER_TENSOR), None),
    "mul_and_silu": ({}, lambda: (_randn(T, 2 * H),)),
    "nemotron_layer_norm": (dict(hidden_size=H), lambda: (_randn(T, H), _randn(T, H, seed=1))),
    "quant_fp8": (lambda: dict(static=False, group_shape=_gs().PER_TOKEN), lambda: (_randn(T, H),)),
    "quick_gelu": ({}, lambda: (_randn(T, H),)),
    "relu2": ({}, lambda: (_randn(T, H),)),
    "rms_norm": (dict(hidden_size=H), lambda: (_randn(T, H), _randn(T, H, seed=1))),
    "rms_norm_gated": (dict(hidden_size=H), lambda: (_randn(T, H), _randn(T, H, seed=1))),
    "rotary_embedding": (dict(head_size=16, rotary_dim=16, max_position_embeddings=64, base=10000.0,
                              is_neox_style=True, dtype=torch.float32), None),
    "silu_and_mul": ({}, lambda: (_randn(T, 2 * H),)),
    "silu_and_mul_with_clamp": (dict(swiglu_limit=7.0), lambda: (_randn(T, 2 * H),)),
    "situ_and_mul": ({}, lambda: (_randn(T, 2 * H),)),
    "swigluoai_and_mul": ({}, lambda: (_randn(T, 2 * H),)),
    "swiglustep_and_mul": ({}, lambda: (_randn(T, 2 * H),)),
    "xielu": (dict(dtype=torch.float32), lambda: (_randn(T, H),)),
}

# Registered classes that cannot be built here, with a marker of the reason
# (checked, so a change in vLLM or in this set-up shows up).
NOT_CONSTRUCTIBLE_ON_CPU = {
    # __init__ binds torch.ops._C.<kernel> on CPU too; the PyPI wheel's vllm._C is
    # the CUDA build (vllm._C_AVX2/_C_AVX512, the CPU kernels, are not in it).
    "gelu_new": "'_C' object has no attribute 'gelu_new'",
    "gelu_fast": "'_C' object has no attribute 'gelu_fast'",
    "quick_gelu": "'_C' object has no attribute 'gelu_quick'",
    # __init__ allocates its cache on the accelerator.
    "dual_chunk_rotary_embedding": "Cannot access accelerator device",
    # Sharded over the tensor-parallel group, which only a vLLM worker initializes.
    "minimax_text01_rmsnorm_tp": "tensor model parallel group is not initialized",
    "mixer2_gated_rms_norm": "tensor model parallel group is not initialized",
    # Reads the model's HF config from the current VllmConfig (no model here).
    "chunk_gated_delta_rule": "hf_text_config",
    # Attention / MoE / indexer layers: built by a model from its attention
    # backend, KV cache and MoE config; not attempted without them.
    "hpc_rope_norm": "required positional argument",
    "mm_encoder_attn": "required positional argument",
    "static_sink_attention": "required positional argument",
    "sparse_attn_indexer": "required positional argument",
    "unquantized_fused_moe": "required positional argument",
    "modular_fused_moe": "required positional argument",
}


def _registered():
    return {name: cls for name, cls in sorted(custom_op.op_registry.items()) if issubclass(cls, custom_op.CustomOp)}


def _construct(name, cls):
    kwargs, _ = RECIPES.get(name, ({}, None))
    kwargs = kwargs() if callable(kwargs) else kwargs
    layer = cls(**kwargs)
    with torch.no_grad():  # some layers leave parameters uninitialized (torch.empty), like vLLM before loading
        for i, param in enumerate(layer.parameters()):
            if param.dtype.is_floating_point:
                param.copy_(_randn(*param.shape, dtype=param.dtype, seed=100 + i) * 0.1 + 1.0)
    return layer


SWEEP_RESULTS: dict[str, str] = {}


@pytest.mark.parametrize("custom_ops", ["none", "all"])
def test_every_registered_customop(vllm_base, custom_ops, tmp_path):
    """Build every registered CustomOp subclass; run those with inputs in every mode."""
    registered = _registered()
    assert len(registered) >= 40, sorted(registered)
    outcome = {}
    with vllm_config(custom_ops), torch.inference_mode():
        for name, cls in registered.items():
            try:
                layer = _construct(name, cls)
            except Exception as exc:  # noqa: BLE001 - recorded, then checked against the expected list
                outcome[name] = f"not constructible: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                continue
            state = dispatch.state_of(type(layer))
            assert state.op == name, (name, state.op)
            if state.port is None:
                op = state.auto
                assert op.providers["native"] == "forward_native"
            make_inputs = RECIPES.get(name, (None, None))[1]
            if make_inputs is None:
                outcome[name] = "constructed (no inputs recipe: not called)"
                continue
            args = make_inputs()
            try:
                layer._forward_method(*_clone(args))
            except Exception as exc:  # noqa: BLE001
                outcome[name] = f"constructed; legacy call fails on CPU: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                continue
            _run_modes(layer, args, tmp_path / name, (1e-5, 1.3e-6))
            outcome[name] = f"off/shadow/on via {'port' if state.port is not None else 'automatic op'} " \
                            f"(legacy {state.legacy_method(layer)})"
    SWEEP_RESULTS.update({f"{custom_ops}:{k}": v for k, v in outcome.items()})
    path = Path(compat.flags.current().report_dir) / f"vllm-sweep-{custom_ops}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outcome, indent=1))
    for name, marker in NOT_CONSTRUCTIBLE_ON_CPU.items():
        assert outcome[name].startswith("not constructible") and marker in outcome[name], (name, outcome[name])
    unexpected = {n: v for n, v in outcome.items() if v.startswith("not constructible") and n not in NOT_CONSTRUCTIBLE_ON_CPU}
    assert not unexpected, unexpected
    failing = {n: v for n, v in outcome.items() if "legacy call fails" in v}
    assert not failing, failing
    ran = sorted(n for n, v in outcome.items() if v.startswith("off/shadow/on"))
    for name in ("rms_norm", "gemma_rms_norm", "silu_and_mul", "mul_and_silu", "gelu_and_mul",
                 "fatrelu_and_mul", "relu2", "layer_norm", "gelu", "gelu_tanh", "swigluoai_and_mul"):
        assert name in ran, (name, outcome[name])


# ------------------------------------------------------------------- report
def test_report_of_a_vllm_shadow_run(vllm_base, tmp_path):
    with vllm_config("none"), torch.inference_mode():
        norm = _weights(_Modules.layernorm.RMSNorm(H))
        act = _Modules.activation.SiluAndMul()
        gelu = _Modules.activation.GELU()  # unported: automatic op
        with compat.override(dispatch="shadow", report_dir=tmp_path):
            for seed in range(4):
                x = _randn(T, H, seed=seed)
                norm(x)
                norm(x.clone(), _randn(T, H, seed=seed + 10))
                act(_randn(T, 2 * H, seed=seed))
                gelu(x)
            compat.flush()
    files = log_files(next(p for p in tmp_path.iterdir() if p.is_dir()))
    report = aggregate(files, jobs=1)
    ops = report["ops"]

    def total(op, key):
        return sum(b[key] for b in ops[op]["buckets"])

    assert total("rms_norm", "compared") == 8 and total("rms_norm", "mismatches") == 0
    assert total("rms_norm", "errors") == 0 and ops["rms_norm"]["port"] == "ported"
    assert ops["rms_norm"]["verdict"] in ("ready", "review")
    assert "vllm.model_executor.layers.layernorm.RMSNorm" in ops["rms_norm"]["classes"]
    assert total("silu_and_mul", "compared") == 4 and total("silu_and_mul", "mismatches") == 0
    # GELU with custom_ops none runs forward_native: its IR side would be the same code.
    assert ops["gelu"]["skipped"].get("same_code") == 4 and total("gelu", "compared") == 0
    assert ops["gelu"]["port"] == "automatic"
    for name in ("layer_norm", "quant_fp8", "rotary_embedding"):  # registered, never called
        assert ops[name]["verdict"] == "unseen", (name, ops[name]["verdict"])
