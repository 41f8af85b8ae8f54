"""Autotuning on the CPU with providers of known, different cost.

The ops live in a module written to a temporary folder so that a second
process can import the very same code (and a test can change its source).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import irshim.ir as ir
from irshim.ir import autotune, priority
from irshim.ir.errors import ConfigError

# Costs: `small_fast` is fast up to 16 tokens and slow above; `big_fast` the
# reverse; `wrong` is fastest everywhere but computes x instead of 2x; native
# always sleeps 2 ms. Sleeps dominate timings by 10x or more.
OPS_SOURCE = '''
import time
import torch
from torch import Tensor
import irshim.ir as ir

SLOW = 0.004

@ir.register_op(name="{name}")
def {name}(x: Tensor) -> Tensor:
    time.sleep(0.002)
    return x * 2

def _tokens(x):
    return x.numel() // x.shape[-1]

@{name}.register_impl("small_fast")
def small_fast(x: Tensor) -> Tensor:
    if _tokens(x) > 16:
        time.sleep(SLOW)
    return x + x

@{name}.register_impl("big_fast")
def big_fast(x: Tensor) -> Tensor:
    if _tokens(x) <= 16:
        time.sleep(SLOW)
    return 2 * x

@{name}.register_impl("wrong")
def wrong(x: Tensor) -> Tensor:
    return x

@{name}.register_input_generator
def _inputs(num_tokens, hidden_size, dtype, device="cpu"):
    return (torch.randn(num_tokens, hidden_size, dtype=dtype, device=device),)
'''

_count = iter(range(10_000))


@pytest.fixture
def tune_env(tmp_path, monkeypatch):
    """A fresh tuning cache folder and a fresh module of test ops; yields (op, module dir)."""
    monkeypatch.setenv("IRSHIM_TUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("IRSHIM_TUNE", raising=False)
    name = f"_tune_op_{os.getpid()}_{next(_count)}"
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / f"{name}_mod.py").write_text(OPS_SOURCE.format(name=name))
    monkeypatch.syspath_prepend(str(module_dir))
    __import__(f"{name}_mod")
    autotune.stats.clear()
    return ir.get_op(name), module_dir


def _run_in_new_process(module_dir, op_name, tokens, env_extra=None):
    """Import the ops in a new process, call the op under `auto`, print its choice and stats."""
    code = textwrap.dedent(f"""
        import json, sys, torch
        sys.path.insert(0, {str(module_dir)!r})
        import {op_name}_mod
        import irshim.ir as ir
        from irshim.ir import autotune
        op = ir.get_op({op_name!r})
        with op.set_priority(["auto"]):
            x = torch.randn({tokens}, 8)
            choice = op.dispatch(x).provider
        print(json.dumps({{"choice": choice, "stats": dict(autotune.stats)}}))
    """)
    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fastest_valid_provider_wins_per_bucket(tune_env):
    op, _ = tune_env
    with op.set_priority(["auto"]):
        assert op.get_priority() == ["auto"]
        assert op.dispatch(torch.randn(4, 8)).provider == "small_fast"
        assert op.dispatch(torch.randn(100, 8)).provider == "big_fast"
        # Buckets round tokens up to a power of two: 100 and 128 share T128, 3 and 4 share T4.
        assert op.dispatch(torch.randn(128, 8)).provider == "big_fast"
        out = op(torch.ones(3, 8))
    assert out.tolist() == [[2.0] * 8] * 3
    assert autotune.stats["measured"] == 2 and autotune.stats["memory_hits"] == 2


def test_wrong_but_fast_is_disqualified_with_reason(tune_env):
    op, _ = tune_env
    choice = autotune.tune(op, (torch.randn(4, 8),))
    assert choice.winner == "small_fast"
    assert "wrong" not in choice.times_us
    assert choice.disqualified["wrong"].startswith("output 0: ")
    assert "outside tolerance" in choice.disqualified["wrong"]
    assert set(choice.times_us) == {"native", "small_fast", "big_fast"}
    assert choice.times_us["small_fast"] < choice.times_us["native"] < choice.times_us["big_fast"]


def test_listed_candidates_limit_the_choice(tune_env):
    op, _ = tune_env
    with op.set_priority(["auto", "big_fast", "native"]):
        assert op.dispatch(torch.randn(4, 8)).provider == "native"  # small_fast not a candidate


def test_cache_reused_by_a_new_process_and_invalidated_by_a_source_change(tune_env):
    op, module_dir = tune_env
    first = _run_in_new_process(module_dir, op.name, 4)
    assert first["choice"] == "small_fast" and first["stats"].get("measured") == 1
    second = _run_in_new_process(module_dir, op.name, 4)
    assert second["choice"] == "small_fast"
    assert second["stats"].get("disk_hits") == 1 and "measured" not in second["stats"]
    source = module_dir / f"{op.name}_mod.py"
    source.write_text(source.read_text().replace("SLOW = 0.004", "SLOW = 0.005"))
    third = _run_in_new_process(module_dir, op.name, 4)
    assert third["choice"] == "small_fast" and third["stats"].get("measured") == 1


def test_tune_off_uses_cached_choices_only(tune_env, monkeypatch):
    op, module_dir = tune_env
    off = _run_in_new_process(module_dir, op.name, 4, {"IRSHIM_TUNE": "off"})
    assert off["choice"] == "native" and off["stats"] == {"fallback_tune_off": 1}
    _run_in_new_process(module_dir, op.name, 4)  # tunes and caches
    cached = _run_in_new_process(module_dir, op.name, 4, {"IRSHIM_TUNE": "off"})
    assert cached["choice"] == "small_fast" and cached["stats"] == {"disk_hits": 1}


def test_concurrent_tuning_processes_leave_a_valid_cache(tune_env):
    op, module_dir = tune_env
    code = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(module_dir)!r})
        import {op.name}_mod
        import irshim.ir as ir
        op = ir.get_op({op.name!r})
        with op.set_priority(["auto"]):
            op.dispatch(torch.randn(int(sys.argv[1]), 8))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tokens)]) for tokens in (2, 16, 64, 256, 1024)]
    assert [p.wait(timeout=180) for p in procs] == [0] * 5
    entries = autotune.TuneCache().entries()  # parses: the file is valid JSON
    mine = {k: v for k, v in entries.items() if f"|{op.name}|" in k}
    assert len(mine) == 5
    winners = sorted(v["winner"] for v in mine.values())
    assert winners == ["big_fast", "big_fast", "big_fast", "small_fast", "small_fast"]


def test_tracing_falls_back_to_the_static_order_without_measuring(tune_env):
    from torch.fx.experimental.proxy_tensor import make_fx

    op, _ = tune_env
    chosen = []

    def fn(x):  # code that selects a provider while make_fx traces it
        impl = op.dispatch(x)
        chosen.append(impl.provider)
        return impl.impl_fn(x)

    with op.set_priority(["auto", "big_fast", "native"]):
        make_fx(fn)(torch.ones(2, 8))
    assert chosen == ["big_fast"]
    assert autotune.stats == {"fallback_tracing": 1}


def test_lowering_chooses_for_the_nodes_shapes(tune_env):
    from irshim.ir import compile as irc

    op, _ = tune_env
    torch._dynamo.reset()
    with op.set_priority(["auto"]):
        fn = torch.compile(lambda x: op(x) + 1, backend=irc.backend(inner="aot_eager"), fullgraph=True)
        assert fn(torch.ones(64, 8)).tolist() == [[3.0] * 8] * 64
    assert [(s.op, s.provider) for s in irc.last_lowering()] == [(op.name, "big_fast")]
    assert autotune.stats["measured"] == 1


def test_bad_tune_flag(tune_env, monkeypatch):
    op, _ = tune_env
    monkeypatch.setenv("IRSHIM_TUNE", "maybe")
    with op.set_priority(["auto"]):
        with pytest.raises(ConfigError, match="IRSHIM_TUNE='maybe' is invalid"):
            op.dispatch(torch.randn(4, 8))


def test_auto_in_env_priority(tune_env, monkeypatch):
    op, _ = tune_env
    monkeypatch.setenv(priority.ENV_VAR, f"{op.name}=auto")
    priority.reload_env()
    assert op.get_priority() == ["auto"] and op.dispatch(torch.randn(2, 8)).provider == "small_fast"


def test_buckets():
    from irshim.ir.autotune import default_bucket

    op = ir.ops.rms_norm
    w = torch.ones(64)
    b100 = default_bucket(op, (torch.zeros(100, 64), w, 1e-6), {})
    assert b100 == "x=float32@cpu:T128x64,weight=float32@cpu:64"
    assert default_bucket(op, (torch.zeros(2, 64, 64), w, 1e-5), {}) == b100  # 128 tokens, eps ignored
    assert default_bucket(op, (torch.zeros(129, 64), w, 1e-6), {}) != b100
    assert default_bucket(op, (torch.zeros(100, 64), None, 1e-6), {}).endswith("weight=None")
    gelu = default_bucket(ir.ops.gelu_and_mul, (torch.zeros(3, 8, dtype=torch.bfloat16), "tanh"), {})
    assert gelu == "x=bfloat16@cpu:T4x8,approximate='tanh'"


def test_cuda_graph_capture_falls_back_without_measuring(tune_env, monkeypatch):
    # A CPU stand-in for capture: the check irshim makes reports a capture in progress.
    from irshim.ir import op as op_module

    op, _ = tune_env
    monkeypatch.setattr(op_module, "capturing_cuda_graph", lambda: True)
    with op.set_priority(["auto", "small_fast", "native"]):
        assert op.dispatch(torch.randn(64, 8)).provider == "small_fast"  # the static order
    assert autotune.stats == {"fallback_cuda_graph_capture": 1}
    assert autotune.TuneCache().entries() == {}


@pytest.mark.cuda
def test_real_cuda_graph_capture_falls_back(tune_env):
    op, _ = tune_env
    x = torch.randn(64, 8, device="cuda")
    graph = torch.cuda.CUDAGraph()
    with op.set_priority(["auto", "big_fast", "native"]):
        with torch.cuda.graph(graph):
            chosen = op.dispatch(x).provider
    assert chosen == "big_fast" and autotune.stats == {"fallback_cuda_graph_capture": 1}


def test_bucket_function_is_overridable_per_op(tune_env, monkeypatch):
    op, _ = tune_env
    monkeypatch.setattr(op, "tuning_bucket", lambda op, args, kwargs: "one bucket", raising=False)
    with op.set_priority(["auto"]):
        first = op.dispatch(torch.randn(4, 8)).provider
        assert op.dispatch(torch.randn(1000, 8)).provider == first  # same bucket: no new measurement
    assert autotune.stats["measured"] == 1 and autotune.stats["memory_hits"] == 1
