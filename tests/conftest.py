"""Suite-wide set-up: Triton's interpreter on CPU-only machines, GPU markers."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

# Triton reads TRITON_INTERPRET when kernels are decorated, so it must be set
# before any provider package is imported: on a machine without a GPU the
# Triton kernels then run (slowly) on the CPU, which is how CI tests them.
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Observation logs of the tests (and of the processes they start) go to a
# temporary folder, not the repository's migration_reports/.
os.environ["IRSHIM_REPORT_DIR"] = tempfile.mkdtemp(prefix="irshim-test-reports-")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
