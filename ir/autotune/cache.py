"""The on-disk tuning cache: one JSON file, safe for concurrent processes.

Location: ``$IRSHIM_TUNE_CACHE`` (a folder), else ``~/.cache/irshim``; file
``tune.json``. Keys name the machine (device name, torch and triton versions),
the op, the bucket and every candidate with its source hash, so a changed
kernel, a new candidate or another machine is measured anew. Writers take an
exclusive lock on ``tune.json.lock``, merge their entry into the file's current
contents and replace the file atomically; readers need no lock.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

ENV_DIR = "IRSHIM_TUNE_CACHE"
FILE_NAME = "tune.json"


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_DIR) or Path.home() / ".cache" / "irshim")


@functools.cache
def machine_key(device_type: str) -> str:
    """Device name plus the software whose code generation changes timings."""
    if device_type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
        except OSError:
            pass
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return f"{name}|torch {torch.__version__}|triton {triton_version}"


class TuneCache:
    """Reads and merges entries of one cache file."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder or cache_dir()
        self.path = self.folder / FILE_NAME
        self._warned = False

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self._warn(f"cannot read {self.path} ({exc}); treating it as empty")
            return {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self._read().get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(FILE_NAME + ".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                data = self._read()
                data[key] = entry
                fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tune-", suffix=".json")
                with os.fdopen(fd, "w") as f:
                    json.dump(data, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
        except OSError as exc:
            self._warn(f"cannot write the tuning cache {self.path} ({exc}); choices stay in memory")

    def entries(self) -> dict[str, Any]:
        return self._read()

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(message)
