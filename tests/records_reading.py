"""Reading observation records as `irshim report` does: "counts" records are deltas."""

from __future__ import annotations


def summed_counts(lines: list[dict]) -> list[dict]:
    """One "counts" record per (op, cls, mode), its deltas summed: the 10 s flush timer may
    split a test's counts over two records."""
    merged: dict[tuple, dict] = {}
    for r in lines:
        if r["kind"] != "counts":
            continue
        m = merged.setdefault((r["op"], r["cls"], r["mode"]), {**r, "seen": 0, "compared": 0, "skipped": {}})
        m["seen"] += r["seen"]
        m["compared"] += r["compared"]
        for reason, n in r["skipped"].items():
            m["skipped"][reason] = m["skipped"].get(reason, 0) + n
    return list(merged.values())
