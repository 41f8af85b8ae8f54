"""The JSONL writer: one file per process, a shared run id, nothing lost or torn, failures survivable."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import irshim.compat as compat
from irshim.compat import records

WRITER = textwrap.dedent("""
    from irshim.compat.records import recorder
    counter = recorder.counter("silu_and_mul", "x", "shadow")
    for i in range({n}):
        # Records of varied length, and counters flushed as deltas with them.
        recorder.add({{"kind": "compare", "op": "probe", "cls": "x", "mode": "shadow", "i": i,
                       "pad": "y" * (i % 300)}})
        if i % 100 == 0:
            counter.compared += 1
""")


def test_concurrent_processes_lose_and_corrupt_nothing(tmp_path):
    n, procs = 3000, 4
    env = dict(os.environ, IRSHIM_DISPATCH="shadow", IRSHIM_REPORT_DIR=str(tmp_path), IRSHIM_RUN_ID="shared-run")
    running = [subprocess.Popen([sys.executable, "-c", WRITER.format(n=n)], env=env) for _ in range(procs)]
    assert all(p.wait(timeout=120) == 0 for p in running)
    files = list((tmp_path / "shared-run").glob("records-*.jsonl"))
    assert len(files) == procs
    by_pid: dict[int, list[int]] = {}
    compared = 0
    for f in files:
        for line in f.read_text().splitlines():
            rec = json.loads(line)  # every line parses: nothing torn
            assert rec["run"] == "shared-run" and rec["v"] == records.SCHEMA_VERSION
            if rec["kind"] == "compare" and rec["op"] == "probe":
                by_pid.setdefault(rec["pid"], []).append(rec["i"])
            if rec["kind"] == "counts" and rec["op"] == "silu_and_mul":
                compared += rec["compared"]
    assert len(by_pid) == procs
    assert all(sorted(v) == list(range(n)) for v in by_pid.values())
    assert compared == procs * (n // 100)


def test_run_id_is_shared_with_child_processes(monkeypatch):
    monkeypatch.delenv("IRSHIM_RUN_ID", raising=False)
    first = records.run_id()
    assert os.environ["IRSHIM_RUN_ID"] == first == records.run_id()


def test_unwritable_folder_warns_once_and_keeps_running(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rec = records.Recorder()
    with compat.override(report_dir=blocker / "reports"), caplog.at_level(logging.WARNING):
        for i in range(3):
            rec.add({"kind": "compare", "i": i})
            assert rec.flush() == 0
    assert sum("cannot write observation records" in r.message for r in caplog.records) == 1
    assert rec.dropped == 3


def test_memory_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "MAX_BUFFERED", 100)
    monkeypatch.setattr(records, "FLUSH_RECORDS", 10**9)
    with compat.override(report_dir=tmp_path):
        rec = records.Recorder()
        for i in range(250):
            rec.add({"kind": "compare", "i": i})
        assert len(rec._buffer) == 100 and rec.dropped == 150
        assert rec.flush() == 100
    lines = [json.loads(x) for f in Path(tmp_path).rglob("*.jsonl") for x in f.read_text().splitlines()]
    assert [r["i"] for r in lines] == list(range(150, 250))


def test_counts_are_deltas_between_flushes(tmp_path):
    with compat.override(report_dir=tmp_path):
        rec = records.Recorder()
        c = rec.counter("op", "cls", "shadow")
        c.seen += 5
        c.skip("sampling")
        rec.flush()
        c.seen += 2
        rec.flush()
        rec.flush()
    counts = [json.loads(x) for f in Path(tmp_path).rglob("*.jsonl") for x in f.read_text().splitlines()]
    assert [(r["seen"], r["skipped"]) for r in counts] == [(5, {"sampling": 1}), (2, {})]


def test_records_stay_in_the_folder_they_were_made_under(tmp_path):
    """Leaving an override block unflushed does not send its records (or counts) to the
    next folder: they are written to the block's folder when the setting changes."""
    first, second = tmp_path / "first", tmp_path / "second"
    with compat.override(report_dir=first):
        rec = records.Recorder()
        rec.add({"kind": "compare", "i": 0})
        rec.counter("op", "cls", "shadow").compared += 1
    with compat.override(report_dir=second):
        rec.add({"kind": "compare", "i": 1})
        rec.counter("op", "cls", "shadow").seen += 1
        with compat.override(dispatch="shadow"):  # another setting: nothing is written
            assert not list(second.rglob("*.jsonl"))
        rec.flush()

    def lines(folder):
        return [json.loads(x) for f in folder.rglob("*.jsonl") for x in f.read_text().splitlines()]

    assert [(r["kind"], r.get("i", r.get("compared"))) for r in lines(first)] == [("compare", 0), ("counts", 1)]
    assert [(r["kind"], r.get("i", r.get("seen"))) for r in lines(second)] == [("compare", 1), ("counts", 1)]


def test_a_folder_change_with_nothing_recorded_writes_nothing(tmp_path):
    rec = records.Recorder()
    rec.counter("op", "cls", "shadow")  # counted nothing yet
    with compat.override(report_dir=tmp_path / "a"):
        pass
    assert not list(tmp_path.rglob("*"))


def test_a_process_that_observed_nothing_leaves_no_folder(tmp_path):
    """`off` (the default) records nothing, so its exit flush writes no file (no lone "ops" record)."""
    script = "import torch; from irshim.compat.layers import RMSNorm; RMSNorm(8)(torch.randn(2, 8))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRSHIM_")}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True, timeout=120)
    assert not list(tmp_path.iterdir())
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=dict(env, IRSHIM_DISPATCH="shadow"),
                   check=True, timeout=120)
    assert [p.name for p in tmp_path.iterdir()] == ["migration_reports"]


def test_non_finite_figures_are_written_as_null(tmp_path):
    with compat.override(report_dir=tmp_path):
        rec = records.Recorder()
        rec.add({"kind": "compare", "op": "op", "outputs": [{"max_abs": float("inf"), "max_rel": float("nan"),
                                                             "n_outside": 3}], "legacy_us": 1.5, "shape": (2, 3)})
        rec.add({"kind": "compare", "op": "op", "outputs": [{"max_abs": 0.25}], "ir_us": 2.0})
        rec.flush()
    lines = [json.loads(x) for f in Path(tmp_path).rglob("*.jsonl") for x in f.read_text().splitlines()]
    compares = [r for r in lines if r["kind"] == "compare"]
    assert compares[0]["outputs"] == [{"max_abs": None, "max_rel": None, "n_outside": 3}]
    assert compares[0]["legacy_us"] == 1.5 and compares[0]["shape"] == [2, 3]
    assert compares[1]["outputs"] == [{"max_abs": 0.25}] and compares[1]["ir_us"] == 2.0
