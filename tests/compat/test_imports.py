"""The compat modules that import each other import first in a fresh interpreter: an
order that works from `irshim.compat` can fail from another entry point
(`from irshim.compat import shadow` broke once). One interpreter per module, in
parallel: each import loads torch (~2 s)."""

from __future__ import annotations

import subprocess
import sys

CYCLE = ("irshim.compat.shadow", "irshim.compat.dispatch", "irshim.compat.custom_op",
         "irshim.compat.records", "irshim.compat.ports", "irshim.compat.intercept", "irshim.compat.auto")
"""dispatch imports custom_op and shadow last; custom_op imports dispatch and shadow; shadow
imports dispatch and records; ports, intercept and auto import dispatch's neighbours."""


def test_modules_that_import_each_other_import_first():
    running = {name: subprocess.Popen([sys.executable, "-c", f"import {name}"], stderr=subprocess.PIPE, text=True)
               for name in CYCLE}
    failures = {name: p.communicate(timeout=240)[1].strip().splitlines()[-1:] for name, p in running.items()}
    assert not {name: err for name, err in failures.items() if running[name].returncode}
