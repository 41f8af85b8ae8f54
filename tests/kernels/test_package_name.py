"""The kernels folder imported under its bare name (a checkout's root on sys.path) registers nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bare_kernels_import_registers_nothing_twice():
    # transformers probes for Hugging Face's `kernels` package exactly like this.
    code = ("import importlib, sys; m = importlib.import_module('kernels'); "
            "import irshim.ir as ir; ir.load_providers(); "
            "print(getattr(m, '__version__', 'N/A'), sorted(ir.ops.silu_and_mul.impls), ir.providers.failures)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    version, rest = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert version == "N/A"  # transformers then treats it as not installed
    assert "'triton'" in rest and rest.endswith("{}")  # registered once, through irshim.kernels, no failure
