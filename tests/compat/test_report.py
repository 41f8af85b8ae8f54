"""`irshim report`'s aggregation: exact figures and verdicts from hand-written records,
bad lines counted, ranges and workers giving the same result, a 1M-record log in time."""

from __future__ import annotations

import json
import pickle
import random
import re
import resource
import time
from pathlib import Path

import pytest

from irshim.compat import report as rp
from irshim.compat.records import SCHEMA_VERSION


# ----------------------------------------------------------- record makers
def tensor(shape, dtype="bfloat16", stride=None):
    if stride is None:
        stride, step = [], 1
        for size in reversed(shape):
            stride.insert(0, step)
            step *= size
    return {"shape": list(shape), "dtype": dtype, "stride": stride, "device": "cpu"}


def common(pid=1, run="run-a", ts=1000.0):
    return {"v": SCHEMA_VERSION, "run": run, "pid": pid, "ts": ts}


def compare(op, args, max_abs=0.0, max_rel=0.0, passed=True, legacy_us=10.0, ir_us=9.0, n_outside=0,
            legacy="forward_cpu", ir=None, cls=None, outputs=None, **extra):
    out = {"name": "out0", "shape": [1], "dtype": "bfloat16", "numel": 1, "max_abs": max_abs, "max_rel": max_rel,
           "n_outside": n_outside, "nonfinite_mismatch": False, "atol": 1e-2, "rtol": 1.6e-2, "passed": passed}
    return {**common(**extra), "kind": "compare", "op": op, "cls": cls or f"layers.{op}", "mode": "shadow",
            "legacy": legacy, "ir": ir or f"{op}/native", "signature": {"args": args, "kwargs": {}},
            "outputs": outputs if outputs is not None else [out], "passed": passed,
            "legacy_us": legacy_us, "ir_us": ir_us}


def error(op, args, etype="RuntimeError", message="boom", where="ports/x.py:3", **extra):
    return {**common(**extra), "kind": "error", "op": op, "cls": f"layers.{op}", "mode": "shadow",
            "legacy": "forward_cpu", "ir": f"{op}/native", "signature": {"args": args, "kwargs": {}},
            "error": {"type": etype, "message": message, "where": where}, "legacy_us": 5.0}


def counts(op, seen, compared, skipped=None, mode="shadow", **extra):
    return {**common(**extra), "kind": "counts", "op": op, "cls": f"layers.{op}", "mode": mode,
            "seen": seen, "compared": compared, "skipped": skipped or {}}


def ops_record(entries, **extra):
    return {**common(**extra), "kind": "ops",
            "ops": [{"op": op, "cls": f"layers.{op}", "port": port} for op, port in entries]}


