"""report.json -> report.html: one self-contained page (inline CSS and SVG, no script, no network)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from .report_md import (
    VERDICT_HELP,
    bad_lines_text,
    context_text,
    fmt_codes,
    fmt_counts,
    fmt_err,
    fmt_ratio,
    fmt_us,
    sorted_ops,
    source_text,
    thresholds_text,
    time_summary,
)

COLORS = {"ready": "#2e7d32", "review": "#e0a100", "blocked": "#c62828", "unseen": "#9e9e9e"}
LABEL_W = 190
ROW_H = 24

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;
 padding:0 16px;color:#1d2329;background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde1e6;
 padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
.meta{color:#56606b;font-size:13px}.pills{margin:14px 0}
.pill{display:inline-block;border-radius:14px;padding:3px 12px;margin-right:8px;color:#fff;font-weight:600}
.badge{display:inline-block;border-radius:9px;padding:0 8px;color:#fff;font-size:12px;font-weight:600}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px;background:#fff}
th,td{border:1px solid #dde1e6;padding:3px 5px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.bad{color:#c62828;font-weight:600}code{font-size:12px;background:#f0f2f5;padding:0 3px;border-radius:3px}
.wide{overflow-x:auto}.charts{display:flex;flex-wrap:wrap;gap:20px}.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;
 padding:10px 12px}.card h3{margin-top:0}.legend{font-size:12px;color:#56606b}
details{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:8px 0;padding:6px 12px}
summary{cursor:pointer;font-weight:600}ul{margin:6px 0;padding-left:20px}
svg text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;fill:#1d2329}
svg .muted{fill:#56606b;font-size:11px}
"""


def _badge(verdict: str) -> str:
    return f'<span class="badge" style="background:{COLORS[verdict]}">{verdict}</span>'


