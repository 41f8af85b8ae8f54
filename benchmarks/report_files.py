"""Where a benchmark's results go: `<stem>.json` (the figures) and `<stem>.md` (the table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(out: Path | None, stem: str, result: dict[str, Any], text: str) -> None:
    """Write `result` as JSON and `text` as Markdown under `out` (created if needed; None: nothing)."""
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text)