def write_log(path: Path, records, tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def rms_args(tokens, hidden=64):
    return [tensor([tokens, hidden]), tensor([hidden]), 1e-6]


# ------------------------------------------------------------- the fixture log
def build_logs(folder: Path) -> list[Path]:
    """Two processes; every figure asserted below follows from these lines."""
    a = [ops_record([("rms_norm", "ported"), ("silu_and_mul", "automatic"), ("gelu_and_mul", "automatic"),
                     ("fused_add_rms_norm", "ported"), ("mul_and_silu", "automatic")], ts=1000.0)]
    # rms_norm: 16 calls at 8 tokens, 4 at 100 tokens; all pass; IR 0.9x; worst abs at call 17.
    for i in range(20):
        tokens = 8 if i < 16 else 100
        a.append(compare("rms_norm", rms_args(tokens), max_abs=0.004 if i == 17 else 1e-4 * (i % 5),
                         max_rel=0.002 if i == 3 else 1e-4, legacy_us=10.0, ir_us=9.0, ts=1000.0 + i))
    a.append(counts("rms_norm", seen=25, compared=20, skipped={"sampling": 5}))
    # silu_and_mul: 16 passing calls, IR 1.2x slower -> review.
    for i in range(16):
        a.append(compare("silu_and_mul", [tensor([3, 256])], legacy_us=10.0, ir_us=12.0))
    # fused_add_rms_norm: 4 passing, 1 mismatch (with a note), 1 error -> blocked.
    fa_args = [tensor([7, 64]), tensor([7, 64]), tensor([64]), 1e-6]
    for i in range(4):
        a.append(compare("fused_add_rms_norm", fa_args, max_abs=1e-3, legacy_us=20.0, ir_us=10.0,
                         ir="fused_add_rms_norm/triton"))
    bad_outputs = [
        {"name": "out0", "shape": [7, 64], "dtype": "bfloat16", "numel": 448, "max_abs": 0.5, "max_rel": 0.25,
         "n_outside": 3, "nonfinite_mismatch": False, "atol": 1e-2, "rtol": 1.6e-2, "passed": False},
        {"name": "mutated:residual", "passed": False, "note": "IR shape [7] != legacy [7, 64]"},
    ]
    a.append(compare("fused_add_rms_norm", fa_args, passed=False, outputs=bad_outputs, legacy_us=20.0, ir_us=10.0,
                     ir="fused_add_rms_norm/triton"))
    a.append(error("fused_add_rms_norm", fa_args, message="shape mismatch"))
    a.append(counts("fused_add_rms_norm", seen=6, compared=6))
    # mul_and_silu: 15 passing fast calls: one short of ready.
    for i in range(15):
        a.append(compare("mul_and_silu", [tensor([1, 32], "float32")], legacy_us=4.0, ir_us=2.0))
    a.append(counts("mul_and_silu", seen=15, compared=15))
    # quant_fp8: seen in mode off, never compared (and not in the ops record).
    a.append(counts("quant_fp8", seen=10, compared=0, mode="off"))
    b = [
        ops_record([("rms_norm", "ported")], pid=2, ts=2000.0),
        counts("silu_and_mul", seen=16, compared=16, pid=2),
        compare("rms_norm", rms_args(3), max_abs=1e-5, legacy_us=10.0, ir_us=9.0, pid=2, ts=2001.0),
        counts("rms_norm", seen=1, compared=1, pid=2),
    ]
    bad_lines = "\n".join([
        "{this is not json",                                  # corrupt
        json.dumps({**counts("rms_norm", 1, 1), "v": 99}),    # unsupported version
        json.dumps({**common(), "kind": "mystery"}),          # invalid: unknown kind
        "[1, 2, 3]",                                          # invalid: not an object
        json.dumps({**common(), "kind": "compare", "op": "rms_norm"}),  # invalid: no outputs
        "",                                                   # blank: ignored
    ]) + "\n" + '{"v": 1, "kind": "compare", "op": "rms_n'   # truncated last line (no newline)
    return [write_log(folder / "records-host-1.jsonl", a),
            write_log(folder / "records-host-2.jsonl", b, tail=bad_lines)]


@pytest.fixture
def logs(tmp_path) -> Path:
    build_logs(tmp_path / "run-a")
    return tmp_path / "run-a"


@pytest.fixture
def result(logs) -> dict:
    return rp.aggregate(rp.log_files(logs))


# ------------------------------------------------------------------- figures
def test_totals_and_bad_lines(result):
    assert result["runs"] == ["run-a"]
    assert result["processes"] == 2
    assert [Path(f["path"]).name for f in result["files"]] == ["records-host-1.jsonl", "records-host-2.jsonl"]
    assert result["records"] == {"ops": 2, "counts": 6, "compare": 57, "error": 1}
    assert result["lines"] == 62 + 4 + 7
    bad = result["bad_lines"]
    assert (bad["total"], bad["corrupt"], bad["truncated"], bad["invalid"], bad["unsupported_version"]) == (6, 1, 1, 3, 1)
    assert [e["where"] for e in bad["examples"]] == [f"records-host-2.jsonl:{n}" for n in (5, 6, 7, 8, 9, 11)]
    assert result["files"][1]["bad_lines"] == 6 and result["files"][0]["bad_lines"] == 0
    assert result["first_ts"] == 1000.0 and result["last_ts"] == 2001.0
    assert result["verdicts"] == {"blocked": 1, "review": 3, "ready": 1, "unseen": 1}
    assert result["thresholds"] == {"min_compared": 16, "max_time_ratio": 1.1}


def test_ready_op_figures(result):
    op = result["ops"]["rms_norm"]
    assert op["verdict"] == "ready"
    assert op["reasons"] == ["21 compared calls, all within tolerance, IR 0.90x legacy time per call (median)"]
    assert (op["seen"], op["seen_counted"], op["compared"], op["compared_counted"]) == (26, 26, 21, 21)
    assert op["skipped"] == {"sampling": 5}
    assert op["modes"] == {"shadow": 26}
    assert (op["mismatches"], op["errors"], op["elements_outside"], op["nonfinite_mismatches"]) == (0, 0, 0, 0)
    assert op["classes"] == ["layers.rms_norm"] and op["port"] == "ported" and op["registered"]
    assert op["legacy_providers"] == {"forward_cpu": 21} and op["ir_providers"] == {"rms_norm/native": 21}
    assert op["worst_abs"] == {"value": 0.004, "output": "out0", "signature": "bfloat16[100,64] bfloat16[64] 1e-06",
                               "atol": 0.01, "rtol": 0.016}
    assert op["worst_rel"]["value"] == 0.002 and op["worst_rel"]["signature"] == "bfloat16[8,64] bfloat16[64] 1e-06"
    assert (op["timed"], op["legacy_us_total"], op["ir_us_total"]) == (21, 210.0, 189.0)
    assert (op["legacy_us_mean"], op["ir_us_mean"]) == (10.0, 9.0)
    assert (op["legacy_us_median"], op["ir_us_median"]) == (10.0, 9.0)
    assert op["time_ratio_median"] == op["time_ratio_p10"] == op["time_ratio_p90"] == op["time_ratio_total"] == 0.9
    # Per-call max abs errors: 0 (x5: i % 5 == 0, i != 17... and call 0 of pid 2 is 1e-5)
    hist = op["error_histogram"]
    assert hist["bins"][0] == "0" and hist["bins"][-1] == "nan/inf"
    by_bin = {b: n for b, n in zip(hist["bins"], hist["passed"]) if n}
    assert by_bin == {"0": 4, "1e-5": 1, "1e-4": 15, "1e-3": 1}
    assert sum(hist["failed"]) == 0
    assert op["ratio_histogram"]["counts"][5] == 21  # 0.9 lies in the half octave [2^-0.5, 1)
    assert op["notes"] == [] and op["errors_by_kind"] == [] and op["mismatch_notes"] == {}


def test_buckets_round_tokens_to_powers_of_two(result):
    buckets = result["ops"]["rms_norm"]["buckets"]
    assert [(b["dtype"], b["tokens"], b["shapes"], b["compared"]) for b in buckets] == [
        ("bfloat16", "3-4", "[T,64] [64]", 1),
        ("bfloat16", "5-8", "[T,64] [64]", 16),
        ("bfloat16", "65-128", "[T,64] [64]", 4),
    ]
    assert buckets[2]["worst_abs"]["value"] == 0.004
    assert buckets[1]["worst_abs"]["value"] == 4e-4
    assert buckets[0]["legacy_us_mean"] == 10.0 and buckets[0]["time_ratio_median"] == 0.9


def test_blocked_op_figures(result):
    op = result["ops"]["fused_add_rms_norm"]
    assert op["verdict"] == "blocked"
    assert op["reasons"] == ["1 IR-side error(s)", "1 mismatch(es) outside tolerance"]
    assert (op["seen"], op["compared"], op["mismatches"], op["errors"], op["elements_outside"]) == (6, 6, 1, 1, 3)
    assert op["worst_abs"]["value"] == 0.5 and op["worst_abs"]["signature"] == (
        "bfloat16[7,64] bfloat16[7,64] bfloat16[64] 1e-06")
    assert op["worst_rel"]["value"] == 0.25
    assert op["ir_providers"] == {"fused_add_rms_norm/triton": 5, "fused_add_rms_norm/native": 1}
    assert op["timed"] == 5 and op["time_ratio_median"] == 0.5 and op["legacy_us_total"] == 100.0
    assert op["mismatch_notes"] == {"mutated:residual: IR shape [7] != legacy [7, 64]": 1}
    assert op["errors_by_kind"] == [{"type": "RuntimeError", "message": "shape mismatch", "count": 1,
                                     "where": "ports/x.py:3", "ir": "fused_add_rms_norm/native",
                                     "signature": "bfloat16[7,64] bfloat16[7,64] bfloat16[64] 1e-06"}]
    hist = op["error_histogram"]
    assert hist["failed"][hist["bins"].index("1e-1")] == 1 and hist["passed"][hist["bins"].index("1e-3")] == 4
    [bucket] = op["buckets"]
    assert (bucket["tokens"], bucket["shapes"], bucket["compared"], bucket["mismatches"], bucket["errors"]) == (
        "5-8", "[T,64] [T,64] [64]", 6, 1, 1)


def test_review_and_unseen_verdicts(result):
    ops = result["ops"]
    assert ops["silu_and_mul"]["verdict"] == "review"
    assert ops["silu_and_mul"]["reasons"] == ["IR path 1.20x the legacy time per call (median), above 1.10x"]
    assert ops["silu_and_mul"]["seen"] == 16 and ops["silu_and_mul"]["compared_counted"] == 16
    assert ops["mul_and_silu"]["verdict"] == "review"
    assert ops["mul_and_silu"]["reasons"] == ["15 compared call(s), fewer than the 16 needed"]
    assert ops["mul_and_silu"]["buckets"][0]["dtype"] == "float32"
    assert ops["quant_fp8"]["verdict"] == "review"
    assert ops["quant_fp8"]["reasons"] == ["called in mode off only: nothing compared (run with IRSHIM_DISPATCH=shadow)"]
    assert ops["quant_fp8"]["modes"] == {"off": 10} and not ops["quant_fp8"]["registered"]
    assert ops["gelu_and_mul"]["verdict"] == "unseen"
    assert ops["gelu_and_mul"]["reasons"] == ["registered but never called"]
    assert ops["gelu_and_mul"]["port"] == "automatic"


def test_count_discrepancy_is_noted(tmp_path):
    path = write_log(tmp_path / "records-h-1.jsonl", [compare("rms_norm", rms_args(4)) for _ in range(3)]
                     + [counts("rms_norm", seen=5, compared=2)])
    op = rp.aggregate([path])["ops"]["rms_norm"]
    assert op["seen"] == 5 and op["compared"] == 3 and op["compared_counted"] == 2
    assert op["notes"] == ["counts records report 2 compared call(s) but 3 compare/error record(s) were read "
                           "(a process may have stopped before its last flush, or lines were lost)"]


@pytest.mark.parametrize("ratio,min_compared,n,verdict", [
    (1.10, 16, 16, "ready"),     # at both limits
    (1.12, 16, 16, "review"),    # slower than the limit
    (1.00, 16, 15, "review"),    # one call short
    (1.00, 3, 3, "ready"),       # thresholds are parameters
])
def test_verdict_thresholds(tmp_path, ratio, min_compared, n, verdict):
    path = write_log(tmp_path / "records-h-1.jsonl",
                     [compare("rms_norm", rms_args(4), legacy_us=100.0, ir_us=100.0 * ratio) for _ in range(n)])
    result = rp.aggregate([path], rp.Thresholds(min_compared=min_compared))
    assert result["ops"]["rms_norm"]["verdict"] == verdict
    assert result["ops"]["rms_norm"]["time_ratio_median"] == ratio


def test_median_ignores_warm_up_outliers(tmp_path):
    times = [(10.0, 900.0)] + [(10.0, 10.0)] * 20  # the first IR call loads provider packages
    path = write_log(tmp_path / "records-h-1.jsonl",
                     [compare("rms_norm", rms_args(4), legacy_us=lg, ir_us=ir) for lg, ir in times])
    op = rp.aggregate([path])["ops"]["rms_norm"]
    assert op["time_ratio_median"] == 1.0 and op["verdict"] == "ready"
    assert op["time_ratio_total"] == round(1100.0 / 210.0, 4)
    assert op["ir_us_median"] == 10.0 and op["ir_us_mean"] == round(1100.0 / 21, 3)


def test_nonfinite_errors_rank_worst(tmp_path):
    nan_out = {"name": "out0", "max_abs": None, "max_rel": None, "n_outside": 2, "nonfinite_mismatch": True,
               "atol": 1e-2, "rtol": 1.6e-2, "passed": False}
    path = write_log(tmp_path / "records-h-1.jsonl", [
        compare("rms_norm", rms_args(4), max_abs=3.0),
        compare("rms_norm", rms_args(2), passed=False, outputs=[nan_out]),  # the writer's null for NaN/Inf
        compare("rms_norm", rms_args(8), max_abs=5.0),
    ])
    result = rp.aggregate([path])
    op = result["ops"]["rms_norm"]
    assert op["worst_abs"]["value"] == "nan" and op["worst_abs"]["signature"] == "bfloat16[2,64] bfloat16[64] 1e-06"
    assert op["nonfinite_mismatches"] == 1 and op["mismatches"] == 1 and op["verdict"] == "blocked"
    assert op["error_histogram"]["failed"][-1] == 1
    json.dumps(result, allow_nan=False)  # strict JSON


def test_bucket_of_and_token_class():
    assert [rp.token_class(t) for t in (0, 1, 2, 3, 4, 5, 8, 9, 4096, 4097)] == [
        "0", "1", "2", "3-4", "3-4", "5-8", "5-8", "9-16", "2049-4096", "4097-8192"]
    rope = {"args": [tensor([10], "int64"), tensor([10, 512]), tensor([10, 128])], "kwargs": {}}
    assert rp.bucket_of(rope) == ("int64/bfloat16", "9-16", "[T] [T,512] [T,128]")
    batched = {"args": [tensor([2, 5, 64])], "kwargs": {"weight": tensor([64])}}
    assert rp.bucket_of(batched) == ("bfloat16", "9-16", "[T,64] [64]")
    assert rp.bucket_of({"args": [1.0], "kwargs": {}}) == ("-", "-", "no tensors")
    assert rp.bucket_of("garbage") == ("-", "-", "no tensors")
    strided = {"args": [tensor([4, 64], stride=[128, 1]), 0.5], "kwargs": {"eps": 1e-6}}
    assert rp.format_signature(strided) == "bfloat16[4,64](strided) 0.5 eps=1e-06"


# ---------------------------------------------------- ranges, workers, memory
def _stable(result: dict) -> dict:
    """The report less its time stamp and bad-line examples (whose locations depend on the cuts)."""
    copy = json.loads(json.dumps(result))
    copy.pop("generated_at")
    copy["bad_lines"].pop("examples")
    return copy


def test_any_byte_ranges_add_up_to_the_whole(logs):
    files = rp.log_files(logs)
    whole = rp.aggregate(files)
    rng = random.Random(0)
    for _ in range(5):
        agg = rp.Aggregator()
        for path in files:
            size = path.stat().st_size
            cuts = sorted({0, size, *(rng.randrange(1, size) for _ in range(rng.randrange(1, 12)))})
            for start, end in zip(cuts, cuts[1:]):
                part = rp.Aggregator()
                part.add_range(path, start, end)
                agg.merge(part)
        got = _stable(agg.result())
        assert got["bad_lines"]["total"] == 6 and got["bad_lines"]["truncated"] == 1
        assert got == _stable(whole)


def test_worker_processes_give_the_same_report(logs, monkeypatch):
    files = rp.log_files(logs)
    one = rp.aggregate(files, jobs=1)
    monkeypatch.setattr(rp, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(rp, "TASK_BYTES", 1500)
    seen = []
    many = rp.aggregate(files, jobs=2, progress=lambda done, total: seen.append((done, total)))
    assert len(rp._tasks(files, 1500)) > 4
    assert _stable(many) == _stable(one)
    assert [e["kind"] for e in many["bad_lines"]["examples"]] == [e["kind"] for e in one["bad_lines"]["examples"]]
    total = sum(f.stat().st_size for f in files)
    assert seen[-1] == (total, total) and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))


