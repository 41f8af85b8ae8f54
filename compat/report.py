"""Observation logs -> migration report (report.json, report.md, report.html).

Reads the JSONL records described in `records.py` one line at a time and keeps
only aggregates per op and signature bucket (counters, sums, sparse histograms,
the single worst call), so memory does not grow with the log. Large logs are
cut into byte ranges aggregated by worker processes and merged in order, so
the result does not depend on the number of workers.

A line that is not a JSON object of the schema is counted and skipped, never
fatal: ``corrupt`` (not JSON), ``truncated`` (an unterminated last line, as a
killed process leaves), ``invalid`` (JSON that breaks the schema),
``unsupported_version``.

The JSON report (`Aggregator.result()`) is what the Markdown and HTML
renderers read. Verdicts, per op, under `Thresholds`:

- ``unseen``: registered in a process of the run but never called;
- ``blocked``: at least one mismatch or one IR-side error;
- ``ready``: at least `min_compared` compared calls, no mismatch, no error, and
  the median per-call time ratio IR/legacy at most `max_time_ratio`;
- ``review``: anything else (too few compared calls, slower, calls seen but
  none compared, no timing).

A ready or slower verdict whose median ratio has a 95% interval holding `max_time_ratio`
says so in its reason (`LogHistogram.median_interval`): another run may read the other way.
"""

from __future__ import annotations

import json
import json.scanner
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
BAD_KINDS = ("corrupt", "truncated", "invalid", "unsupported_version")

# Distinct values kept per op (providers, classes, modes, skip reasons); a log
# with more is folded into "(other)" so that a pathological log stays bounded.
MAX_DISTINCT = 32
MAX_ERROR_KINDS = 16
MAX_BAD_EXAMPLES = 10
MAX_BUCKETS_PER_OP = 256
MESSAGE_CHARS = 300
MAX_PROCESSES = 4096
OTHER_BUCKET = ("(other)", "-", "(more buckets than the report keeps)")

# Error histogram: one bin per decade of a call's max abs error, from <=1e-9
# (bin 1) to >=1e2 (bin 12); bin 0 holds exact matches, bin 13 NaN/Inf.
ERR_DECADE_LO = -9
ERR_DECADE_HI = 2
ERR_BINS = ["0"] + [f"1e{d}" for d in range(ERR_DECADE_LO, ERR_DECADE_HI + 1)] + ["nan/inf"]

# Log histograms (time ratios, times): 1/32-octave bins (2.2% wide), each
# keeping the sum of its log2 values, so a median is exact when its bin's calls
# share one value and within 2.2% otherwise - well inside the 10% "not slower"
# margin. Sparse, so the range (2^-40 .. 2^40) costs nothing.
RATIO_STEPS_PER_OCTAVE = 32
RATIO_MAX_OCTAVES = 40

# Parallel aggregation: below 32 MiB (~50k records) a worker process costs more
# than it saves; 16 MiB tasks keep the progress bar moving and merges cheap.
PARALLEL_MIN_BYTES = 32 << 20
TASK_BYTES = 16 << 20

_NUMBER = (int, float)  # exact types: bool is not a number here


@dataclass(frozen=True)
class Thresholds:
    """What a verdict needs; printed in every report."""

    min_compared: int = 16
    """ready needs at least this many compared calls (one forward pass of a small model is not evidence)."""
    max_time_ratio: float = 1.10
    """ready needs median IR time / legacy time per call at most this (10% covers timer noise on CPU)."""


# ------------------------------------------------------------- signatures
def _is_tensor(arg: Any) -> bool:
    return type(arg) is dict and "shape" in arg and "dtype" in arg


def _tensors(signature: Any) -> list[dict]:
    """Every tensor ARG of a signature, positional first."""
    if type(signature) is not dict:
        return []
    found: list[dict] = []
    args = signature.get("args")
    if type(args) is list:
        found += [a for a in args if _is_tensor(a)]
    kwargs = signature.get("kwargs")
    if type(kwargs) is dict:
        found += [a for a in kwargs.values() if _is_tensor(a)]
    return found


