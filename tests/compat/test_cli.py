"""The `irshim` command: help texts, errors that say what to do, report/scan/status end to end."""

from __future__ import annotations

import io
import json
import os
import textwrap
from pathlib import Path

import pytest

from irshim.compat import cli
from irshim.compat.records import SCHEMA_VERSION


def _record(kind, op="rms_norm", **fields):
    return {"v": SCHEMA_VERSION, "run": "r1", "pid": 7, "ts": 1.0, "kind": kind, "op": op,
            "cls": f"layers.{op}", "mode": "shadow", **fields}


def _compare(op="rms_norm", passed=True, tokens=4):
    out = {"name": "out0", "max_abs": 0.0 if passed else 1.0, "max_rel": 0.0, "n_outside": 0 if passed else 5,
           "nonfinite_mismatch": False, "atol": 1e-2, "rtol": 1.6e-2, "passed": passed}
    args = [{"shape": [tokens, 64], "dtype": "bfloat16", "stride": [64, 1], "device": "cpu"}]
    return _record("compare", op, legacy="forward_cpu", ir=f"{op}/native", signature={"args": args, "kwargs": {}},
                   outputs=[out], passed=passed, legacy_us=10.0, ir_us=10.0)


def _write_run(base: Path, run: str, records: list[dict], extra: str = "") -> Path:
    folder = base / run
    folder.mkdir(parents=True)
    (folder / "records-h-7.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + extra)
    return folder


@pytest.fixture
def report_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("IRSHIM_REPORT_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


# ---------------------------------------------------------------------- help
def test_help_lists_every_command_and_the_workflow(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for command in ("report", "status", "scan", "demo"):
        assert command in text
    assert "IRSHIM_DISPATCH=shadow" in text and "irshim demo" in text


@pytest.mark.parametrize("command,words", [
    ("report", ["--run", "--logs", "--out", "ready", "blocked", "unseen", "--fail-on"]),
    ("status", ["providers", "priority", "--tokens", "--json"]),
    ("scan", ["MODULE", "forward_*", "ported or automatic", "--recursive"]),
    ("demo", ["SiluAndMul", "RMSNorm", "--steps", "--device"]),
])
def test_subcommand_help(capsys, command, words):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in words:
        assert word in text, word


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "--run", "a", "--logs", "b"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2


# -------------------------------------------------------------------- report
def test_report_without_logs_says_what_to_do(capsys, report_dir):
    rc, _, err = run_cli(capsys, "report")
    assert rc == 1
    assert "nothing to report" in err and "IRSHIM_DISPATCH=shadow" in err and "irshim demo" in err


def test_report_bad_paths(capsys, report_dir):
    rc, _, err = run_cli(capsys, "report", "--logs", str(report_dir / "missing"))
    assert rc == 1 and "no such file or folder" in err
    (report_dir / "empty").mkdir()
    rc, _, err = run_cli(capsys, "report", "--logs", str(report_dir / "empty"))
    assert rc == 1 and "no records-*.jsonl" in err
    _write_run(report_dir, "known-run", [_compare()])
    rc, _, err = run_cli(capsys, "report", "--run", "nope")
    assert rc == 1 and "--run nope: no logs" in err and "known-run" in err


def test_report_on_logs_without_records(capsys, report_dir):
    _write_run(report_dir, "r1", [], extra="{garbage\n")
    rc, _, err = run_cli(capsys, "report", "--run", "r1")
    assert rc == 1
    assert "hold no observation records (1 bad line(s) skipped)" in err and "IRSHIM_DISPATCH=shadow" in err


def test_report_latest_run_writes_three_files(capsys, report_dir):
    old = _write_run(report_dir, "old", [_compare("silu_and_mul")])
    os.utime(old / "records-h-7.jsonl", (1, 1))
    new = _write_run(report_dir, "new", [_compare() for _ in range(16)] + [{"v": SCHEMA_VERSION, "kind": "x"}])
    rc, out, _ = run_cli(capsys, "report")
    assert rc == 0
    assert sorted(p.name for p in new.iterdir()) == ["records-h-7.jsonl", "report.html", "report.json", "report.md"]
    assert not (old / "report.json").exists()
    assert "verdicts: 1 ready, 0 review, 0 blocked, 0 unseen" in out
    assert "1 bad line(s) skipped" in out
    assert "new/report.html" in out


def test_report_out_thresholds_and_fail_on(capsys, report_dir):
    logs = _write_run(report_dir, "r1", [_compare() for _ in range(3)] + [_compare("silu_and_mul", passed=False)])
    out_dir = report_dir / "elsewhere"
    rc, out, err = run_cli(capsys, "report", "--logs", str(logs), "--out", str(out_dir), "--min-compared", "3",
                           "--fail-on", "blocked")
    assert rc == 3 and "--fail-on blocked: silu_and_mul" in err
    result = json.loads((out_dir / "report.json").read_text())
    assert result["thresholds"]["min_compared"] == 3
    assert result["ops"]["rms_norm"]["verdict"] == "ready"
    assert result["ops"]["silu_and_mul"]["verdict"] == "blocked"
    rc, _, _ = run_cli(capsys, "report", "--logs", str(logs / "records-h-7.jsonl"), "--fail-on", "review")
    assert rc == 3  # rms_norm has 3 < 16 compared calls: review
    assert (logs / "report.md").exists()


def test_progress_bar_lines_when_not_a_terminal():
    stream = io.StringIO()
    bar = cli._Progress(stream=stream)
    total = 100 << 20
    for done in range(0, total + 1, total // 20):
        bar(done, total)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["0%", "25%", "50%", "75%", "100%"]
    quiet = io.StringIO()
    cli._Progress(stream=quiet)(1, 1000)  # small logs: no bar
    assert quiet.getvalue() == ""


# ---------------------------------------------------------------------- scan
def test_scan_lists_classes_ports_and_verdicts(capsys, report_dir):
    folder = report_dir / "run1"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"ops": {"rms_norm": {"verdict": "ready"}}}))
    rc, out, _ = run_cli(capsys, "scan", "irshim.compat.layers")
    assert rc == 0
    row = next(line for line in out.splitlines() if line.startswith("rms_norm "))
    assert row.split() == ["rms_norm", "irshim.compat.layers.layernorm.RMSNorm", "native,cuda", "ported", "ready"]
    from irshim.compat import layers

    n = len(layers.__all__)  # every shipped layer is ported
    assert f"{n} CustomOp class(es): {n} ported, 0 automatic" in out


def test_scan_a_file_with_an_unported_class(capsys, report_dir):
    source = report_dir / "my_layers.py"
    source.write_text(textwrap.dedent("""
        from irshim.compat import CustomOp

        class MyQuant(CustomOp):  # not registered: named after the class
            def forward_native(self, x):
                return x
            def forward_cuda(self, x):
                return x
            def forward_xpu(self, x):
                return x

        class NotAnOp:
            pass
    """))
    rc, out, _ = run_cli(capsys, "scan", str(source), "--json")
    assert rc == 0
    [found] = json.loads(out)["classes"]
    assert found["cls"] == "my_layers.MyQuant" and found["port"] == "automatic"
    assert found["overrides"] == ["forward_native", "forward_cuda", "forward_xpu"]
    assert found["name"] == "(unregistered)" and found["base"] == "irshim.compat.custom_op.CustomOp"


def test_scan_import_errors(capsys, report_dir):
    rc, _, err = run_cli(capsys, "scan", "no_such_module_xyz")
    assert rc == 1
    assert "cannot import no_such_module_xyz: ModuleNotFoundError" in err and "no module could be imported" in err
    rc, out, err = run_cli(capsys, "scan", "no_such_module_xyz", "json")  # one good module, one bad
    assert rc == 0 and "no CustomOp subclasses in" in out


# -------------------------------------------------------------------- status
def test_status_json(capsys, report_dir):
    rc, out, _ = run_cli(capsys, "status", "--json", "--tokens", "3", "--hidden", "64", "--dtype", "float32")
    assert rc == 0
    data = json.loads(out)
    assert data["dispatch"] in ("off", "shadow", "on") and data["device_family"] in ("cpu", "cuda", "rocm", "xpu")
    ops = {op["op"]: op for op in data["ir_ops"]}
    rms = ops["rms_norm"]
    assert rms["chosen"] in rms["priority"] and rms["priority"][-1] in ("native", "triton")
    assert {p for p, _ in rms["verdicts"]} >= {"native"}
    assert data["typical_input"] == {"num_tokens": 3, "hidden_size": 64, "dtype": "float32",
                                     "device": data["typical_input"]["device"]}
    classes = {c["op"]: c for c in data["custom_ops"]}
    assert classes["rms_norm"]["port"] == "ported"
    assert classes["rms_norm"]["ir_ops"] == ["fused_add_rms_norm", "rms_norm"]


def test_status_text(capsys, report_dir):
    rc, out, _ = run_cli(capsys, "status", "--hidden", "64")
    assert rc == 0
    assert "IRSHIM_DISPATCH" in out and "CustomOp classes:" in out
    assert "\n  rms_norm: " in out and "    dispatch  " in out
