"""report.html in a real browser: headless Chromium parses it, draws the charts, fetches nothing.

Skipped where no Chromium is installed (CI installs none); run locally with
`apt-get install chromium`. The committed demo report carries a screenshot
taken the same way (migration_reports/README.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from irshim.compat import report as rp

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((b for b in map(shutil.which, BROWSERS) if b), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(BROWSER is None, reason="needs Chromium (apt-get install chromium)")


def _chromium(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def _report(tmp_path: Path) -> Path:
    def rec(kind, **fields):
        return {"v": 1, "run": "html", "pid": 1, "ts": 1.0, "kind": kind, **fields}

    args = [{"shape": [5, 64], "dtype": "bfloat16", "stride": [64, 1], "device": "cpu"}]
    lines = [rec("ops", ops=[{"op": "rms_norm", "cls": "L.RMSNorm", "port": "ported"},
                             {"op": "gelu_new", "cls": "L.NewGELU", "port": "automatic"}])]
    for i in range(20):
        passed = i != 7
        out = {"name": "out0", "max_abs": 10.0 ** -(i % 6) if passed else 0.5, "max_rel": 1e-3, "n_outside": 0 if passed else 4,
               "nonfinite_mismatch": False, "atol": 1e-2, "rtol": 1.6e-2, "passed": passed}
        for op, ir_us in (("rms_norm", 8.0 + i % 3), ("silu_and_mul", 14.0)):
            lines.append(rec("compare", op=op, cls=f"L.{op}", mode="shadow", legacy="forward_cuda",
                             ir=f"{op}/triton", signature={"args": args, "kwargs": {}}, outputs=[out],
                             passed=passed or op == "silu_and_mul", legacy_us=10.0, ir_us=ir_us))
    log = tmp_path / "records-h-1.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return rp.write_report(rp.aggregate([log]), tmp_path)["report.html"]


def test_report_renders_in_chromium(tmp_path):
    html = _report(tmp_path)
    dom = _chromium("--dump-dom", html.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    # The browser built the page: three SVGs with their marks, the tables, every op section.
    assert text.count("<svg") == 3 and "<circle" in text and "<rect" in text
    assert "Migration report: html" in text and 'id="op-rms_norm"' in text and 'id="op-silu_and_mul"' in text
    assert "registered, never called: gelu_new" in text
    shot = tmp_path / "screenshot.png"
    result = _chromium(f"--screenshot={shot}", "--window-size=1280,1200", html.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000  # a blank 1280x1200 page compresses to a few kB; charts and tables do not
