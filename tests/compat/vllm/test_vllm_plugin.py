"""The `vllm.general_plugins` entry point, as vLLM loads it, in fresh processes.

Each test starts Python processes that call vLLM's own
`vllm.plugins.load_general_plugins()` (what every vLLM process does at
start-up), so nothing of this test process leaks in. Two "workers" share one
run id, as vLLM's worker processes do, and the report aggregates both files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

pytest.importorskip("vllm.plugins", reason="vLLM is not installed (scripts/bootstrap.py test installs it)")

WORKER = r"""
import json, logging, os, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
for noisy in ("vllm", "torch", "urllib3", "filelock", "asyncio"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
from vllm.plugins import load_general_plugins
load_general_plugins()
mods_after_plugins = sorted(m for m in sys.modules if m.startswith("irshim"))
import torch
from vllm.config import CompilationConfig, VllmConfig, set_current_vllm_config
from vllm.config.compilation import CompilationMode
from vllm.model_executor.custom_op import CustomOp
import wrapt
cfg = VllmConfig(compilation_config=CompilationConfig(mode=CompilationMode.NONE, custom_ops=["none"]))
with set_current_vllm_config(cfg), torch.inference_mode():
    from vllm.model_executor.layers.layernorm import RMSNorm
    from vllm.model_executor.layers.activation import SiluAndMul
    norm, act = RMSNorm(32), SiluAndMul()
    g = torch.Generator().manual_seed(int(sys.argv[1]))
    x = torch.randn(4, 32, generator=g)
    same = [torch.equal(norm(x), norm._forward_method(x)), torch.equal(act(torch.cat([x, x], -1)),
            act._forward_method(torch.cat([x, x], -1)))]
if "irshim.compat" in sys.modules:
    sys.modules["irshim.compat"].flush()
print(json.dumps({"irshim_modules": mods_after_plugins, "same": same,
                  "wrapped": isinstance(CustomOp.__dict__["forward"], wrapt.FunctionWrapper),
                  "run_id": os.environ.get("IRSHIM_RUN_ID")}))
"""


def _worker(env_extra: dict[str, str], seed: int, tmp_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRSHIM_")}
    env.update(VLLM_TARGET_DEVICE="cpu", IRSHIM_REPORT_DIR=str(tmp_path), **env_extra)
    # cwd: not the repository root, whose kernels/ folder would pass for a top-level
    # `kernels` package (see conftest.py).
    return subprocess.Popen([sys.executable, "-c", WORKER, str(seed)], env=env, text=True, cwd=tmp_path.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _result(proc) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1]), err


def test_entry_point_is_declared():
    found = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert found.get("irshim") == "irshim.compat.vllm_plugin:register"


def test_plugin_off_does_nothing_and_says_so(tmp_path):
    result, err = _result(_worker({}, 0, tmp_path))
    # Only the plugin module and the lazy package itself: no flags, ir, torch work of irshim's.
    assert result["irshim_modules"] == ["irshim", "irshim.compat", "irshim.compat.vllm_plugin"]
    assert result["wrapped"] is False and result["same"] == [True, True]
    assert "IRSHIM_DISPATCH is off" in err
    assert not any(tmp_path.iterdir())  # no records


def test_plugin_shadow_in_two_workers_one_run(tmp_path):
    run = "vllm-plugin-test-run"
    procs = [_worker({"IRSHIM_DISPATCH": "shadow", "IRSHIM_RUN_ID": run}, seed, tmp_path) for seed in (1, 2)]
    results = [_result(p) for p in procs]
    for result, err in results:
        assert result["wrapped"] is True and result["same"] == [True, True]
        assert result["run_id"] == run
        assert "intercepting vllm.model_executor.custom_op.CustomOp" in err
    files = sorted((tmp_path / run).glob("*.jsonl"))
    assert len(files) == 2  # one per process

    from irshim.compat.report import aggregate

    report = aggregate(files, jobs=1)
    assert report["processes"] == 2 and report["runs"] == [run]
    for op in ("rms_norm", "silu_and_mul"):
        buckets = report["ops"][op]["buckets"]
        assert sum(b["compared"] for b in buckets) == 2 and sum(b["mismatches"] for b in buckets) == 0


def test_plugin_rejects_a_malformed_setting(tmp_path):
    proc = _worker({"IRSHIM_DISPATCH": "shadwo"}, 0, tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "IRSHIM_DISPATCH" in err and "shadwo" in err
