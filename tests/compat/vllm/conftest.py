"""Set-up of the vLLM integration tests: skipped cleanly where vLLM is not importable.

vLLM 0.33.0 is installed without its dependency tree (constraints/vllm-cpu.txt,
by `scripts/bootstrap.py test`); on this CPU-only set-up it must be told its
target device before it is imported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

# `python -m pytest` puts the repository root on sys.path, where the folder
# `kernels/` (installed as irshim.kernels) would pass for Hugging Face's
# `kernels` package: transformers, imported by vLLM, probes for that with
# find_spec and imports it, registering irshim's Triton providers a second
# time. The installed irshim does not need the root on the path.
_ROOT = Path(__file__).resolve().parents[3]
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != _ROOT]

