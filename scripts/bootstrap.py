#!/usr/bin/env python3
"""Set up `.venv` from the repository's own files, then run one job.

    python3 scripts/bootstrap.py demo [ARGS...]   # `irshim demo` (the main job)
    python3 scripts/bootstrap.py test [ARGS...]   # the test suite (pytest ARGS)

Only `python3` is assumed. The environment is rebuilt when pyproject.toml,
setup.py or the constraints file change (a stamp file records their hash).
The test job also installs vLLM 0.33.0 and the exact set of packages its layer
modules import on a CPU (constraints/vllm-cpu.txt, without dependency
resolution: vLLM's metadata would pull a CUDA torch), for the `vllm`-marked
integration tests; a second stamp covers that file. The demo job never
installs vLLM.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
CONSTRAINTS = ROOT / "constraints" / "cpu.txt"
VLLM_SET = ROOT / "constraints" / "vllm-cpu.txt"
INPUTS = (ROOT / "pyproject.toml", ROOT / "setup.py", CONSTRAINTS)
VLLM_INPUTS = (*INPUTS, VLLM_SET)
PYTEST_NO_TESTS = 5


def _venv_python() -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / "python"


def _inputs_hash(inputs: tuple[Path, ...] = INPUTS) -> str:
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(cmd: list[str | os.PathLike], **kwargs) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kwargs)


def ensure_venv() -> Path:
    """Create or refresh `.venv` with irshim (editable) and its dev extra."""
    python = _venv_python()
    stamp = VENV / ".irshim-inputs"
    wanted = _inputs_hash()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        _run([sys.executable, "-m", "venv", VENV])
    _run([*_pip(python), "install", "-c", CONSTRAINTS, "-e", ".[dev]"])
    stamp.write_text(wanted)
    return python


def _pip(python: Path) -> list[str | os.PathLike]:
    return [python, "-m", "pip", "--disable-pip-version-check", "-q"]


def ensure_vllm(python: Path) -> None:
    """Add vLLM and its CPU import set to `.venv` (exact pins, no dependency resolution)."""
    stamp = VENV / ".irshim-vllm-inputs"
    wanted = _inputs_hash(VLLM_INPUTS)
    if stamp.exists() and stamp.read_text() == wanted:
        return
    _run([*_pip(python), "install", "--no-deps", "-c", CONSTRAINTS, "-r", VLLM_SET])
    stamp.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    job, rest = argv[0], argv[1:]
    python = ensure_venv()
    if job == "demo":
        return subprocess.call([python, "-m", "irshim.compat.cli", "demo", *rest], cwd=ROOT)
    ensure_vllm(python)
    rc = subprocess.call([python, "-m", "pytest", *rest], cwd=ROOT)
    if rc == PYTEST_NO_TESTS:
        print("pytest collected no tests: treated as a failure", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