def _prod(dims: Iterable[int]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


def _shape(arg: dict) -> list[int]:
    shape = arg.get("shape")
    if type(shape) is list and all(type(d) is int for d in shape):
        return shape
    return []


def token_class(tokens: int | None) -> str:
    """Tokens rounded up to a power of two, as a range: 0, 1, 2, 3-4, 5-8, 9-16, ..."""
    if tokens is None:
        return "-"
    if tokens <= 2:
        return str(max(tokens, 0))
    hi = 1 << (tokens - 1).bit_length()
    return f"{hi // 2 + 1}-{hi}"


def _bucket_of(signature: Any) -> tuple[str, str, str]:
    tensors = _tensors(signature)
    if not tensors:
        return ("-", "-", "no tensors")
    dtypes: list[str] = []
    for t in tensors:
        dtype = str(t.get("dtype"))
        if dtype not in dtypes:
            dtypes.append(dtype)
    shapes = [_shape(t) for t in tensors]
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


_bucket_cache: dict = {}


def bucket_of(signature: Any) -> tuple[str, str, str]:
    """(dtypes, token class, shape pattern) of a call's signature.

    The token count T is the product of the leading dimensions of the first
    tensor with two or more dimensions (else the length of the first 1-D
    tensor). Leading dimensions of that product are written ``T`` in every
    tensor, so calls that differ only in their number of tokens share a pattern
    such as ``[T,4096] [T,4096] [4096]``, and T is rounded up to a power of two.
    """
    # Memoised on (shape, dtype) of every tensor: a log repeats a few hundred
    # signatures a million times, and the key costs a third of the full work.
    try:
        args = signature["args"]
        key: Any = tuple([(tuple(a["shape"]), a["dtype"]) if type(a) is dict and "shape" in a else 0
                          for a in args])
        kwargs = signature.get("kwargs")
        if kwargs:
            key = (key, tuple([(k, tuple(a["shape"]), a["dtype"]) for k, a in kwargs.items()
                               if type(a) is dict and "shape" in a]))
        hit = _bucket_cache.get(key)
    except Exception:  # not the usual layout (or unhashable parts): no memo
        return _bucket_of(signature)
    if hit is None:
        if len(_bucket_cache) > 65536:
            _bucket_cache.clear()
        hit = _bucket_cache[key] = _bucket_of(signature)
    return hit


def _contiguous(shape: list[int], stride: Any) -> bool:
    if type(stride) is not list or len(stride) != len(shape):
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
            text += "(strided)"
        return text
    text = arg if isinstance(arg, str) else json.dumps(arg)
    return text if len(text) <= 40 else text[:37] + "..."


def format_signature(signature: Any) -> str:
    """One-line rendering of a call: ``bfloat16[7,4096] bfloat16[4096] 1e-06``."""
    if type(signature) is not dict:
        return "?"
    args = signature.get("args")
    parts = [_format_arg(a) for a in args] if type(args) is list else []
    kwargs = signature.get("kwargs")
    if type(kwargs) is dict:
        parts += [f"{k}={_format_arg(v)}" for k, v in kwargs.items()]
    return " ".join(parts) if parts else "()"


# ----------------------------------------------------------------- helpers
def _finite_or_str(value: float | None) -> float | str | None:
    """JSON-safe float: non-finite values become the strings "inf", "-inf", "nan"."""
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _num(value: Any) -> float | None:
    return float(value) if type(value) in _NUMBER else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _bump(counter: Counter, key: Any, n: int = 1, cap: int = MAX_DISTINCT) -> None:
    """counter[key] += n, folding keys beyond `cap` distinct ones into "(other)"."""
    if key in counter:
        counter[key] += n
        return
    key = str(key)
    if len(counter) >= cap and key not in counter:
        key = "(other)"
    counter[key] += n


def _merge_counter(into: Counter, other: Counter, cap: int = MAX_DISTINCT) -> None:
    for key, n in other.items():
        _bump(into, key, n, cap)


def _err_bin(value: float) -> int:
    if value != value or value in (math.inf, -math.inf):
        return len(ERR_BINS) - 1
    if value <= 0:
        return 0
    decade = math.floor(math.log10(value))
    return 1 + max(0, min(ERR_DECADE_HI - ERR_DECADE_LO, decade - ERR_DECADE_LO))


class LogHistogram:
    """Sparse log2 histogram of positive values (time ratios, times) with exact-ish quantiles."""

    __slots__ = ("bins", "n")

    def __init__(self) -> None:
        self.bins: dict[int, list] = {}  # bin -> [count, sum of log2 ratios]
        self.n = 0

    def add(self, ratio: float) -> None:
        lim = RATIO_STEPS_PER_OCTAVE * RATIO_MAX_OCTAVES
        if 0 < ratio < math.inf:
            log = math.log2(ratio)
            k = max(-lim, min(lim, math.floor(log * RATIO_STEPS_PER_OCTAVE)))
        else:  # zero or infinite time on one side: the extreme bins
            log, k = (-RATIO_MAX_OCTAVES, -lim) if ratio <= 0 else (RATIO_MAX_OCTAVES, lim)
        entry = self.bins.get(k)
        if entry is None:
            self.bins[k] = [1, log]
        else:
            entry[0] += 1
            entry[1] += log
        self.n += 1

    def merge(self, other: LogHistogram) -> None:
        for k, (count, log_sum) in other.bins.items():
            entry = self.bins.get(k)
            if entry is None:
                self.bins[k] = [count, log_sum]
            else:
                entry[0] += count
                entry[1] += log_sum
        self.n += other.n

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated (in log space) between the calls of rank
        floor and ceil of q (n-1); a call's value is the geometric mean of its bin."""
        if not self.n:
            return None
        position = q * (self.n - 1)
        lo, hi = math.floor(position), math.ceil(position)
        log_lo = log_hi = None
        seen = 0
        for k in sorted(self.bins):
            count, log_sum = self.bins[k]
            seen += count
            if log_lo is None and seen > lo:
                log_lo = log_sum / count
            if seen > hi:
                log_hi = log_sum / count
                break
        assert log_lo is not None and log_hi is not None, "counts add up to n"
        return 2 ** (log_lo + (position - lo) * (log_hi - log_lo))

    def median_interval(self, z: float = 1.96) -> tuple[float, float] | None:
        """A distribution-free 95% interval for the median (z = 1.96): the calls of rank
        n/2 - z sqrt(n)/2 and 1 + n/2 + z sqrt(n)/2 (1-based, clamped to the first and the
        last), the order statistics between which the median lies with about that probability
        (a little more: the ranks are rounded outwards)."""
        if not self.n:
            return None
        half = z * math.sqrt(self.n) / 2
        first = max(1, math.floor(self.n / 2 - half))
        last = min(self.n, math.ceil(1 + self.n / 2 + half))
        span = max(1, self.n - 1)
        return self.quantile((first - 1) / span), self.quantile((last - 1) / span)

    def octave_counts(self, lo: int = -3, hi: int = 3) -> list[int]:
        """Counts per half octave from 2**lo to 2**hi (the outer bins take everything beyond)."""
        half = RATIO_STEPS_PER_OCTAVE // 2
        out = [0] * ((hi - lo) * 2)
        for k, (count, _) in self.bins.items():
            i = math.floor(k / half) - 2 * lo
            out[max(0, min(len(out) - 1, i))] += count
        return out


# -------------------------------------------------------------- aggregates
# A "worst" entry: (rank, value, output name, signature text, atol, rtol);
# rank is the value with NaN as +inf, so a NaN error counts as the worst.
_NO_WORST = (-1.0, None, None, None, None, None)


def _interval_json(interval: tuple[float, float] | None) -> list[float | None] | None:
    return None if interval is None else [_round(interval[0]), _round(interval[1])]


def _worst_json(entry: tuple) -> dict | None:
    if entry[1] is None:
        return None
    return {"value": _finite_or_str(entry[1]), "output": entry[2], "signature": entry[3],
            "atol": entry[4], "rtol": entry[5]}


class _Stats:
    """What is summed over the compare and error records of one signature bucket."""

    __slots__ = ("compared", "mismatches", "errors", "n_outside", "nonfinite", "worst_abs",
                 "worst_rel", "legacy_us", "ir_us", "timed", "ratios", "legacy_times", "ir_times",
                 "ir_providers")

    def __init__(self) -> None:
        self.compared = 0
        self.mismatches = 0
        self.errors = 0
        self.n_outside = 0
        self.nonfinite = 0
        self.worst_abs = _NO_WORST
        self.worst_rel = _NO_WORST
        self.legacy_us = 0.0
        self.ir_us = 0.0
        self.timed = 0
        self.ratios = LogHistogram()
        self.legacy_times = LogHistogram()  # for median times: a warm-up call skews the mean
        self.ir_times = LogHistogram()
        self.ir_providers: Counter = Counter()

    def add_outputs(self, outputs: list, signature: Any) -> float | None:
        """Fold in a compare record's outputs; return the call's max abs error."""
        call_worst: float | None = None
        for out in outputs:
            if type(out) is not dict:
                continue
            # The writer stores a non-finite float as null (records.py `_jsonable`):
            # a null error is a NaN/Inf error, the worst kind.
            value = out.get("max_abs", "")
            if value is None:
                value = math.nan
            if type(value) in _NUMBER:
                rank = value if value == value else math.inf
                if call_worst is None or rank > call_worst:
                    call_worst = rank
                if rank > self.worst_abs[0]:
                    self.worst_abs = (rank, float(value), str(out.get("name", "?")), format_signature(signature),
                                      _num(out.get("atol")), _num(out.get("rtol")))
            value = out.get("max_rel", "")
            if value is None:
                value = math.nan
            if type(value) in _NUMBER:
                rank = value if value == value else math.inf
                if rank > self.worst_rel[0]:
                    self.worst_rel = (rank, float(value), str(out.get("name", "?")), format_signature(signature),
                                      _num(out.get("atol")), _num(out.get("rtol")))
            n_outside = out.get("n_outside")
            if type(n_outside) is int:
                self.n_outside += n_outside
            if out.get("nonfinite_mismatch") is True:
                self.nonfinite += 1
        return call_worst

    def add_time(self, legacy: Any, ir: Any) -> None:
        if type(legacy) not in _NUMBER or type(ir) not in _NUMBER or legacy < 0 or ir < 0:
            return
        self.timed += 1
        self.legacy_us += legacy
        self.ir_us += ir
        self.ratios.add(ir / legacy if legacy > 0 else math.inf)
        self.legacy_times.add(legacy)
        self.ir_times.add(ir)

    def merge(self, other: _Stats) -> None:
        self.compared += other.compared
        self.mismatches += other.mismatches
        self.errors += other.errors
        self.n_outside += other.n_outside
        self.nonfinite += other.nonfinite
        if other.worst_abs[0] > self.worst_abs[0]:
            self.worst_abs = other.worst_abs
        if other.worst_rel[0] > self.worst_rel[0]:
            self.worst_rel = other.worst_rel
        self.legacy_us += other.legacy_us
        self.ir_us += other.ir_us
        self.timed += other.timed
        self.ratios.merge(other.ratios)
        self.legacy_times.merge(other.legacy_times)
        self.ir_times.merge(other.ir_times)
        _merge_counter(self.ir_providers, other.ir_providers)

    def to_json(self) -> dict:
        timed = self.timed
        return {
            "compared": self.compared,
            "mismatches": self.mismatches,
            "errors": self.errors,
            "elements_outside": self.n_outside,
            "nonfinite_mismatches": self.nonfinite,
            "worst_abs": _worst_json(self.worst_abs),
            "worst_rel": _worst_json(self.worst_rel),
            "timed": timed,
            "legacy_us_total": round(self.legacy_us, 3),
            "ir_us_total": round(self.ir_us, 3),
            "legacy_us_mean": round(self.legacy_us / timed, 3) if timed else None,
            "ir_us_mean": round(self.ir_us / timed, 3) if timed else None,
            "legacy_us_median": _round(self.legacy_times.quantile(0.5), 3),
            "ir_us_median": _round(self.ir_times.quantile(0.5), 3),
            "time_ratio_median": _round(self.ratios.quantile(0.5)),
            "time_ratio_median_ci95": _interval_json(self.ratios.median_interval()),
            "time_ratio_p10": _round(self.ratios.quantile(0.1)),
            "time_ratio_p90": _round(self.ratios.quantile(0.9)),
            "time_ratio_total": round(self.ir_us / self.legacy_us, 4) if self.legacy_us > 0 else None,
            "ir_providers": dict(self.ir_providers.most_common()),
        }


class _OpAgg:
    """Everything known about one op (by registered name); its totals are its buckets merged."""

    __slots__ = ("name", "classes", "port", "registered", "seen", "compared_counted", "skipped",
                 "modes", "legacy", "buckets", "err_hist_pass", "err_hist_fail", "error_kinds",
                 "mismatch_notes")

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
        self.buckets: dict[tuple[str, str, str], _Stats] = {}
        self.err_hist_pass = [0] * len(ERR_BINS)
        self.err_hist_fail = [0] * len(ERR_BINS)
        self.error_kinds: dict[tuple[str, str], dict] = {}
        self.mismatch_notes: Counter = Counter()

    def bucket(self, key: tuple[str, str, str]) -> _Stats:
        stats = self.buckets.get(key)
        if stats is None:
            if len(self.buckets) >= MAX_BUCKETS_PER_OP and key != OTHER_BUCKET:
                return self.bucket(OTHER_BUCKET)
            stats = self.buckets[key] = _Stats()
        return stats

    def add_error_kind(self, key: tuple[str, str], entry: dict) -> None:
        if key not in self.error_kinds and len(self.error_kinds) >= MAX_ERROR_KINDS:
            key = ("(other)", "more distinct errors than the report keeps")
            entry = {**entry, "type": key[0], "message": key[1]}
        current = self.error_kinds.get(key)
        if current is None:
            self.error_kinds[key] = dict(entry)
        else:
            current["count"] += entry["count"]

    def totals(self) -> _Stats:
        total = _Stats()
        for stats in self.buckets.values():
            total.merge(stats)
        return total

    def merge(self, other: _OpAgg) -> None:
        for field in ("classes", "port", "skipped", "modes", "legacy", "mismatch_notes"):
            _merge_counter(getattr(self, field), getattr(other, field))
        self.registered |= other.registered
        self.seen += other.seen
        self.compared_counted += other.compared_counted
        for key, stats in other.buckets.items():
            self.bucket(key).merge(stats)
        for i in range(len(ERR_BINS)):
            self.err_hist_pass[i] += other.err_hist_pass[i]
            self.err_hist_fail[i] += other.err_hist_fail[i]
        for key, entry in other.error_kinds.items():
            self.add_error_kind(key, entry)


class RecordError(ValueError):
    """A JSON line that does not follow the record schema."""


# json.loads spends a third of its time in Python-level wrappers (bytes
# detection, whitespace, "extra data" checks); calling the C scanner directly
# parses a 500-byte record ~1.4x faster. Bad lines go through json.loads again
# for its error message.
_scan_once = json.scanner.make_scanner(json.JSONDecoder())
_BLANK = object()


def _parse(line: bytes | str) -> Any:
    """The JSON value of one line, _BLANK for an empty line; ValueError if it is not JSON."""
    text = (line.decode("utf-8") if isinstance(line, bytes) else line).strip()
    if not text:
        return _BLANK
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):
        return json.loads(text)  # raises with the usual message
    return value


