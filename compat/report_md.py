"""report.json -> report.md, and the number formatting shared with the HTML page."""

from __future__ import annotations

import datetime as _dt
from typing import Any

VERDICT_ORDER = {"blocked": 0, "review": 1, "ready": 2, "unseen": 3}
VERDICT_HELP = {
    "ready": "the IR path agrees with legacy on enough calls and is not slower: flip it on",
    "review": ("no disagreement, but not ready: run more traffic if too few calls were compared, read the "
               "bucket table if it is slower, run with IRSHIM_DISPATCH=shadow if nothing was compared"),
    "blocked": "the IR path disagreed or raised: fix the port or the provider before flipping it on",
    "unseen": "registered but never called in this run: exercise it, or ignore it",
}



def time_summary(op: dict[str, Any]) -> str:
    """One sentence on an op's legacy and IR times (Markdown and HTML reports)."""
    return (f"per call over {op['timed']} calls: legacy median {fmt_us(op['legacy_us_median'])} µs "
            f"(mean {fmt_us(op['legacy_us_mean'])}), IR median {fmt_us(op['ir_us_median'])} µs "
            f"(mean {fmt_us(op['ir_us_mean'])}); IR/legacy median {fmt_ratio(op['time_ratio_median'])} "
            f"{_median_interval(op)}(p10 {fmt_ratio(op['time_ratio_p10'])}, "
            f"p90 {fmt_ratio(op['time_ratio_p90'])}), total {fmt_ratio(op['time_ratio_total'])}")


def _median_interval(op: dict[str, Any]) -> str:
    interval = op["time_ratio_median_ci95"]
    if interval is None:
        return ""
    return f"[95% interval {fmt_ratio(interval[0])}-{fmt_ratio(interval[1])}] "


def fmt_err(value: Any) -> str:
    """An error magnitude: 3 significant digits, "0" for exact, "-" for none."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if value == 0:
        return "0"
    return f"{value:.3g}"


def fmt_us(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt_ratio(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}x"


def fmt_counts(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else "-"


def fmt_codes(counts: dict) -> str:
    """Provider names with their call counts when there are several."""
    if not counts:
        return "-"
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{k} ({v})" for k, v in counts.items())


def thresholds_text(report: dict) -> list[str]:
    t = report["thresholds"]
    return [
        f"**ready**: at least {t['min_compared']} compared calls, no mismatch, no IR-side error, "
        f"and the median per-call time ratio IR/legacy at most {t['max_time_ratio']:.2f}x.",
        "**blocked**: at least one mismatch (an output outside the op's tolerance, or NaN/Inf on one "
        "side only) or one IR-side exception.",
        "**review**: called, no disagreement, but not ready (too few compared calls, slower, "
        "or nothing compared: mode off or on, or every call skipped).",
        "**unseen**: registered in a process of the run but never called.",
    ]


def sorted_ops(report: dict) -> list[tuple[str, dict]]:
    return sorted(report["ops"].items(), key=lambda kv: (VERDICT_ORDER[kv[1]["verdict"]], kv[0]))


def context_text(report: dict) -> str:
    """The caller's description of where the logs come from (``report["context"]``), one line."""
    context = report.get("context") or {}
    return "; ".join(f"{k}: {v}" for k, v in context.items())


def source_text(report: dict) -> str:
    recs = report["records"]
    n_records = sum(recs.values())
    kinds = ", ".join(f"{recs[k]} {k}" for k in ("compare", "error", "counts", "ops") if recs.get(k))
    span = ""
    if report.get("first_ts") is not None and report.get("last_ts") is not None:
        first = _dt.datetime.fromtimestamp(report["first_ts"]).strftime("%Y-%m-%d %H:%M:%S")
        span = f", logged from {first} over {report['last_ts'] - report['first_ts']:.1f} s"
    return (f"{len(report['files'])} log file(s), {report['lines']} line(s), {n_records} record(s)"
            f" ({kinds or 'none'}) from {report['processes']} process(es){span}.")


def bad_lines_text(report: dict) -> str:
    bad = report["bad_lines"]
    if not bad["total"]:
        return "No bad lines."
    kinds = ", ".join(f"{bad[k]} {k}" for k in ("corrupt", "truncated", "invalid", "unsupported_version")
                      if bad.get(k))
    return f"**{bad['total']} bad line(s) skipped** ({kinds})."


