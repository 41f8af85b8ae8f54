"""`irshim demo`: the model runs in shadow mode without changing its outputs, and yields a full report."""

from __future__ import annotations

import json

import torch

from irshim.compat import cli, records
from irshim.compat import report as rp
from irshim.compat.demo import DemoConfig, DemoLlama, run_demo


def test_demo_model_is_deterministic():
    cfg = DemoConfig(num_layers=1, vocab_size=64, hidden_size=32, num_heads=4, num_kv_heads=2, intermediate_size=48)
    a, b = DemoLlama(cfg, torch.float32), DemoLlama(cfg, torch.float32)
    ids, positions = torch.tensor([1, 5, 9]), torch.arange(3)
    with torch.no_grad():
        assert torch.equal(a(ids, positions), b(ids, positions))


def test_run_demo_shadow_is_bit_identical_and_logs_every_call(tmp_path):
    records.recorder.flush()  # records other tests left buffered are not the demo's
    run = run_demo(steps=3, layers=2, report_dir=tmp_path, run_id="demo-test", log=lambda text: None)
    assert run.identical is True and run.max_logit_diff == 0.0
    assert run.logs == tmp_path / "demo-test"
    result = rp.aggregate(rp.log_files(run.logs))
    ops = result["ops"]
    # Per pass: 2 norms per layer + the final one; one SiluAndMul per layer.
    assert ops["rms_norm"]["compared"] == 3 * (2 * 2 + 1)
    assert ops["silu_and_mul"]["compared"] == 3 * 2
    assert ops["rms_norm"]["mismatches"] == ops["rms_norm"]["errors"] == 0
    assert ops["silu_and_mul"]["mismatches"] == ops["silu_and_mul"]["errors"] == 0
    assert ops["rms_norm"]["port"] == "ported"
    assert {b["tokens"] for b in ops["silu_and_mul"]["buckets"]} == {"1", "5-8", "9-16"}
    assert result["verdicts"]["unseen"] >= 1  # registered layers the model does not use


def test_demo_command_writes_the_report(capsys, tmp_path):
    records.recorder.flush()
    rc = cli.main(["demo", "--steps", "2", "--layers", "1", "--report-dir", str(tmp_path), "--run", "demo-cli"])
    out = capsys.readouterr().out
    assert rc == 0
    folder = tmp_path / "demo-cli"
    assert {p.name for p in folder.iterdir()} >= {"report.md", "report.json", "report.html"}
    assert "bit-identical to irshim off" in out and "report.html in a browser" in out
    result = json.loads((folder / "report.json").read_text())
    assert result["runs"] == ["demo-cli"]
    assert result["context"]["device"].startswith("CPU ") and result["context"]["shadow outputs"] == (
        "bit-identical to irshim off")
    assert "Context: source: irshim demo (1-layer" in (folder / "report.md").read_text()