def _md_inline(text: str) -> str:
    """The few Markdown marks used in shared texts (**bold**) as HTML."""
    parts = escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def _table(header: list[str], rows: list[list[tuple[str, str]]]) -> str:
    """rows of (html, css class) cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="{c}">{h}</td>' for h, c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _n(value: Any, bad: bool = False) -> tuple[str, str]:
    return escape(str(value)), "n bad" if bad else "n"


def _t(text: str) -> tuple[str, str]:
    return escape(text), ""


# ---------------------------------------------------------------- charts
def ratio_chart(report: dict) -> str:
    """Median IR/legacy time per call per op on a log axis, whiskers p10-p90."""
    ops = [(n, o) for n, o in sorted_ops(report) if o["time_ratio_median"] is not None]
    if not ops:
        return '<p class="legend">No timed calls.</p>'
    lo, hi = -3, 3  # log2 axis: 1/8x .. 8x
    width, plot_w, top = 780, 440, 26
    height = top + ROW_H * len(ops) + 30
    x0 = LABEL_W

    def x(r: float) -> float:
        v = max(lo, min(hi, math.log2(max(r, 1e-9))))
        return x0 + (v - lo) / (hi - lo) * plot_w

    limit = report["thresholds"]["max_time_ratio"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="time ratio per op">']
    # faster / slower half backgrounds
    parts.append(f'<rect x="{x0}" y="{top - 6}" width="{x(1) - x0:.1f}" height="{ROW_H * len(ops) + 6}" '
                 'fill="#eef7ef"/>')
    parts.append(f'<rect x="{x(1):.1f}" y="{top - 6}" width="{x0 + plot_w - x(1):.1f}" '
                 f'height="{ROW_H * len(ops) + 6}" fill="#fbeeee"/>')
    parts.append(f'<text x="{x0 + 4}" y="{top - 10}" class="muted">IR faster</text>')
    parts.append(f'<text x="{x0 + plot_w - 4}" y="{top - 10}" class="muted" text-anchor="end">IR slower</text>')
    axis_y = top + ROW_H * len(ops)
    for k in range(lo, hi + 1):
        xx = x0 + (k - lo) / (hi - lo) * plot_w
        label = f"{2 ** k:g}x" if k >= 0 else f"1/{2 ** -k}x"
        parts.append(f'<line x1="{xx:.1f}" y1="{top - 6}" x2="{xx:.1f}" y2="{axis_y}" stroke="#d5d9de" '
                     'stroke-width="1"/>')
        parts.append(f'<text x="{xx:.1f}" y="{axis_y + 16}" text-anchor="middle" class="muted">{label}</text>')
    parts.append(f'<line x1="{x(1):.1f}" y1="{top - 6}" x2="{x(1):.1f}" y2="{axis_y}" stroke="#1d2329"/>')
    parts.append(f'<line x1="{x(limit):.1f}" y1="{top - 6}" x2="{x(limit):.1f}" y2="{axis_y}" '
                 'stroke="#c62828" stroke-dasharray="4 3"/>')
    for i, (name, op) in enumerate(ops):
        cy = top + ROW_H * i + ROW_H / 2
        color = COLORS[op["verdict"]]
        parts.append(f'<text x="{x0 - 8}" y="{cy + 4:.1f}" text-anchor="end">{escape(name)}</text>')
        p10, p90, med = op["time_ratio_p10"], op["time_ratio_p90"], op["time_ratio_median"]
        parts.append(f'<line x1="{x(p10):.1f}" y1="{cy:.1f}" x2="{x(p90):.1f}" y2="{cy:.1f}" stroke="{color}" '
                     'stroke-width="3" stroke-opacity="0.45" stroke-linecap="round"/>')
        parts.append(f'<line x1="{x(1):.1f}" y1="{cy:.1f}" x2="{x(med):.1f}" y2="{cy:.1f}" stroke="{color}" '
                     'stroke-width="9" stroke-opacity="0.35"/>')
        parts.append(f'<circle cx="{x(med):.1f}" cy="{cy:.1f}" r="5.5" fill="{color}"><title>{escape(name)}: '
                     f'median {med:.3f}x, p10 {p10:.3f}x, p90 {p90:.3f}x over {op["timed"]} calls</title></circle>')
        parts.append(f'<text x="{x0 + plot_w + 10}" y="{cy + 4:.1f}">{med:.2f}x '
                     f'<tspan class="muted">({op["timed"]} calls)</tspan></text>')
    parts.append("</svg>")
    legend = (f'<p class="legend">Dot: median IR time / legacy time per call; thin bar: 10th to 90th '
              f'percentile; dashed red line: the {limit:.2f}x limit for <b>ready</b>. Log scale.</p>')
    return "".join(parts) + legend


def _err_bin_of(value: Any, bins: list[str]) -> int | None:
    if not isinstance(value, (int, float)) or value <= 0:
        return None
    lo = int(bins[1][2:])
    decade = math.floor(math.log10(value))
    return 1 + max(0, min(len(bins) - 3, decade - lo))


def error_chart(report: dict) -> str:
    """Heat strip per op: compared calls per decade of their max abs error, red where calls failed."""
    ops = [(n, o) for n, o in sorted_ops(report) if o["compared"] - o["errors"] > 0]
    if not ops:
        return '<p class="legend">No compared calls.</p>'
    bins = ops[0][1]["error_histogram"]["bins"]
    cell_w, cell_h, top = 34, ROW_H - 4, 8
    width = LABEL_W + cell_w * len(bins) + 20
    height = top + ROW_H * len(ops) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="error distribution per op">']
    for i, (name, op) in enumerate(ops):
        hist = op["error_histogram"]
        y = top + ROW_H * i
        total = max(1, sum(hist["passed"]) + sum(hist["failed"]))
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end">{escape(name)}</text>')
        for j, label in enumerate(bins):
            n_pass, n_fail = hist["passed"][j], hist["failed"][j]
            n = n_pass + n_fail
            cx = LABEL_W + cell_w * j
            if n == 0:
                fill, opacity = "#eef0f3", 1.0
            else:
                fill = "#c62828" if n_fail else "#00897b"
                opacity = 0.25 + 0.75 * math.log1p(n) / math.log1p(total)
            title = f"{name}, max abs error {label}: {n_pass} passed, {n_fail} failed"
            parts.append(f'<rect x="{cx}" y="{y}" width="{cell_w - 2}" height="{cell_h}" rx="2" fill="{fill}" '
                         f'fill-opacity="{opacity:.2f}"><title>{escape(title)}</title></rect>')
            if n:
                parts.append(f'<text x="{cx + (cell_w - 2) / 2:.1f}" y="{y + cell_h / 2 + 4:.1f}" '
                             f'text-anchor="middle" style="font-size:10px;fill:#fff">{n if n < 1000 else "1k+"}'
                             '</text>')
        worst = op.get("worst_abs") or {}
        atol_bin = _err_bin_of(worst.get("atol"), bins)
        if atol_bin is not None:
            mx = LABEL_W + cell_w * atol_bin + (cell_w - 2) / 2
            parts.append(f'<path d="M{mx - 4:.1f},{y + cell_h + 3} l4,-4 l4,4 z" fill="#1d2329">'
                         f'<title>atol {worst["atol"]:g}</title></path>')
    axis_y = top + ROW_H * len(ops) + 14
    for j, label in enumerate(bins):
        cx = LABEL_W + cell_w * j + (cell_w - 2) / 2
        parts.append(f'<text x="{cx:.1f}" y="{axis_y}" text-anchor="middle" class="muted">{escape(label)}</text>')
    parts.append(f'<text x="{LABEL_W}" y="{axis_y + 16}" class="muted">max abs error of a call (decade; '
                 'left: exact match)</text>')
    parts.append("</svg>")
    legend = ('<p class="legend">Each cell counts compared calls whose largest absolute error falls in that '
              'decade; teal: all passed, red: some failed the op\'s tolerance; darker = more calls. '
              'The triangle marks the op\'s atol.</p>')
    return "".join(parts) + legend


def verdict_bar(report: dict) -> str:
    counts = report["verdicts"]
    total = sum(counts.values()) or 1
    width, x = 720, 0.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="14" role="img" '
             'aria-label="verdicts">']
    for verdict in ("ready", "review", "blocked", "unseen"):
        w = width * counts[verdict] / total
        if w:
            parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="14" fill="{COLORS[verdict]}">'
                         f'<title>{counts[verdict]} {verdict}</title></rect>')
        x += w
    return "".join(parts) + "</svg>"


# ------------------------------------------------------------------ page
def _worst_html(entry: dict | None) -> str:
    if not entry:
        return "-"
    tol = f" (atol {entry['atol']:g}, rtol {entry['rtol']:g})" if entry.get("atol") is not None else ""
    return (f"{escape(fmt_err(entry['value']))} in <code>{escape(entry['output'])}</code>{escape(tol)} at "
            f"<code>{escape(entry['signature'])}</code>")


def _op_section(name: str, op: dict) -> str:
    verdict = op["verdict"]
    items = [
        f"<li><b>why</b>: {escape('; '.join(op['reasons']))}. <b>Next</b>: {escape(VERDICT_HELP[verdict])}.</li>",
        f"<li><b>class</b>: {', '.join(f'<code>{escape(c)}</code>' for c in op['classes']) or '-'}; "
        f"port: {escape(op['port'] or '-')}; modes: {escape(fmt_counts(op['modes']))}</li>",
    ]
    if verdict != "unseen":
        items += [
            f"<li><b>calls</b>: {op['seen']} seen, {op['compared']} compared, skipped: "
            f"{escape(fmt_counts(op['skipped']))}</li>",
            f"<li><b>code</b>: legacy <code>{escape(fmt_codes(op['legacy_providers']))}</code> &rarr; IR "
            f"<code>{escape(fmt_codes(op['ir_providers']))}</code></li>",
            f"<li><b>worst abs error</b>: {_worst_html(op['worst_abs'])}</li>",
            f"<li><b>worst rel error</b>: {_worst_html(op['worst_rel'])}</li>",
            f"<li><b>elements outside tolerance</b>: {op['elements_outside']}; NaN/Inf disagreements: "
            f"{op['nonfinite_mismatches']}</li>",
            f"<li><b>time</b> {escape(time_summary(op))}</li>",
        ]
    items += [f"<li><b>mismatch note</b> ({n}x): {escape(text)}</li>" for text, n in op["mismatch_notes"].items()]
    items += [f"<li><b>note</b>: {escape(n)}</li>" for n in op["notes"]]
    body = f"<ul>{''.join(items)}</ul>"
    if op["errors_by_kind"]:
        body += "<h3>IR-side errors</h3>" + _table(
            ["type", "message", "count", "where", "IR code", "first signature"],
            [[_t(e["type"]), _t(e["message"]), _n(e["count"]), (f"<code>{escape(e['where'])}</code>", ""),
              _t(e["ir"]), (f"<code>{escape(e['signature'])}</code>", "")] for e in op["errors_by_kind"]])
    if op["buckets"]:
        body += "<h3>By signature bucket</h3><div class=\"wide\">" + _table(
            ["dtype", "tokens", "shapes", "compared", "mismatches", "errors", "worst abs", "worst rel",
             "legacy µs", "IR µs", "IR/legacy", "IR code"],
            [[_t(b["dtype"]), _t(b["tokens"]), (f"<code>{escape(b['shapes'])}</code>", ""), _n(b["compared"]),
              _n(b["mismatches"], b["mismatches"] > 0), _n(b["errors"], b["errors"] > 0),
              _n(fmt_err(b["worst_abs"]["value"] if b["worst_abs"] else None)),
              _n(fmt_err(b["worst_rel"]["value"] if b["worst_rel"] else None)),
              _n(fmt_us(b["legacy_us_median"])), _n(fmt_us(b["ir_us_median"])),
              _n(fmt_ratio(b["time_ratio_median"])), _t(fmt_codes(b["ir_providers"]))] for b in op["buckets"]]) + "</div>"
        body += ('<p class="legend">Tokens are rounded up to a power of two; <code>T</code> stands for the '
                 'token dimension in the shapes.</p>')
    is_open = " open" if verdict == "blocked" else ""
    return (f'<details id="op-{escape(name)}"{is_open}><summary>{escape(name)} {_badge(verdict)}</summary>'
            f"{body}</details>")


def render_html(report: dict) -> str:
    runs = ", ".join(report["runs"]) or "(no run id)"
    v = report["verdicts"]
    pills = "".join(f'<span class="pill" style="background:{COLORS[k]}">{v[k]} {k}</span>'
                    for k in ("ready", "review", "blocked", "unseen"))
    rows = []
    unseen = [name for name, op in sorted_ops(report) if op["verdict"] == "unseen"]
    for name, op in sorted_ops(report):
        if op["verdict"] == "unseen":
            continue
        rows.append([
            (f'<a href="#op-{escape(name)}">{escape(name)}</a>', ""), (_badge(op["verdict"]), ""),
            _n(op["seen"]), _n(op["compared"]), _n(sum(op["skipped"].values())),
            _n(op["mismatches"], op["mismatches"] > 0), _n(op["errors"], op["errors"] > 0),
            _n(fmt_err(op["worst_abs"]["value"] if op["worst_abs"] else None)),
            _n(fmt_err(op["worst_rel"]["value"] if op["worst_rel"] else None)),
            (f"<code>{escape(fmt_codes(op['legacy_providers']))}</code>", ""),
            (f"<code>{escape(fmt_codes(op['ir_providers']))}</code>", ""),
            _n(fmt_us(op["legacy_us_median"])), _n(fmt_us(op["ir_us_median"])), _n(fmt_ratio(op["time_ratio_median"])),
        ])
    ops_table = _table(["op", "verdict", "seen", "compared", "skipped", "mismatches", "errors", "worst abs",
                        "worst rel", "legacy code", "IR code", "legacy µs", "IR µs", "IR/legacy"], rows)
    bad = report["bad_lines"]
    bad_html = ""
    if bad["total"]:
        bad_html = (f"<h2>Bad lines</h2><p>{_md_inline(bad_lines_text(report))} First examples:</p><ul>"
                    + "".join(f"<li><code>{escape(e['where'])}</code> ({escape(e['kind'])}): "
                              f"{escape(e['reason'])}</li>" for e in bad["examples"]) + "</ul>")
    thresholds = "".join(f"<li>{_md_inline(t)}</li>" for t in thresholds_text(report))
    sections = "".join(_op_section(name, op) for name, op in sorted_ops(report) if op["verdict"] != "unseen")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>irshim migration report: {escape(runs)}</title><style>{CSS}</style></head>
<body>
<h1>Migration report: {escape(runs)}</h1>
<p class="meta">Generated {escape(report['generated_at'])} from {escape(source_text(report))}
{_md_inline(bad_lines_text(report))}</p>
{f'<p class="meta"><b>Context</b>: {escape(context_text(report))}</p>' if report.get("context") else ""}
<div class="pills">{pills}</div>{verdict_bar(report)}
<div class="charts">
<div class="card"><h3>Time: IR path vs legacy, per call</h3>{ratio_chart(report)}</div>
<div class="card"><h3>Error distribution per op</h3>{error_chart(report)}</div>
</div>
<h2>Ops</h2>{'<div class="wide">' + ops_table + '</div>' if rows else '<p>No op was called.</p>'}
<p class="legend">µs: median time per call of each side; IR/legacy: median of the per-call ratios.</p>
{f'<p>{_badge("unseen")} registered, never called: ' + ", ".join(escape(n) for n in unseen) + '</p>' if unseen else ''}
<h2>Verdicts and thresholds</h2><ul>{thresholds}</ul>
{bad_html}
<h2>Per op</h2>{sections}
<p class="meta">irshim report &middot; report.json holds every figure on this page.</p>
</body></html>
"""