def worst_text(entry: dict | None) -> str:
    if not entry:
        return "-"
    tol = ""
    if entry.get("atol") is not None:
        tol = f" (atol {entry['atol']:g}, rtol {entry['rtol']:g})"
    return f"{fmt_err(entry['value'])} in `{entry['output']}`{tol} at `{entry['signature']}`"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(report: dict) -> str:
    runs = ", ".join(report["runs"]) or "(no run id)"
    v = report["verdicts"]
    lines = [
        f"# Migration report: {runs}",
        "",
        f"Generated {report['generated_at']} from {source_text(report)} {bad_lines_text(report)}",
        "",
        *([f"Context: {context_text(report)}", ""] if report.get("context") else []),
        "**" + " · ".join(f"{v[k]} {k}" for k in ("ready", "review", "blocked", "unseen")) + "**",
        "",
        "## Verdicts and thresholds",
        "",
        *[f"- {t}" for t in thresholds_text(report)],
        "",
        "Times are microseconds per call as logged by shadow mode (wall clock on CPU, CUDA events on "
        "GPU); tables show medians, robust to warm-up calls, and the ratio is the median over calls "
        "of IR time / legacy time.",
        "",
        "## Ops",
        "",
    ]
    rows = []
    unseen = [name for name, op in sorted_ops(report) if op["verdict"] == "unseen"]
    for name, op in sorted_ops(report):
        if op["verdict"] == "unseen":
            continue
        rows.append([
            f"[{name}](#{name})", op["verdict"], op["seen"], op["compared"], sum(op["skipped"].values()),
            op["mismatches"], op["errors"],
            fmt_err(op["worst_abs"]["value"] if op["worst_abs"] else None),
            fmt_err(op["worst_rel"]["value"] if op["worst_rel"] else None),
            fmt_codes(op["legacy_providers"]), fmt_codes(op["ir_providers"]),
            fmt_us(op["legacy_us_median"]), fmt_us(op["ir_us_median"]), fmt_ratio(op["time_ratio_median"]),
        ])
    lines += _table(["op", "verdict", "seen", "compared", "skipped", "mismatches", "errors",
                     "worst abs", "worst rel", "legacy code", "IR code", "legacy µs", "IR µs",
                     "IR/legacy"], rows)
    lines += ["", "µs: median time per call of each side; IR/legacy: median of the per-call ratios."]
    if unseen:
        lines += ["", "**unseen** (registered, never called): " + ", ".join(unseen)]
    bad = report["bad_lines"]
    if bad["total"]:
        lines += ["", "## Bad lines", "", bad_lines_text(report) + " First examples:", ""]
        lines += [f"- `{e['where']}` ({e['kind']}): {e['reason']}" for e in bad["examples"]]
    for name, op in sorted_ops(report):
        if op["verdict"] == "unseen":
            continue
        lines += ["", f"<a id=\"{name}\"></a>", f"## {name}: {op['verdict']}", ""]
        lines += [f"- **why**: {'; '.join(op['reasons'])}. Next: {VERDICT_HELP[op['verdict']]}."]
        lines += [f"- **class**: {', '.join(f'`{c}`' for c in op['classes']) or '-'}; "
                  f"port: {op['port'] or '-'}; modes: {fmt_counts(op['modes'])}"]
        lines += [
            f"- **calls**: {op['seen']} seen, {op['compared']} compared, "
            f"skipped: {fmt_counts(op['skipped'])}",
            f"- **code**: legacy {fmt_codes(op['legacy_providers'])} → IR {fmt_codes(op['ir_providers'])}",
            f"- **worst abs error**: {worst_text(op['worst_abs'])}",
            f"- **worst rel error**: {worst_text(op['worst_rel'])}",
            f"- **elements outside tolerance**: {op['elements_outside']}; "
            f"NaN/Inf disagreements: {op['nonfinite_mismatches']}",
            f"- **time** {time_summary(op)}",
        ]
        lines += [f"- **mismatch note** ({n}x): {text}" for text, n in op["mismatch_notes"].items()]
        lines += [f"- **note**: {n}" for n in op["notes"]]
        if op["errors_by_kind"]:
            lines += ["", "IR-side errors:", ""]
            lines += _table(["type", "message", "count", "where", "IR code", "first signature"],
                            [[e["type"], e["message"], e["count"], e["where"], e["ir"], f"`{e['signature']}`"]
                             for e in op["errors_by_kind"]])
        if op["buckets"]:
            lines += ["", "By signature bucket (tokens rounded up to a power of two; `T` = tokens):", ""]
            lines += _table(
                ["dtype", "tokens", "shapes", "compared", "mismatches", "errors", "worst abs", "worst rel",
                 "legacy µs", "IR µs", "IR/legacy", "IR code"],
                [[b["dtype"], b["tokens"], f"`{b['shapes']}`", b["compared"], b["mismatches"], b["errors"],
                  fmt_err(b["worst_abs"]["value"] if b["worst_abs"] else None),
                  fmt_err(b["worst_rel"]["value"] if b["worst_rel"] else None),
                  fmt_us(b["legacy_us_median"]), fmt_us(b["ir_us_median"]), fmt_ratio(b["time_ratio_median"]),
                  fmt_codes(b["ir_providers"])] for b in op["buckets"]])
    return "\n".join(lines) + "\n"