class Aggregator:
    """Streams records in and keeps per-op aggregates; `result()` is the JSON report."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self.ops: dict[str, _OpAgg] = {}
        self.procs: dict[tuple[Any, Any], list[float]] = {}  # (run, pid) -> [first ts, last ts]
        self.kinds: Counter = Counter()
        self.bad: Counter = Counter()
        self.bad_examples: list[dict] = []
        self.files: dict[str, dict] = {}
        self.lines = 0

    # ------------------------------------------------------------- input
    def _op(self, name: Any) -> _OpAgg:
        agg = self.ops.get(name)
        if agg is None:
            if type(name) is not str or not name:
                raise RecordError(f"'op' must be a non-empty string, got {name!r}")
            agg = self.ops[name] = _OpAgg(name)
        return agg

    def _note_bad(self, kind: str, where: str, reason: str) -> None:
        self.bad[kind] += 1
        if len(self.bad_examples) < MAX_BAD_EXAMPLES:
            self.bad_examples.append({"kind": kind, "where": where, "reason": reason[:200]})

    def add_line(self, line: bytes | str, where: str = "?", last: bool = False) -> None:
        """Parse and add one log line; a bad line is counted, never raised.

        `last`: this is the last line of its file, so a line without its newline
        that does not parse is ``truncated`` (a writer killed mid-line).
        """
        self.lines += 1
        try:
            record = _parse(line)
        except ValueError as exc:  # UnicodeDecodeError included
            newline = b"\n" if isinstance(line, bytes) else "\n"
            kind = "truncated" if last and not line.endswith(newline) else "corrupt"
            self._note_bad(kind, where, f"not JSON: {exc}")
            return
        if type(record) is not dict:
            if record is _BLANK:
                return
            self._note_bad("invalid", where, f"a JSON {type(record).__name__}, not an object")
            return
        version = record.get("v")
        if version != SCHEMA_VERSION:
            self._note_bad("unsupported_version", where,
                           f"schema version {version!r}; this reader knows version {SCHEMA_VERSION}")
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
        if kind == "compare" or kind == "error":
            self._add_call(kind, rec)
        elif kind == "counts":
            self._add_counts(rec)
        elif kind == "ops":
            self._add_ops(rec)
        else:
            raise RecordError(f"unknown kind {kind!r}; expected one of {KINDS}")
        self.kinds[kind] += 1
        key = (rec.get("run"), rec.get("pid"))
        span = self.procs.get(key)
        if span is None:
            if len(self.procs) >= MAX_PROCESSES:
                key = ("(other)", None)
            span = self.procs.setdefault(key, [math.inf, -math.inf])
        ts = rec.get("ts")
        if type(ts) in _NUMBER:
            if ts < span[0]:
                span[0] = ts
            if ts > span[1]:
                span[1] = ts

    def _add_ops(self, rec: dict) -> None:
        entries = rec.get("ops")
        if type(entries) is not list:
            raise RecordError("'ops' record without an 'ops' list")
        for entry in entries:
            if type(entry) is not dict:
                raise RecordError("'ops' entry is not an object")
            agg = self._op(entry.get("op"))
            agg.registered = True
            if entry.get("cls"):
                _bump(agg.classes, entry["cls"], 0)
            if entry.get("port"):
                _bump(agg.port, entry["port"])

    def _add_counts(self, rec: dict) -> None:
        seen, compared = rec.get("seen", 0), rec.get("compared", 0)
        skipped = rec.get("skipped") or {}
        if type(seen) is not int or type(compared) is not int:
            raise RecordError("'counts' record with non-integer seen/compared")
        if type(skipped) is not dict or any(type(n) is not int for n in skipped.values()):
            raise RecordError("'skipped' is not an object of integer counts")
        agg = self._op(rec.get("op"))
        agg.seen += seen
        agg.compared_counted += compared
        _bump(agg.modes, rec.get("mode", "?"), seen)
        if rec.get("cls"):
            _bump(agg.classes, rec["cls"], 0)
        for reason, n in skipped.items():
            if n:
                _bump(agg.skipped, reason, n)

    def _add_call(self, kind: str, rec: dict) -> None:
        if kind == "compare":
            outputs = rec.get("outputs")
            if type(outputs) is not list:
                raise RecordError("'compare' record without an 'outputs' list")
        else:
            error = rec.get("error")
            if type(error) is not dict:
                raise RecordError("'error' record without an 'error' object")
        name = rec.get("op")
        agg = self.ops.get(name) or self._op(name)
        signature = rec.get("signature")
        key = bucket_of(signature)
        bucket = agg.buckets.get(key) or agg.bucket(key)
        cls = rec.get("cls")
        if cls and cls not in agg.classes:
            _bump(agg.classes, cls, 0)
        # Inlined _bump (the common case: a key seen before): ~10% of the time per record.
        value, counter = rec.get("legacy", "?"), agg.legacy
        if value in counter:
            counter[value] += 1
        else:
            _bump(counter, value)
        value, counter = rec.get("ir", "?"), bucket.ir_providers
        if value in counter:
            counter[value] += 1
        else:
            _bump(counter, value)
        bucket.compared += 1
        if kind == "error":
            bucket.errors += 1
            message = str(error.get("message", ""))[:MESSAGE_CHARS]
            etype = str(error.get("type", "?"))
            agg.add_error_kind((etype, message), {
                "type": etype, "message": message, "count": 1, "where": str(error.get("where", "?")),
                "ir": str(rec.get("ir", "?")), "signature": format_signature(signature)})
            return
        passed = rec.get("passed")
        if type(passed) is not bool:
            passed = all(type(o) is dict and o.get("passed") is True for o in outputs)
        if not passed:
            bucket.mismatches += 1
            for out in outputs:  # the comparison's own explanation (e.g. "IR shape [4] != legacy [8]")
                if type(out) is dict and out.get("note") and out.get("passed") is not True:
                    _bump(agg.mismatch_notes, f"{out.get('name', '?')}: {str(out['note'])[:MESSAGE_CHARS]}",
                          1, MAX_ERROR_KINDS)
        call_worst = bucket.add_outputs(outputs, signature)
        if call_worst is not None:
            (agg.err_hist_pass if passed else agg.err_hist_fail)[_err_bin(call_worst)] += 1
        bucket.add_time(rec.get("legacy_us"), rec.get("ir_us"))

    def add_range(self, path: Path, start: int = 0, end: int | None = None,
                  progress: Callable[[int], None] | None = None, progress_every: int = 1 << 16) -> None:
        """Add the lines of `path` that begin in bytes [start, end) (the whole file by default).

        Ranges of one file cut anywhere add up to the whole file: a range skips
        the line in progress at `start` and finishes the one in progress at `end`.
        `progress(bytes read)` is called every `progress_every` lines.
        """
        path = Path(path)
        size = path.stat().st_size
        end = size if end is None else min(end, size)
        lines_before, bad_before = self.lines, sum(self.bad.values())
        pos = start
        with path.open("rb") as fh:
            if start > 0:
                fh.seek(start - 1)
                pos += len(fh.readline()) - 1
            lineno = 0
            pending: bytes | None = None
            pending_at = pos
            # One line of look-ahead tells whether a line is the file's last.
            while pos < end:
                line = fh.readline()
                if not line:
                    break
                if pending is not None:
                    self.add_line(pending, self._where(path, start, lineno, pending_at))
                lineno += 1
                pending, pending_at = line, pos
                pos += len(line)
                if progress is not None and lineno % progress_every == 0:
                    progress(pos - start)
            if pending is not None:
                self.add_line(pending, self._where(path, start, lineno, pending_at), last=pos >= size)
        if progress is not None:
            progress(pos - start)
        entry = self.files.setdefault(str(path), {"path": str(path), "bytes": size, "lines": 0, "bad_lines": 0})
        entry["lines"] += self.lines - lines_before
        entry["bad_lines"] += sum(self.bad.values()) - bad_before

    @staticmethod
    def _where(path: Path, start: int, lineno: int, at: int) -> str:
        # Line numbers are known only when reading from the top of the file.
        return f"{path.name}:{lineno}" if start == 0 else f"{path.name}@byte {at}"

    def add_file(self, path: Path, progress: Callable[[int], None] | None = None) -> None:
        """Stream one whole JSONL file in."""
        self.add_range(path, 0, None, progress)

    def merge(self, other: Aggregator) -> None:
        """Fold in another aggregator's records (as if its lines came after ours)."""
        for name, agg in other.ops.items():
            mine = self.ops.get(name)
            if mine is None:
                self.ops[name] = mine = _OpAgg(name)
            mine.merge(agg)
        for key, (first, last) in other.procs.items():
            span = self.procs.get(key)
            if span is None:
                if len(self.procs) >= MAX_PROCESSES:
                    key = ("(other)", None)
                span = self.procs.setdefault(key, [math.inf, -math.inf])
            span[0], span[1] = min(span[0], first), max(span[1], last)
        self.kinds.update(other.kinds)
        self.bad.update(other.bad)
        self.bad_examples += other.bad_examples[: MAX_BAD_EXAMPLES - len(self.bad_examples)]
        for key, entry in other.files.items():
            mine = self.files.setdefault(key, {**entry, "lines": 0, "bad_lines": 0})
            mine["lines"] += entry["lines"]
            mine["bad_lines"] += entry["bad_lines"]
        self.lines += other.lines

    # ------------------------------------------------------------ output
    def verdict(self, agg: _OpAgg, totals: _Stats | None = None) -> tuple[str, list[str]]:
        """(verdict, reasons) of one op under `self.thresholds`."""
        t = self.thresholds
        s = totals or agg.totals()
        if agg.seen == 0 and s.compared == 0:
            return "unseen", ["registered but never called"]
        reasons: list[str] = []
        if s.errors:
            reasons.append(f"{s.errors} IR-side error(s)")
        if s.mismatches:
            reasons.append(f"{s.mismatches} mismatch(es) outside tolerance")
        if reasons:
            return "blocked", reasons
        median = _round(s.ratios.quantile(0.5))  # the figure the report prints is the one judged
        if s.compared == 0:
            modes = {m for m, n in agg.modes.items() if n}
            if modes == {"off"}:
                reasons.append("called in mode off only: nothing compared (run with IRSHIM_DISPATCH=shadow)")
            elif modes == {"on"}:
                reasons.append("called in mode on only: the IR result was used, nothing compared")
            else:
                reasons.append("calls seen but none compared (every call skipped: see the skip reasons)")
        elif s.compared < t.min_compared:
            reasons.append(f"{s.compared} compared call(s), fewer than the {t.min_compared} needed")
        if s.compared and median is None:
            reasons.append("no timing recorded")
        elif median is not None and median > t.max_time_ratio:
            reasons.append(f"IR path {median:.2f}x the legacy time per call (median), "
                           f"above {t.max_time_ratio:.2f}x{self._borderline(s)}")
        if reasons:
            return "review", reasons
        return "ready", [f"{s.compared} compared calls, all within tolerance, "
                         f"IR {median:.2f}x legacy time per call (median){self._borderline(s)}"]

    def _borderline(self, s: _Stats) -> str:
        """A note when the median's 95% interval holds the time limit: the verdict could go either
        way on another run of the same traffic (the CPU demo's silu_and_mul: 0.96-1.26x over runs)."""
        interval = s.ratios.median_interval()
        limit = self.thresholds.max_time_ratio
        if interval is None or not interval[0] <= limit < interval[1]:
            return ""
        return (f"; its 95% interval {interval[0]:.3f}-{interval[1]:.3f}x holds the {limit:.2f}x limit, "
                "so another run may read otherwise: more compared calls would settle it")

    def result(self) -> dict:
        """The JSON report: plain, JSON-safe data (non-finite errors as "inf"/"nan")."""
        ops = {}
        summary: Counter = Counter()
        for name in sorted(self.ops):
            agg = self.ops[name]
            totals = agg.totals()
            verdict, reasons = self.verdict(agg, totals)
            summary[verdict] += 1
            notes = []
            if agg.compared_counted != totals.compared:
                notes.append(f"counts records report {agg.compared_counted} compared call(s) but "
                             f"{totals.compared} compare/error record(s) were read "
                             "(a process may have stopped before its last flush, or lines were lost)")
            ops[name] = {
                "verdict": verdict,
                "reasons": reasons,
                "classes": sorted(agg.classes),
                "port": "/".join(sorted(agg.port)) or None,
                "registered": agg.registered,
                "seen": max(agg.seen, totals.compared),
                "seen_counted": agg.seen,
                "compared_counted": agg.compared_counted,
                "skipped": dict(agg.skipped.most_common()),
                "modes": dict(agg.modes.most_common()),
                "legacy_providers": dict(agg.legacy.most_common()),
                **totals.to_json(),
                "error_histogram": {"bins": ERR_BINS, "passed": list(agg.err_hist_pass),
                                    "failed": list(agg.err_hist_fail)},
                "ratio_histogram": {"lo_octave": -3, "hi_octave": 3, "per_octave": 2,
                                    "counts": totals.ratios.octave_counts(-3, 3)},
                "mismatch_notes": dict(agg.mismatch_notes.most_common()),
                "errors_by_kind": sorted(agg.error_kinds.values(), key=lambda e: -e["count"]),
                "buckets": [{"dtype": k[0], "tokens": k[1], "shapes": k[2], **b.to_json()}
                            for k, b in sorted(agg.buckets.items(), key=_bucket_sort_key)],
                "notes": notes,
            }
        first = min((f for f, _ in self.procs.values()), default=math.inf)
        last = max((t for _, t in self.procs.values()), default=-math.inf)
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runs": sorted({str(run) for run, _ in self.procs if run is not None}),
            "processes": sum(1 for _, pid in self.procs if type(pid) is int),
            "first_ts": first if math.isfinite(first) else None,
            "last_ts": last if math.isfinite(last) else None,
            "files": list(self.files.values()),
            "lines": self.lines,
            "records": {k: self.kinds[k] for k in KINDS},
            "bad_lines": {"total": sum(self.bad.values()), **{k: self.bad[k] for k in BAD_KINDS},
                          "examples": self.bad_examples},
            "thresholds": asdict(self.thresholds),
            "verdicts": {v: summary[v] for v in VERDICTS},
            "ops": ops,
        }


