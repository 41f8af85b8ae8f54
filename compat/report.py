"""Observation logs -> migration report (report.json, report.md, report.html).

Reads the JSONL records described in `records.py` one line at a time and keeps
only per-op and per-bucket aggregates (counters, sums, sparse histograms, the
single worst call), so memory does not grow with the log: a 1,000,000-record
log aggregates in a few seconds per 100k records on one core.

A line that is not a JSON object of the schema is counted (``corrupt``,
``truncated`` for an unterminated last line, ``invalid`` for JSON that breaks
the schema, ``unsupported_version``) and skipped, never fatal.

The JSON report (`Aggregator.result()`) is the one source the Markdown and HTML
renderers read. Verdicts, per op:

- ``unseen``: the op was registered in a process but never called;
- ``blocked``: at least one mismatch or IR-side error;
- ``ready``: at least `Thresholds.min_compared` compared calls, none of the
  above, and the median per-call time ratio IR/legacy at most
  `Thresholds.max_time_ratio`;
- ``review``: anything else (too few compared calls, slower, calls seen but
  none compared, no timing).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .records import SCHEMA_VERSION

logger = logging.getLogger(__name__)

REPORT_DIR_VAR = "IRSHIM_REPORT_DIR"
DEFAULT_REPORT_DIR = "migration_reports"
LOG_GLOB = "records-*.jsonl"
REPORT_FILES = ("report.json", "report.md", "report.html")

VERDICTS = ("blocked", "review", "ready", "unseen")
KINDS = ("ops", "counts", "compare", "error")

# Distinct values kept per op (providers, classes, error kinds, modes); a log
# with more is folded into "(other)" so that a pathological log stays bounded.
MAX_DISTINCT = 32
MAX_ERROR_KINDS = 16
MAX_BAD_EXAMPLES = 10
MAX_BUCKETS_PER_OP = 256
MESSAGE_CHARS = 300

# Error histogram: one bin per decade of the per-call max abs error, from
# <=1e-9 (bin 1) to >=1e2 (bin 12); bin 0 holds exact matches, bin 13 NaN/Inf.
ERR_DECADE_LO = -9
ERR_DECADE_HI = 2
ERR_BINS = ["0"] + [f"1e{d}" for d in range(ERR_DECADE_LO, ERR_DECADE_HI + 1)] + ["nan/inf"]

# Time-ratio histogram: 1/32-octave bins (2.2% wide), so the median ratio is
# known to about 1% - well inside the 10% "not slower" margin.
RATIO_STEPS_PER_OCTAVE = 32
RATIO_MAX_OCTAVES = 10


@dataclass(frozen=True)
class Thresholds:
    """What a verdict needs; printed in every report."""

    min_compared: int = 16
    """ready needs at least this many compared calls (one forward of a small model is not evidence)."""
    max_time_ratio: float = 1.10
    """ready needs median IR time / legacy time per call at most this (10% covers timer noise on CPU)."""


# ----------------------------------------------------------------- helpers
def _finite_or_str(value: float | None) -> float | str | None:
    """JSON-safe float: non-finite values become the strings "inf", "-inf", "nan"."""
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _rank(value: Any) -> float:
    """Sort key for errors: NaN and +inf rank worst, missing values lowest."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return -1.0
    if math.isnan(value):
        return math.inf
    return float(value)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _is_tensor(arg: Any) -> bool:
    return isinstance(arg, dict) and "shape" in arg and "dtype" in arg


def _tensors(signature: Any) -> list[tuple[str, dict]]:
    """(label, tensor ARG) for every tensor argument, positional first."""
    if not isinstance(signature, dict):
        return []
    found: list[tuple[str, dict]] = []
    args = signature.get("args")
    if isinstance(args, list):
        found += [(str(i), a) for i, a in enumerate(args) if _is_tensor(a)]
    kwargs = signature.get("kwargs")
    if isinstance(kwargs, dict):
        found += [(k, a) for k, a in kwargs.items() if _is_tensor(a)]
    return found