def test_state_does_not_grow_with_the_log(logs):
    lines = [line for f in rp.log_files(logs) for line in f.read_bytes().splitlines(keepends=True)]
    agg = rp.Aggregator()
    sizes = []
    for rounds in (50, 500):
        while agg.lines < rounds * len(lines):
            for line in lines:
                agg.add_line(line)
        sizes.append(len(pickle.dumps(agg)))
    # 10x the records, the same state (a few bytes for bigger counters).
    assert sizes[1] - sizes[0] < 200, sizes


# ------------------------------------------------------------------ writing
def test_write_report_files(result, tmp_path):
    paths = rp.write_report(result, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["report.html", "report.json", "report.md"]
    assert json.loads(paths["report.json"].read_text())["verdicts"] == result["verdicts"]
    md = paths["report.md"].read_text()
    assert "**ready**: at least 16 compared calls" in md and "## fused_add_rms_norm: blocked" in md
    assert "| [rms_norm](#rms_norm) | ready | 26 | 21 | 5 | 0 | 0 | 0.004 |" in md
    assert "6 bad line(s) skipped" in md
    assert "**unseen** (registered, never called): gelu_and_mul" in md and "## gelu_and_mul" not in md
    html = paths["report.html"].read_text()
    assert html.count("<svg") == 3 and "</html>" in html
    # Self-contained: no script, stylesheet link, image or font fetched from anywhere.
    assert not re.search(r"<script|<link|<img|@import|url\(|src=", html)
    assert set(re.findall(r"https?://[^\s\"']+", html)) == {"http://www.w3.org/2000/svg"}


def test_empty_report_renders(tmp_path):
    result = rp.Aggregator().result()
    paths = rp.write_report(result, tmp_path)
    assert "No timed calls" in paths["report.html"].read_text()


def test_runs_and_log_files(tmp_path):
    write_log(tmp_path / "old" / "records-h-1.jsonl", [counts("x", 1, 0)])
    newer = write_log(tmp_path / "new" / "records-h-2.jsonl", [counts("x", 1, 0)])
    (tmp_path / "empty").mkdir()
    import os
    os.utime(tmp_path / "old" / "records-h-1.jsonl", (1, 1))
    assert [p.name for p in rp.runs(tmp_path)] == ["old", "new"]
    assert rp.log_files(tmp_path / "new") == [newer] and rp.log_files(newer) == [newer]
    assert rp.log_files(tmp_path / "empty") == [] and rp.runs(tmp_path / "missing") == []


# ------------------------------------------------------------ 1M records
def _million_record_log(path: Path) -> tuple[int, dict]:
    """1,000,000 records: 1,000 repetitions of a 1,000-record block (written in one go)."""
    block = []
    for i in range(992):
        tokens = (1, 7, 64, 300)[i % 4]
        if i % 3 == 0:
            block.append(compare("rms_norm", rms_args(tokens, 4096), max_abs=1e-3, legacy_us=12.0, ir_us=11.0))
        elif i % 3 == 1:
            block.append(compare("silu_and_mul", [tensor([tokens, 8192])], max_abs=0.0, legacy_us=8.0, ir_us=8.0))
        elif i == 2:
            block.append(error("silu_and_mul", [tensor([tokens, 8192])]))
        else:
            block.append(compare("fused_add_rms_norm", [tensor([tokens, 4096]), tensor([tokens, 4096]),
                                                        tensor([4096]), 1e-6], max_abs=2e-3, legacy_us=15.0, ir_us=30.0))
    block += [counts(op, seen=400, compared=330) for op in ("rms_norm", "silu_and_mul")] * 4
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in block)
    repeats = 1000
    with path.open("w") as f:
        for _ in range(repeats // 100):
            f.write(text * 100)
        f.write("{corrupt\n")
    expected = {
        "rms_norm": 331 * repeats, "silu_and_mul": 332 * repeats, "fused_add_rms_norm": 329 * repeats,
        "silu_errors": repeats, "records": len(block) * repeats,
    }
    return len(block) * repeats, expected


def test_a_million_records_in_under_a_minute(tmp_path):
    path = tmp_path / "records-host-1.jsonl"
    n, expected = _million_record_log(path)
    assert n == 1_000_000
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = rp.aggregate([path])
    elapsed = time.perf_counter() - start
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    print(f"\n1M records ({path.stat().st_size / 2**20:.0f} MiB) aggregated in {elapsed:.1f} s "
          f"with {rp.default_jobs()} worker(s); parent peak RSS grew {grown_mib:.1f} MiB")
    assert sum(result["records"].values()) == expected["records"]
    assert result["bad_lines"]["total"] == 1 and result["bad_lines"]["corrupt"] == 1
    ops = result["ops"]
    assert ops["rms_norm"]["compared"] == expected["rms_norm"]
    assert ops["silu_and_mul"]["compared"] == expected["silu_and_mul"]
    assert ops["silu_and_mul"]["errors"] == expected["silu_errors"]
    assert ops["fused_add_rms_norm"]["compared"] == expected["fused_add_rms_norm"]
    assert ops["fused_add_rms_norm"]["time_ratio_median"] == 2.0
    assert ops["rms_norm"]["seen"] == 1600 * 1000
    assert len(ops["rms_norm"]["buckets"]) == 4
    assert elapsed < 60, f"{elapsed:.1f} s"
    assert grown_mib < 64, "aggregation must not keep records"


def test_quantiles_interpolate_between_calls():
    hist = rp.LogHistogram()
    for value in (1.0, 4.0):
        hist.add(value)
    assert hist.quantile(0.5) == 2.0  # geometric middle of the two calls
    assert hist.quantile(0.0) == 1.0 and hist.quantile(1.0) == 4.0
    for value in (0.5, 8.0, 8.0):
        hist.add(value)
    assert hist.quantile(0.5) == 4.0 and hist.quantile(0.75) == 8.0
    assert rp.LogHistogram().quantile(0.5) is None


def test_median_interval_is_the_order_statistics_around_the_median():
    # 32 calls, each in a bin of its own (1/8 octave apart), so every rank's value is exact.
    # Ranks (1-based) n/2 -+ 1.96 sqrt(n)/2: floor(16 - 5.54) = 10 and ceil(17 + 5.54) = 23.
    hist = rp.LogHistogram()
    for i in reversed(range(32)):
        hist.add(2 ** (i / 8))
    low, high = hist.median_interval()
    assert low == pytest.approx(2 ** (9 / 8)) and high == pytest.approx(2 ** (22 / 8))
    one = rp.LogHistogram()
    one.add(1.5)
    assert one.median_interval() == (1.5, 1.5)
    assert rp.LogHistogram().median_interval() is None


def _spread_ratios(n: int, centre: float, step: float) -> list[float]:
    """n ratios centre * (1 + step * k), k = -(n // 2) ... : median `centre` when n is odd."""
    return [centre * (1 + step * k) for k in range(-(n // 2), n - n // 2)]


@pytest.mark.parametrize("centre,verdict", [(1.05, "ready"), (1.15, "review")])
def test_a_verdict_whose_interval_holds_the_limit_says_so(tmp_path, centre, verdict):
    # 33 calls 1% apart around the median: its interval (ranks 11 and 24 of 33) spans about
    # 0.94-1.07x the median, which holds the 1.10x limit for both medians.
    ratios = _spread_ratios(33, centre, 0.01)
    path = write_log(tmp_path / "records-h-1.jsonl",
                     [compare("rms_norm", rms_args(4), legacy_us=100.0, ir_us=100.0 * r) for r in ratios])
    op = rp.aggregate([path])["ops"]["rms_norm"]
    assert op["verdict"] == verdict
    low, high = op["time_ratio_median_ci95"]
    assert low < 1.10 < high
    [reason] = op["reasons"]
    assert f"its 95% interval {low:.3f}-{high:.3f}x holds the 1.10x limit" in reason


def test_a_clear_verdict_adds_no_interval_note(tmp_path):
    ratios = _spread_ratios(33, 0.8, 0.01)  # interval about 0.75-0.86x: well under the limit
    path = write_log(tmp_path / "records-h-1.jsonl",
                     [compare("rms_norm", rms_args(4), legacy_us=100.0, ir_us=100.0 * r) for r in ratios])
    op = rp.aggregate([path])["ops"]["rms_norm"]
    assert op["verdict"] == "ready" and "interval" not in op["reasons"][0]


@pytest.mark.parametrize("modes,reason", [
    ({"on": 5}, "called in mode on only: the IR result was used, nothing compared"),
    ({"shadow": 5}, "calls seen but none compared (every call skipped: see the skip reasons)"),
])
def test_nothing_compared_reasons(tmp_path, modes, reason):
    records = [counts("rms_norm", seen=n, compared=0, mode=mode, skipped={"sampling": n} if mode == "shadow" else None)
               for mode, n in modes.items()]
    op = rp.aggregate([write_log(tmp_path / "records-h-1.jsonl", records)])["ops"]["rms_norm"]
    assert op["verdict"] == "review" and op["reasons"] == [reason]
