"""Process-safe JSONL observation log (schema below; writer: compat issue).

One file per process: ``$IRSHIM_REPORT_DIR/<run id>/records-<host>-<pid>.jsonl``.
Every line is one JSON object with these common keys:

    v      schema version (SCHEMA_VERSION)
    kind   "ops" | "counts" | "compare" | "error"
    run    run id (shared by all processes of one run)
    pid    process id
    ts     unix time in seconds (float)

kind "ops" (written with the first records into each log file, and again when new
classes appear; a flush with nothing else to write writes no file): every CustomOp
class known to the process, so a report can say which ops were never called ("unseen"):
    ops: [{"op": registered name, "cls": "module.QualName", "port": "ported" | "automatic"}]

kind "counts" (written at every flush; deltas since the previous flush of this
process, so a reader sums them):
    op, cls, mode ("off" | "shadow" | "on"),
    seen: calls intercepted,
    compared: calls compared (one "compare" or "error" record each),
    skipped: {reason: count}, reasons: "sampling", "cuda_graph_capture",
             "compiling", "port_refused" (the port does not accept this call),
             "same_code" (an unported class whose legacy method is forward_native:
             its IR side would run the same code, nothing to compare)

kind "compare" (one per compared call):
    op, cls, mode,
    legacy: the code that produced the returned result, e.g. "forward_cpu",
    ir: the code the IR path ran, e.g. "rms_norm/native" (op/provider; several
        joined with "+"),
    signature: {"args": [ARG...], "kwargs": {name: ARG}} where a tensor ARG is
        {"shape": [...], "dtype": "bfloat16", "stride": [...], "device": "cpu"}
        and any other ARG is its JSON value (or its repr() as a string),
    outputs: [{"name": "out0" | "mutated:x" ..., "shape": [...], "dtype": ...,
               "numel": int, "max_abs": float,
               "max_rel": float (|IR - legacy| / max(|legacy|, atol)),
               "n_outside": int (elements outside tolerance),
               "nonfinite_mismatch": bool (NaN/Inf where the other side has none),
               "atol": float, "rtol": float, "passed": bool,
               "note": str (optional: a shape/dtype/structure mismatch; the error
               figures may then be missing)}],
    Non-finite floats are written as null.
    passed: bool (all outputs passed),
    legacy_us, ir_us: time of each side in microseconds (float)

kind "error" (the IR side raised; the legacy result was returned):
    op, cls, mode, legacy, ir, signature,
    error: {"type": "RuntimeError", "message": str, "where": "file:line"},
    legacy_us
"""

SCHEMA_VERSION = 1


import atexit  # noqa: E402  (imports follow the schema, the contract, on purpose)
import json
import logging
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from . import flags as _flags

logger = logging.getLogger(__name__)

FLUSH_RECORDS = 512
"""Write when this many records are buffered..."""
FLUSH_SECONDS = 10.0
"""...or this long after the previous write (a daemon thread), and at exit."""
MAX_BUFFERED = 8192
"""Records kept while the folder is unwritable; older ones are dropped (and counted)."""


def run_id() -> str:
    """IRSHIM_RUN_ID, or a new one exported to the environment so worker processes share it."""
    value = os.environ.get(_flags.RUN_ID)
    if value:
        return _flags.parse_run_id(value)
    value = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    os.environ[_flags.RUN_ID] = value
    return value


class Counter:
    """Per (op, class, mode) call counts; the hot paths update the fields directly."""

    __slots__ = ("key", "seen", "compared", "skipped", "sampled_out", "left", "_run", "_written")

    def __init__(self, key: tuple[str, str, str]):
        self.key = key
        self.seen = 0
        self.compared = 0
        self.skipped: dict[str, int] = {}
        self.sampled_out = 0
        """Shadow calls left uncompared by sampling, up to the current run (written as
        skipped["sampling"])."""
        self.left = 0
        """Calls of the current run still to be sampled out: shadow sampling's hot path
        counts it down and counts nothing else (dispatch.sample_shadow)."""
        self._run = 0
        """Length of the current run of sampled-out calls; `_run - left` of them are made."""
        self._written: tuple[int, int, dict[str, int]] = (0, 0, {})

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def new_run(self, length: int) -> None:
        """Count the calls made of the current run of sampled-out calls (seen, sampled
        out) and start a run of `length` calls."""
        made = self._run - self.left
        self.seen += made
        self.sampled_out += made
        self._run = self.left = length

    def delta(self) -> dict[str, Any] | None:
        made = self._run - self.left  # the current run's calls so far
        seen, compared, skipped = self.seen + made, self.compared, dict(self.skipped)
        if self.sampled_out + made:
            skipped["sampling"] = skipped.get("sampling", 0) + self.sampled_out + made
        w_seen, w_compared, w_skipped = self._written
        d_skipped = {k: v - w_skipped.get(k, 0) for k, v in skipped.items() if v != w_skipped.get(k, 0)}
        if seen == w_seen and compared == w_compared and not d_skipped:
            return None
        self._written = (seen, compared, skipped)
        op, cls, mode = self.key
        return {"kind": "counts", "op": op, "cls": cls, "mode": mode, "seen": seen - w_seen,
                "compared": compared - w_compared, "skipped": d_skipped}


_encode = json.JSONEncoder(allow_nan=False, check_circular=False).encode
"""The C encoder, made once; records are trees of fresh dicts and lists (no cycle to look
for): a compare record 42 -> 38 µs on the 2-core dev VM against json.dumps."""