def _prod(dims: Iterable[int]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


def _shape(arg: dict) -> list[int]:
    shape = arg.get("shape")
    if isinstance(shape, list) and all(isinstance(d, int) for d in shape):
        return shape
    return []


def token_class(tokens: int | None) -> str:
    """Tokens rounded up to a power of two, as a range: 1, 2, 3-4, 5-8, 9-16, ..."""
    if tokens is None:
        return "-"
    if tokens <= 2:
        return str(max(tokens, 0))
    hi = 1 << (tokens - 1).bit_length()
    return f"{hi // 2 + 1}-{hi}"


def bucket_of(signature: Any) -> tuple[str, str, str]:
    """(dtypes, token class, shape pattern) of a call's signature.

    The token count T is the product of the leading dimensions of the first
    tensor with two or more dimensions (else the length of the first 1-D tensor);
    in every tensor, leading dimensions of that product are written ``T``, so
    that calls differing only in the number of tokens share a pattern such as
    ``[T,4096] [T,4096] [4096]``, and T itself is rounded to a power of two.
    """
    tensors = _tensors(signature)
    if not tensors:
        return ("-", "-", "no tensors")
    dtypes: list[str] = []
    for _, t in tensors:
        dtype = str(t.get("dtype"))
        if dtype not in dtypes:
            dtypes.append(dtype)
    shapes = [_shape(t) for _, t in tensors]
    tokens = next((_prod(s[:-1]) for s in shapes if len(s) >= 2), None)
    if tokens is None:
        tokens = next((s[0] for s in shapes if len(s) == 1), None)
    parts = []
    for s in shapes:
        if len(s) >= 2 and _prod(s[:-1]) == tokens:
            parts.append(f"[T,{s[-1]}]")
        elif len(s) == 1 and s[0] == tokens:
            parts.append("[T]")
        else:
            parts.append("[" + ",".join(map(str, s)) + "]")
    return ("/".join(dtypes), token_class(tokens), " ".join(parts))


def _contiguous(shape: list[int], stride: Any) -> bool:
    if not isinstance(stride, list) or len(stride) != len(shape):
        return True
    expected = 1
    for size, step in zip(reversed(shape), reversed(stride)):
        if size != 1 and step != expected:
            return False
        expected *= size
    return True


def _format_arg(arg: Any) -> str:
    if _is_tensor(arg):
        shape = _shape(arg)
        text = f"{arg.get('dtype')}[{','.join(map(str, shape))}]"
        if not _contiguous(shape, arg.get("stride")):
            text += " (strided)"
        return text
    text = json.dumps(arg) if not isinstance(arg, str) else arg
    return text if len(text) <= 40 else text[:37] + "..."


def format_signature(signature: Any) -> str:
    """One-line rendering of a signature: ``bfloat16[7,4096] bfloat16[4096] 1e-06``."""
    if not isinstance(signature, dict):
        return "?"
    parts = [_format_arg(a) for a in signature.get("args") or []]
    kwargs = signature.get("kwargs")
    if isinstance(kwargs, dict):
        parts += [f"{k}={_format_arg(v)}" for k, v in kwargs.items()]
    return " ".join(parts) if parts else "()"


def _bump(counter: Counter, key: str, n: int = 1, cap: int = MAX_DISTINCT) -> None:
    """Counter increment that folds keys beyond `cap` distinct ones into "(other)"."""
    if key not in counter and len(counter) >= cap:
        key = "(other)"
    counter[key] += n


class RatioHistogram:
    """Sparse log2 histogram of per-call time ratios (IR / legacy).

    Each 1/32-octave bin keeps its count and the sum of its log2 ratios, so a
    quantile is the geometric mean of its bin: exact when the bin's calls share
    one ratio, within 2.2% otherwise.
    """

    __slots__ = ("bins", "n")

    def __init__(self) -> None:
        self.bins: dict[int, list] = {}
        self.n = 0

    def add(self, ratio: float) -> None:
        lim = RATIO_STEPS_PER_OCTAVE * RATIO_MAX_OCTAVES
        if ratio > 0 and math.isfinite(ratio):
            log = math.log2(ratio)
            k = max(-lim, min(lim, math.floor(log * RATIO_STEPS_PER_OCTAVE)))
        else:  # zero or infinite time on one side: clamp to the extreme bins
            log = -RATIO_MAX_OCTAVES if ratio <= 0 else RATIO_MAX_OCTAVES
            k = -lim if ratio <= 0 else lim
        entry = self.bins.get(k)
        if entry is None:
            self.bins[k] = [1, log]
        else:
            entry[0] += 1
            entry[1] += log
        self.n += 1

    def quantile(self, q: float) -> float | None:
        """The q-quantile (nearest rank below), as the geometric mean of its bin."""
        if not self.n:
            return None
        target = math.floor(q * (self.n - 1))
        seen = 0
        for k in sorted(self.bins):
            count, log_sum = self.bins[k]
            seen += count
            if seen > target:
                return 2 ** (log_sum / count)
        return None  # unreachable

    def octave_counts(self, lo: int = -3, hi: int = 3) -> list[int]:
        """Counts per half-octave from 2**lo to 2**hi (outer bins hold everything beyond)."""
        half = RATIO_STEPS_PER_OCTAVE // 2
        out = [0] * ((hi - lo) * 2)
        for k, (n, _) in self.bins.items():
            i = math.floor(k / half) - 2 * lo
            out[max(0, min(len(out) - 1, i))] += n
        return out


# -------------------------------------------------------------- aggregates
class _Stats:
    """What is summed over compare/error records, for an op or one bucket."""

    __slots__ = ("compared", "mismatches", "errors", "n_outside", "nonfinite",
                 "worst_abs", "worst_rel", "legacy_us", "ir_us", "timed", "ratios",
                 "ir_providers")

    def __init__(self) -> None:
        self.compared = 0
        self.mismatches = 0
        self.errors = 0
        self.n_outside = 0
        self.nonfinite = 0
        self.worst_abs: dict | None = None
        self.worst_rel: dict | None = None
        self.legacy_us = 0.0
        self.ir_us = 0.0
        self.timed = 0
        self.ratios = RatioHistogram()
        self.ir_providers: Counter = Counter()

    def add_outputs(self, outputs: list, signature_text: Callable[[], str]) -> None:
        for out in outputs:
            if not isinstance(out, dict):
                continue
            name = str(out.get("name", "?"))
            for key, attr in (("max_abs", "worst_abs"), ("max_rel", "worst_rel")):
                value = _num(out.get(key))
                if value is None:
                    continue
                current = getattr(self, attr)
                if current is None or _rank(value) > _rank(current["value"]):
                    setattr(self, attr, {"value": value, "output": name, "signature": signature_text(),
                                         "atol": _num(out.get("atol")), "rtol": _num(out.get("rtol"))})
            n_out = out.get("n_outside")
            if isinstance(n_out, int) and not isinstance(n_out, bool):
                self.n_outside += n_out
            if out.get("nonfinite_mismatch") is True:
                self.nonfinite += 1

    def add_time(self, legacy_us: Any, ir_us: Any) -> None:
        legacy, ir = _num(legacy_us), _num(ir_us)
        if legacy is None or ir is None or legacy < 0 or ir < 0:
            return
        self.timed += 1
        self.legacy_us += legacy
        self.ir_us += ir
        self.ratios.add(ir / legacy if legacy > 0 else math.inf)

    def to_json(self) -> dict:
        def worst(entry: dict | None) -> dict | None:
            return None if entry is None else {**entry, "value": _finite_or_str(entry["value"])}

        median = self.ratios.quantile(0.5)
        return {
            "compared": self.compared,
            "mismatches": self.mismatches,
            "errors": self.errors,
            "elements_outside": self.n_outside,
            "nonfinite_mismatches": self.nonfinite,
            "worst_abs": worst(self.worst_abs),
            "worst_rel": worst(self.worst_rel),
            "timed": self.timed,
            "legacy_us_total": round(self.legacy_us, 3),
            "ir_us_total": round(self.ir_us, 3),
            "legacy_us_mean": round(self.legacy_us / self.timed, 3) if self.timed else None,
            "ir_us_mean": round(self.ir_us / self.timed, 3) if self.timed else None,
            "time_ratio_median": None if median is None else round(median, 4),
            "time_ratio_p10": _round(self.ratios.quantile(0.1)),
            "time_ratio_p90": _round(self.ratios.quantile(0.9)),
            "time_ratio_total": round(self.ir_us / self.legacy_us, 4) if self.legacy_us > 0 else None,
            "ir_providers": dict(self.ir_providers.most_common()),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class _OpAgg:
    __slots__ = ("name", "classes", "port", "registered", "seen", "compared_counted", "skipped",
                 "modes", "legacy", "stats", "buckets", "err_hist_pass", "err_hist_fail",
                 "error_kinds")

    def __init__(self, name: str) -> None:
        self.name = name
        self.classes: Counter = Counter()
        self.port: Counter = Counter()
        self.registered = False
        self.seen = 0
        self.compared_counted = 0
        self.skipped: Counter = Counter()
        self.modes: Counter = Counter()
        self.legacy: Counter = Counter()
        self.stats = _Stats()
        self.buckets: dict[tuple[str, str, str], _Stats] = {}
        self.err_hist_pass = [0] * len(ERR_BINS)
        self.err_hist_fail = [0] * len(ERR_BINS)
        self.error_kinds: dict[tuple[str, str], dict] = {}

    def bucket(self, key: tuple[str, str, str]) -> _Stats:
        stats = self.buckets.get(key)
        if stats is None:
            if len(self.buckets) >= MAX_BUCKETS_PER_OP:
                key = ("(other)", "-", "(more buckets than the report keeps)")
                stats = self.buckets.get(key)
            if stats is None:
                stats = self.buckets[key] = _Stats()
        return stats


def _err_bin(value: float | None) -> int:
    if value is None:
        return -1
    if not math.isfinite(value):
        return len(ERR_BINS) - 1
    if value <= 0:
        return 0
    decade = math.floor(math.log10(value))
    return 1 + max(0, min(ERR_DECADE_HI - ERR_DECADE_LO, decade - ERR_DECADE_LO))


class RecordError(ValueError):
    """A JSON line that does not follow the record schema."""


class Aggregator:
    """Streams records in, keeps per-op aggregates; `result()` is the JSON report."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self.ops: dict[str, _OpAgg] = {}
        self.runs: Counter = Counter()
        self.pids: set[tuple[str, int]] = set()
        self.kinds: Counter = Counter()
        self.bad: Counter = Counter()
        self.bad_examples: list[dict] = []
        self.files: list[dict] = []
        self.lines = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    # ------------------------------------------------------------- input
    def _op(self, name: Any) -> _OpAgg:
        if not isinstance(name, str) or not name:
            raise RecordError("missing 'op'")
        agg = self.ops.get(name)
        if agg is None:
            agg = self.ops[name] = _OpAgg(name)
        return agg

    def _note_bad(self, kind: str, where: str, reason: str) -> None:
        self.bad[kind] += 1
        if len(self.bad_examples) < MAX_BAD_EXAMPLES:
            self.bad_examples.append({"kind": kind, "where": where, "reason": reason[:200]})

    def add_line(self, line: bytes | str, where: str = "?", last: bool = False) -> None:
        """Parse and add one log line; bad lines are counted, never raised."""
        self.lines += 1
        text = line.strip()
        if not text:
            return
        try:
            record = json.loads(text)
        except ValueError as exc:
            unterminated = last and not (line.endswith(b"\n") if isinstance(line, bytes) else line.endswith("\n"))
            self._note_bad("truncated" if unterminated else "corrupt", where, f"not JSON: {exc}")
            return
        if not isinstance(record, dict):
            self._note_bad("invalid", where, f"a JSON {type(record).__name__}, not an object")
            return
        version = record.get("v")
        if version != SCHEMA_VERSION:
            self._note_bad("unsupported_version", where,
                           f"schema version {version!r}; this reader knows {SCHEMA_VERSION}")
            return
        try:
            self.add_record(record)
        except RecordError as exc:
            self._note_bad("invalid", where, str(exc))
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            self._note_bad("invalid", where, f"{type(exc).__name__}: {exc}")

    def add_record(self, rec: dict) -> None:
        """Add one parsed record (schema: records.py); RecordError if it breaks the schema."""
        kind = rec.get("kind")
        if kind not in KINDS:
            raise RecordError(f"unknown kind {kind!r}; expected one of {KINDS}")
        run, pid, ts = rec.get("run"), rec.get("pid"), _num(rec.get("ts"))
        if kind == "ops":
            entries = rec.get("ops")
            if not isinstance(entries, list):
                raise RecordError("'ops' record without an 'ops' list")
            for entry in entries:
                if not isinstance(entry, dict):
                    raise RecordError("'ops' entry is not an object")
                agg = self._op(entry.get("op"))
                agg.registered = True
                if entry.get("cls"):
                    _bump(agg.classes, str(entry["cls"]), 0)
                if entry.get("port"):
                    _bump(agg.port, str(entry["port"]))
        elif kind == "counts":
            agg = self._op(rec.get("op"))
            seen, compared = rec.get("seen", 0), rec.get("compared", 0)
            if not isinstance(seen, int) or not isinstance(compared, int):
                raise RecordError("'counts' record with non-integer seen/compared")
            agg.seen += seen
            agg.compared_counted += compared
            _bump(agg.modes, str(rec.get("mode", "?")), seen)
            if rec.get("cls"):
                _bump(agg.classes, str(rec["cls"]), 0)
            skipped = rec.get("skipped") or {}
            if not isinstance(skipped, dict):
                raise RecordError("'skipped' is not an object")
            for reason, n in skipped.items():
                if isinstance(n, int) and n:
                    _bump(agg.skipped, str(reason), n)
        else:
            self._add_call(kind, rec)
        self.kinds[kind] += 1
        if isinstance(run, str):
            _bump(self.runs, run, 1, cap=MAX_DISTINCT * 4)
        if isinstance(pid, int) and len(self.pids) < 4096:
            self.pids.add((str(run), pid))
        if ts is not None:
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)

    def _add_call(self, kind: str, rec: dict) -> None:
        agg = self._op(rec.get("op"))
        signature = rec.get("signature")
        bucket = agg.bucket(bucket_of(signature))
        sig_text: str | None = None

        def signature_text() -> str:
            nonlocal sig_text
            if sig_text is None:
                sig_text = format_signature(signature)
            return sig_text

        if rec.get("cls"):
            _bump(agg.classes, str(rec["cls"]), 0)
        _bump(agg.legacy, str(rec.get("legacy", "?")))
        ir = str(rec.get("ir", "?"))
        for stats in (agg.stats, bucket):
            stats.compared += 1
            _bump(stats.ir_providers, ir)
        if kind == "error":
            error = rec.get("error")
            if not isinstance(error, dict):
                raise RecordError("'error' record without an 'error' object")
            agg.stats.errors += 1
            bucket.errors += 1
            etype = str(error.get("type", "?"))
            message = str(error.get("message", ""))[:MESSAGE_CHARS]
            key = (etype, message)
            if key not in agg.error_kinds and len(agg.error_kinds) >= MAX_ERROR_KINDS:
                key = ("(other)", "more distinct errors than the report keeps")
            entry = agg.error_kinds.get(key)
            if entry is None:
                entry = agg.error_kinds[key] = {
                    "type": key[0], "message": key[1], "count": 0,
                    "where": str(error.get("where", "?")), "ir": ir, "signature": signature_text(),
                }
            entry["count"] += 1
            return
        outputs = rec.get("outputs")
        if not isinstance(outputs, list):
            raise RecordError("'compare' record without an 'outputs' list")
        passed = rec.get("passed")
        if not isinstance(passed, bool):
            passed = all(isinstance(o, dict) and o.get("passed") is True for o in outputs)
        worst = None
        for out in outputs:
            value = _num(out.get("max_abs")) if isinstance(out, dict) else None
            if value is not None and (worst is None or _rank(value) > _rank(worst)):
                worst = value
        b = _err_bin(worst)
        if b >= 0:
            (agg.err_hist_pass if passed else agg.err_hist_fail)[b] += 1
        for stats in (agg.stats, bucket):
            if not passed:
                stats.mismatches += 1
            stats.add_outputs(outputs, signature_text)
            stats.add_time(rec.get("legacy_us"), rec.get("ir_us"))

    def add_file(self, path: Path, progress: Callable[[int], None] | None = None,
                 progress_every: int = 1 << 16) -> None:
        """Stream one JSONL file in; `progress(bytes_read_in_this_file)` now and then."""
        path = Path(path)
        lines_before, bad_before = self.lines, sum(self.bad.values())
        done = 0
        with path.open("rb") as fh:
            lineno = 0
            pending: bytes | None = None
            for line in fh:
                # One line of look-ahead tells whether a line is the file's last
                # (an unterminated last line is "truncated", not "corrupt").
                if pending is not None:
                    self.add_line(pending, f"{path.name}:{lineno}")
                lineno += 1
                done += len(line)
                pending = line
                if progress is not None and lineno % progress_every == 0:
                    progress(done)
            if pending is not None:
                self.add_line(pending, f"{path.name}:{lineno}", last=True)
        if progress is not None:
            progress(done)
        self.files.append({"path": str(path), "bytes": done, "lines": self.lines - lines_before,
                           "bad_lines": sum(self.bad.values()) - bad_before})

    # ------------------------------------------------------------ output
    def verdict(self, agg: _OpAgg) -> tuple[str, list[str]]:
        """(verdict, reasons) of one op under `self.thresholds`."""
        t, s = self.thresholds, agg.stats
        if agg.seen == 0 and s.compared == 0:
            return "unseen", ["registered but never called"]
        reasons: list[str] = []
        if s.errors:
            reasons.append(f"{s.errors} IR-side error(s)")
        if s.mismatches:
            reasons.append(f"{s.mismatches} mismatch(es) outside tolerance")
        if reasons:
            return "blocked", reasons
        if s.compared == 0:
            reasons.append("calls seen but none compared (mode off, or every call skipped)")
        elif s.compared < t.min_compared:
            reasons.append(f"{s.compared} compared call(s), fewer than the {t.min_compared} needed")
        median = s.ratios.quantile(0.5)
        if s.compared and median is None:
            reasons.append("no timing recorded")
        elif median is not None and median > t.max_time_ratio:
            reasons.append(f"IR path {median:.2f}x the legacy time per call (median), "
                           f"above {t.max_time_ratio:.2f}x")
        if reasons:
            return "review", reasons
        return "ready", [f"{s.compared} compared calls, all within tolerance, "
                         f"IR {median:.2f}x legacy time (median)"]

    def result(self) -> dict:
        """The JSON report (see module docstring); plain data, JSON-safe."""
        ops = {}
        summary: Counter = Counter()
        for name in sorted(self.ops):
            agg = self.ops[name]
            verdict, reasons = self.verdict(agg)
            summary[verdict] += 1
            stats = agg.stats.to_json()
            notes = []
            if agg.compared_counted != agg.stats.compared:
                notes.append(f"counts records report {agg.compared_counted} compared call(s) but "
                             f"{agg.stats.compared} compare/error record(s) were read "
                             "(a process may have stopped before its last flush)")
            ops[name] = {
                "verdict": verdict,
                "reasons": reasons,
                "classes": sorted(agg.classes),
                "port": "/".join(sorted(agg.port)) or None,
                "registered": agg.registered,
                "seen": max(agg.seen, agg.stats.compared),
                "seen_counted": agg.seen,
                "compared_counted": agg.compared_counted,
                "skipped": dict(agg.skipped.most_common()),
                "modes": dict(agg.modes.most_common()),
                "legacy_providers": dict(agg.legacy.most_common()),
                **stats,
                "error_histogram": {"bins": ERR_BINS, "passed": list(agg.err_hist_pass),
                                    "failed": list(agg.err_hist_fail)},
                "ratio_histogram": {"lo_octave": -3, "hi_octave": 3,
                                    "counts": agg.stats.ratios.octave_counts(-3, 3)},
                "errors_by_kind": sorted(agg.error_kinds.values(), key=lambda e: -e["count"]),
                "buckets": [
                    {"dtype": k[0], "tokens": k[1], "shapes": k[2], **b.to_json()}
                    for k, b in sorted(agg.buckets.items(), key=_bucket_sort_key)
                ],
                "notes": notes,
            }
        bad_total = sum(self.bad.values())
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runs": sorted(self.runs),
            "processes": len(self.pids),
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "files": self.files,
            "lines": self.lines,
            "records": dict(self.kinds),
            "bad_lines": {"total": bad_total, **dict(self.bad), "examples": self.bad_examples},
            "thresholds": asdict(self.thresholds),
            "verdicts": {v: summary.get(v, 0) for v in VERDICTS},
            "ops": ops,
        }


def _bucket_sort_key(item: tuple[tuple[str, str, str], _Stats]) -> tuple:
    (dtype, tokens, shapes), _ = item
    lo = tokens.split("-")[-1]
    return (dtype, shapes, int(lo) if lo.isdigit() else -1)


# --------------------------------------------------------- files and runs
def report_dir() -> Path:
    """`$IRSHIM_REPORT_DIR`, else ./migration_reports."""
    return Path(os.environ.get(REPORT_DIR_VAR) or DEFAULT_REPORT_DIR)


def log_files(logs: Path) -> list[Path]:
    """The JSONL logs under `logs` (a folder or a single file), sorted by name."""
    logs = Path(logs)
    if logs.is_file():
        return [logs]
    files = sorted(logs.glob(LOG_GLOB))
    return files or sorted(p for p in logs.glob("*.jsonl") if p.is_file())


def runs(base: Path) -> list[Path]:
    """Run folders under `base` that hold logs, most recently written last."""
    base = Path(base)
    if not base.is_dir():
        return []
    found = []
    for child in base.iterdir():
        if child.is_dir():
            files = log_files(child)
            if files:
                found.append((max(f.stat().st_mtime for f in files), child.name, child))
    return [c for _, _, c in sorted(found)]


def aggregate(files: Iterable[Path], thresholds: Thresholds | None = None,
              progress: Callable[[int, int], None] | None = None) -> dict:
    """Aggregate `files` into the JSON report; `progress(bytes_done, bytes_total)`."""
    files = list(files)
    total = sum(Path(f).stat().st_size for f in files)
    agg = Aggregator(thresholds)
    offset = 0
    for path in files:
        callback = None if progress is None else (lambda done, base=offset: progress(base + done, total))
        agg.add_file(path, callback)
        offset += Path(path).stat().st_size
    return agg.result()


def write_report(report: dict, out: Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into `out`; return their paths."""
    from .report_html import render_html
    from .report_md import render_markdown

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in REPORT_FILES}
    paths["report.json"].write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    paths["report.md"].write_text(render_markdown(report))
    paths["report.html"].write_text(render_html(report))
    logger.info("wrote %s", ", ".join(map(str, paths.values())))
    return paths