def _bucket_sort_key(item: tuple[tuple[str, str, str], _Stats]) -> tuple:
    (dtype, tokens, shapes), _ = item
    hi = tokens.split("-")[-1]
    return (dtype, shapes, int(hi) if hi.isdigit() else -1)


# ------------------------------------------------------------- aggregation
def _tasks(files: list[Path], task_bytes: int) -> list[tuple[Path, int, int]]:
    tasks = []
    for path in files:
        size = path.stat().st_size
        for start in range(0, max(size, 1), task_bytes):
            tasks.append((path, start, min(size, start + task_bytes)))
    return tasks


def _run_task(task: tuple[Path, int, int]) -> Aggregator:
    agg = Aggregator()
    agg.add_range(*task)
    return agg


def default_jobs() -> int:
    """Worker processes for large logs: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def aggregate(files: Iterable[Path], thresholds: Thresholds | None = None,
              progress: Callable[[int, int], None] | None = None, jobs: int | None = None) -> dict:
    """Aggregate the log `files` into the JSON report.

    `progress(bytes_done, bytes_total)` is called as the logs are read. Logs of
    more than PARALLEL_MIN_BYTES are cut into ranges read by `jobs` worker
    processes (default: one per CPU); the merged result is the same.
    """
    files = [Path(f) for f in files]
    total = sum(f.stat().st_size for f in files)
    jobs = default_jobs() if jobs is None else max(1, jobs)
    agg = Aggregator(thresholds)
    if jobs == 1 or total < PARALLEL_MIN_BYTES:
        offset = 0
        for path in files:
            callback = None if progress is None else (lambda done, base=offset: progress(base + done, total))
            agg.add_file(path, callback)
            offset += path.stat().st_size
        return agg.result()

    import concurrent.futures
    import multiprocessing

    tasks = _tasks(files, TASK_BYTES)
    # fork where there is one: a spawned worker would re-import irshim.compat and
    # with it torch (~200 MB and seconds per worker); the workers only parse JSON.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with concurrent.futures.ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=context) as pool:
        futures = {pool.submit(_run_task, task): task for task in tasks}
        done = 0
        for future in concurrent.futures.as_completed(futures):
            future.result()  # a worker's exception surfaces here
            _, start, end = futures[future]
            done += end - start
            if progress is not None:
                progress(done, total)
        for future in futures:  # merge in file order: worst-call ties resolve as in one pass
            agg.merge(future.result())
    return agg.result()


# ---------------------------------------------------------- files and runs
def report_dir() -> Path:
    """`$IRSHIM_REPORT_DIR`, else ./migration_reports."""
    return Path(os.environ.get(REPORT_DIR_VAR) or DEFAULT_REPORT_DIR)


def log_files(logs: Path) -> list[Path]:
    """The JSONL logs under `logs` (a folder, or one file), sorted by name."""
    logs = Path(logs)
    if logs.is_file():
        return [logs]
    files = sorted(p for p in logs.glob(LOG_GLOB) if p.is_file())
    return files or sorted(p for p in logs.glob("*.jsonl") if p.is_file())


def runs(base: Path) -> list[Path]:
    """Run folders under `base` that hold logs, the most recently written last."""
    base = Path(base)
    if not base.is_dir():
        return []
    found = []
    for child in base.iterdir():
        if child.is_dir():
            files = log_files(child)
            if files:
                found.append((max(f.stat().st_mtime for f in files), child.name, child))
    return [path for _, _, path in sorted(found)]


def write_report(report: dict, out: Path, context: dict[str, str] | None = None) -> dict[str, Path]:
    """Write report.json, report.md and report.html into `out`; return their paths.

    `context`: what the logs come from (machine, GPU, model...), shown under the title.
    """
    if context:
        report = {**report, "context": {str(k): str(v) for k, v in context.items()}}
    from .report_html import render_html
    from .report_md import render_markdown

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in REPORT_FILES}
    paths["report.json"].write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    paths["report.md"].write_text(render_markdown(report), encoding="utf-8")
    paths["report.html"].write_text(render_html(report), encoding="utf-8")
    logger.info("wrote %s", ", ".join(map(str, paths.values())))
    return paths
