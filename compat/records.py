"""Process-safe JSONL observation log (schema below; writer: compat issue).

One file per process: ``$IRSHIM_REPORT_DIR/<run id>/records-<host>-<pid>.jsonl``.
Every line is one JSON object with these common keys:

    v      schema version (SCHEMA_VERSION)
    kind   "ops" | "counts" | "compare" | "error"
    run    run id (shared by all processes of one run)
    pid    process id
    ts     unix time in seconds (float)

kind "ops" (written once per process at start-up, and again when new classes
appear): every CustomOp class known to the process, so a report can say which
ops were never called ("unseen"):
    ops: [{"op": registered name, "cls": "module.QualName", "port": "ported" | "automatic"}]

kind "counts" (written at every flush; deltas since the previous flush of this
process, so a reader sums them):
    op, cls, mode ("off" | "shadow" | "on"),
    seen: calls intercepted,
    compared: calls compared (one "compare" or "error" record each),
    skipped: {reason: count}, reasons: "sampling", "cuda_graph_capture",
             "compiling", "port_refused" (the port does not accept this call)

kind "compare" (one per compared call):
    op, cls, mode,
    legacy: the code that produced the returned result, e.g. "forward_cpu",
    ir: the code the IR path ran, e.g. "rms_norm/native" (op/provider; several
        joined with "+"),
    signature: {"args": [ARG...], "kwargs": {name: ARG}} where a tensor ARG is
        {"shape": [...], "dtype": "bfloat16", "stride": [...], "device": "cpu"}
        and any other ARG is its JSON value (or its repr() as a string),
    outputs: [{"name": "out0" | "mutated:x" ..., "shape": [...], "dtype": ...,
               "numel": int, "max_abs": float, "max_rel": float,
               "n_outside": int (elements outside tolerance),
               "nonfinite_mismatch": bool (NaN/Inf where the other side has none),
               "atol": float, "rtol": float, "passed": bool}],
    passed: bool (all outputs passed),
    legacy_us, ir_us: time of each side in microseconds (float)

kind "error" (the IR side raised; the legacy result was returned):
    op, cls, mode, legacy, ir, signature,
    error: {"type": "RuntimeError", "message": str, "where": "file:line"},
    legacy_us
"""

SCHEMA_VERSION = 1