def _json_line(record: dict[str, Any]) -> str:
    """One JSONL line; non-finite floats (an infinite error) are written as null.

    The C encoder first, which refuses non-finite floats: walking every record in Python
    to replace them (`_jsonable`) cost ~100 µs a compare record on the 2-core dev VM, a
    shadow-mode compared call's share of a flush."""
    try:
        return _encode(record) + "\n"
    except (ValueError, TypeError):  # a non-finite float, or a key JSON cannot take as is
        return _encode(_jsonable(record)) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Recorder:
    """The process's observation log: buffered JSONL, one file per process.

    Records go under the report folder in effect when they were made: when
    IRSHIM_REPORT_DIR changes (``compat.override(report_dir=...)`` included), what is
    buffered, deferred or counted is written to the old folder first. Left unflushed, a
    block's records would otherwise follow the setting to wherever the next flush finds it."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._reset()
        self.before_flush: list[Callable[[], None]] = []
        """Hooks run first on every flush (shadow resolves deferred comparisons)."""
        self.known_classes: Callable[[], Iterable[dict[str, str]]] = lambda: ()
        """Source of the "ops" record (set by the dispatch module)."""
        me = weakref.ref(self)
        _flags.on_change(lambda: (r := me()) is not None and r._settings_changed())

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._buffer: list[dict[str, Any]] = []
        self._counters: dict[tuple[str, str, str], Counter] = {}
        self._ops_written: dict[str, frozenset[tuple[str, str, str]]] = {}
        """log path -> classes its "ops" records listed: each log file gets its own."""
        self._last_flush = time.monotonic()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._failed_dir: str | None = None
        self._dir = _flags.current().report_dir
        """The report folder the next flush writes to (`_settings_changed` moves it)."""
        self.dropped = 0

    def after_fork_in_child(self) -> None:
        """A forked worker starts its own file; what it inherited belongs to the parent."""
        self._lock = threading.RLock()
        self._reset()

    # ------------------------------------------------------------- recording
    def counter(self, op: str, cls: str, mode: str) -> Counter:
        key = (op, cls, mode)
        counter = self._counters.get(key)
        if counter is None:
            with self._lock:
                counter = self._counters.setdefault(key, Counter(key))
        return counter

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._buffer.append(record)
            if len(self._buffer) > MAX_BUFFERED:
                excess = len(self._buffer) - MAX_BUFFERED
                del self._buffer[:excess]
                self.dropped += excess
            due = len(self._buffer) >= FLUSH_RECORDS
            if self._thread is None:
                self._start_thread()
        if due:
            self.flush()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._periodic, name="irshim-records", daemon=True)
        self._thread.start()

    def _periodic(self) -> None:
        while not self._wake.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # never let the logger thread die on a bad record
                logger.exception("irshim: periodic flush of observation records failed")

    # -------------------------------------------------------------- writing
    def _settings_changed(self) -> None:
        new = _flags.current().report_dir
        with self._lock:
            if new != self._dir:
                self.flush()  # to the old folder; writes no file when nothing is pending
                self._dir = new

    def path(self) -> str:
        folder = os.path.join(self._dir, run_id())
        return os.path.join(folder, f"records-{socket.gethostname()}-{os.getpid()}.jsonl")

    def flush(self) -> int:
        """Write everything buffered; returns the number of lines written."""
        if os.getpid() != self._pid:
            self.after_fork_in_child()
        for hook in list(self.before_flush):
            try:
                hook()
            except Exception:
                logger.exception("irshim: a pre-flush hook failed")
        with self._lock:
            records = self._buffer
            self._buffer = []
            for counter in list(self._counters.values()):
                delta = counter.delta()
                if delta is not None:
                    records.append(delta)
            self._last_flush = time.monotonic()
            if not records:
                # No "ops" record alone either: a process that observed nothing (`off` mode,
                # the default) leaves no folder behind.
                return 0
            path = self.path()
            ops = self._ops_record(path)
            if ops is not None:
                records.insert(0, ops)
            common = {"v": SCHEMA_VERSION, "run": run_id(), "pid": os.getpid(), "ts": time.time()}
            lines = "".join(_json_line({**common, **r}) for r in records)
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                # One write of whole lines on an O_APPEND file: a reader never sees half a record.
                with open(path, "a", encoding="utf-8") as f:
                    f.write(lines)
                self._failed_dir = None
            except OSError as exc:
                folder = os.path.dirname(path)
                if self._failed_dir != folder:
                    self._failed_dir = folder
                    logger.warning("irshim cannot write observation records to %s (%s); the model keeps "
                                   "running without them. Set IRSHIM_REPORT_DIR to a writable folder.",
                                   folder, exc)
                self.dropped += len(records)
                return 0
            return len(records)

    def _ops_record(self, path: str) -> dict[str, Any] | None:
        known = list(self.known_classes())
        keys = frozenset((o["op"], o["cls"], o["port"]) for o in known)
        written = self._ops_written.get(path, frozenset())
        if not keys or keys <= written:
            return None
        self._ops_written[path] = written | keys
        return {"kind": "ops", "ops": sorted(known, key=lambda o: (o["op"], o["cls"]))}

    def close(self) -> None:
        self._wake.set()
        self.flush()


recorder = Recorder()
atexit.register(recorder.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: recorder.after_fork_in_child())
