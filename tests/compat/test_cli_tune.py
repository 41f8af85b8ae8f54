"""`irshim tune` and the tuned choices in `irshim status`."""

from __future__ import annotations

import json

import pytest

from irshim.compat import cli


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IRSHIM_TUNE_CACHE", str(tmp_path))
    return tmp_path


def test_tune_measures_then_reuses_the_cache(cache, capsys):
    assert cli.main(["tune", "rms_norm", "--tokens", "1,100", "--hidden", "64", "--device", "cpu", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert [c["bucket"] for c in first] == ["x=bfloat16@cpu:T1x64,weight=bfloat16@cpu:64",
                                            "x=bfloat16@cpu:T128x64,weight=bfloat16@cpu:64"]
    assert all(c["source"] == "measured" and c["winner"] in c["times_us"] for c in first)
    assert json.loads((cache / "tune.json").read_text())  # written
    assert cli.main(["tune", "rms_norm", "--tokens", "1", "--hidden", "64", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "cached" in text and "x=bfloat16@cpu:T1x64" in text


def test_status_lists_tuned_choices_without_measuring(cache, capsys):
    assert cli.main(["tune", "silu_and_mul", "--tokens", "4", "--hidden", "32", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert cli.main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # hidden 32 is the output width of a gated op: its input is 64 wide.
    assert [(c["op"], c["bucket"]) for c in data["tuned_choices"]] == [("silu_and_mul", "x=bfloat16@cpu:T4x64")]


@pytest.mark.parametrize("argv, message", [
    (["tune", "no_such_op"], "no IR op 'no_such_op'"),
    (["tune", "rms_norm", "--tokens", "1,x"], "--tokens takes comma-separated integers"),
])
def test_tune_errors(cache, capsys, argv, message):
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err
