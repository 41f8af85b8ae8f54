"""The `irshim` command: report, status, scan, demo.

Each subcommand imports what it needs when it runs, so that `--help` and
argument errors stay quick. Output goes to stdout; progress and errors to
stderr. Exit codes: 0 done, 1 failed (the message says what to do), 2 usage
error, 3 `report --fail-on` matched.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPORT_DIR_VAR = "IRSHIM_REPORT_DIR"

MAIN_EPILOG = """\
workflow:
  1. IRSHIM_DISPATCH=shadow python serve.py     run the model; both paths run, legacy results are returned
  2. irshim report                               aggregate the latest run into migration_reports/<run>/
  3. irshim scan your.model.module              which CustomOps are ported, and their verdicts
  4. IRSHIM_DISPATCH=on IRSHIM_OPS=none,+rms_norm python serve.py   use the IR path for ready ops

try it first:  irshim demo     (a small Llama-style model on the CPU, about a minute)
"""


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


# ----------------------------------------------------------------- helpers
def _report_base() -> Path:
    return Path(os.environ.get(REPORT_DIR_VAR) or "migration_reports")


def _rel(path: Path) -> str:
    """`path` relative to the working directory when it is below it (shorter to read)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _Progress:
    """A progress bar on stderr: redrawn in place on a terminal, a line per quarter otherwise."""

    MIN_BYTES = 8 << 20  # smaller logs take under a second: no bar

    def __init__(self, enabled: bool = True, stream: Any = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self.last_draw = 0.0
        self.last_quarter = -1
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < self.MIN_BYTES:
            return
        now = time.monotonic()
        fraction = done / total if total else 1.0
        text = (f"reading logs {fraction:4.0%} {done / 2**20:,.0f}/{total / 2**20:,.0f} MiB "
                f"{now - self.start:.0f} s")
        if self.tty:
            if now - self.last_draw < 0.2 and done < total:
                return
            width = 30
            bar = "#" * int(width * fraction) + "." * (width - int(width * fraction))
            self.stream.write(f"\r[{bar}] {text}")
            self.drawn = True
        else:
            quarter = int(fraction * 4)
            if quarter == self.last_quarter:
                return
            self.last_quarter = quarter
            self.stream.write(text + "\n")
        self.last_draw = now
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ report
def _find_logs(args: argparse.Namespace) -> tuple[list[Path], Path]:
    """(log files, default output folder) for `irshim report`'s arguments."""
    from . import report as rp

    base = _report_base()
    if args.logs is not None:
        logs = Path(args.logs)
        if not logs.exists():
            raise UserError(f"--logs {logs}: no such file or folder. Pass the folder that holds the "
                            f"records-*.jsonl files of a run (by default {base}/<run id>/).")
        files = rp.log_files(logs)
        if not files:
            raise UserError(f"--logs {logs}: no records-*.jsonl (or *.jsonl) files there. Run the model with "
                            f"IRSHIM_DISPATCH=shadow (logs go to $IRSHIM_REPORT_DIR/<run id>/) and point "
                            "--logs at that folder.")
        return files, logs if logs.is_dir() else logs.parent
    if args.run is not None:
        folder = base / args.run
        files = rp.log_files(folder) if folder.is_dir() else []
        if not files:
            known = ", ".join(p.name for p in rp.runs(base)[-10:]) or "none"
            raise UserError(f"--run {args.run}: no logs in {folder}. Runs with logs under {base}: {known}. "
                            f"(Set {REPORT_DIR_VAR} if the run wrote elsewhere, or use --logs DIR.)")
        return files, folder
    found = rp.runs(base)
    if not found:
        where = f"{base} does not exist" if not base.exists() else f"no run folder under {base} holds logs"
        raise UserError(f"nothing to report: {where}. Run your model with IRSHIM_DISPATCH=shadow first "
                        f"(or try `irshim demo`), set {REPORT_DIR_VAR} to where its logs went, "
                        "or pass --logs DIR.")
    return rp.log_files(found[-1]), found[-1]


def cmd_report(args: argparse.Namespace) -> int:
    from . import report as rp

    files, default_out = _find_logs(args)
    out = Path(args.out) if args.out else default_out
    thresholds = rp.Thresholds(min_compared=args.min_compared, max_time_ratio=args.max_time_ratio)
    total = sum(f.stat().st_size for f in files)
    progress = _Progress(enabled=not args.no_progress)
    try:
        result = rp.aggregate(files, thresholds, progress=progress, jobs=args.jobs)
    finally:
        progress.close()
    records = sum(result["records"].values())
    if records == 0:
        bad = result["bad_lines"]["total"]
        raise UserError(f"{len(files)} log file(s) ({total} bytes) hold no observation records"
                        + (f" ({bad} bad line(s) skipped)" if bad else "")
                        + ". Were the ops called with IRSHIM_DISPATCH=shadow (or on)? Did the process "
                        "exit normally (records are flushed every 10 s and at exit)?")
    paths = rp.write_report(result, out)
    print_summary(result, paths)
    if args.fail_on:
        severity = ("blocked", "review") if args.fail_on == "review" else ("blocked",)
        failing = [name for name, op in result["ops"].items() if op["verdict"] in severity]
        if failing:
            print(f"--fail-on {args.fail_on}: {', '.join(sorted(failing))}", file=sys.stderr)
            return 3
    return 0


def print_summary(result: dict, paths: dict[str, Path]) -> None:
    """The report in a few lines: verdict counts, one line per called op, where the files are."""
    from .report_md import fmt_err, fmt_ratio, sorted_ops

    v = result["verdicts"]
    print(f"run {', '.join(result['runs']) or '?'}: {result['lines']} lines, "
          f"{result['records']['compare']} compared and {result['records']['error']} failed IR calls"
          + (f", {result['bad_lines']['total']} bad line(s) skipped" if result["bad_lines"]["total"] else ""))
    print(f"verdicts: {v['ready']} ready, {v['review']} review, {v['blocked']} blocked, {v['unseen']} unseen")
    rows = []
    for name, op in sorted_ops(result):
        if op["verdict"] == "unseen":
            continue
        worst = op["worst_abs"]["value"] if op["worst_abs"] else None
        rows.append([name, op["verdict"], str(op["compared"]), str(op["mismatches"]), str(op["errors"]),
                     fmt_err(worst), fmt_ratio(op["time_ratio_median"])])
    if rows:
        print(_table(rows, ["op", "verdict", "compared", "mismatches", "errors", "worst abs", "IR/legacy"]))
    print("report: " + "  ".join(_rel(p) for p in paths.values()))


# ------------------------------------------------------------------ status
def _status_data(tokens: int, hidden: int, dtype_name: str) -> dict:
    import torch

    import irshim.compat as compat
    from irshim.ir import IrOp, device_family, load_providers
    from irshim.ir import priority as ir_priority
    from irshim.ir import providers as ir_providers

    from . import dispatch
    from .auto import auto_op_for
    from .ports import find_port

    from irshim.ir import autotune

    flags = compat.flags.current()
    family = device_family()
    device = "cpu" if family == "cpu" else ("cuda" if family in ("cuda", "rocm") else family)
    dtype = getattr(torch, dtype_name)
    loaded = load_providers()
    ops = []
    # `status` reports; it never measures: ops on `auto` show cached choices only.
    tune_setting = os.environ.get("IRSHIM_TUNE")
    os.environ["IRSHIM_TUNE"] = "off"
    try:
        # This machine's accelerator first, then its CPU (`irshim tune --device cpu` on a GPU machine).
        tuned = [c for d in dict.fromkeys((device, "cpu")) for c in autotune.cached_choices(d)]
        ops = _op_status(IrOp.registry, tokens, hidden, dtype, device)
    finally:
        if tune_setting is None:
            os.environ.pop("IRSHIM_TUNE", None)
        else:
            os.environ["IRSHIM_TUNE"] = tune_setting
    import irshim.compat.layers  # noqa: F401  (irshim's own layers are listed even where no model imported them)

    classes = []
    for known in sorted(dispatch.known_classes(), key=lambda c: (c["op"], c["cls"])):
        cls = _import_qualname(known["cls"])
        info: dict[str, Any] = {**known, "mode": flags.mode_for(known["op"])}
        if cls is not None:
            info["enabled"] = _safe(lambda: bool(cls.enabled()))
            port = find_port(cls)
            if port is not None:
                info["ir_ops"] = sorted({v.op for v in port.variants})
            else:
                auto = _safe(lambda: auto_op_for(cls, known["op"], dispatch.base_of(cls)))
                if auto is not None:
                    info["providers"] = list(auto.providers)
                    info["priority"] = _safe(auto.get_priority)
        classes.append(info)
    return {
        "dispatch": flags.dispatch,
        "ops_selection": _describe_selection(flags.ops),
        "shadow_sample": flags.shadow_sample,
        "report_dir": flags.report_dir,
        "strict": flags.strict,
        "priority_env": ir_priority.env_value(),
        "run_id": os.environ.get("IRSHIM_RUN_ID"),
        "device_family": family,
        "typical_input": {"num_tokens": tokens, "hidden_size": hidden, "dtype": dtype_name, "device": device},
        "provider_packages": loaded,
        "provider_failures": dict(ir_providers.failures),
        "installed_bases": [f"{b.__module__}.{b.__qualname__}" for b in compat.installed()],
        "ir_ops": ops,
        "tuned_choices": tuned,
        "tuning_cache": str(autotune.TuneCache().path),
        "custom_ops": classes,
    }


def _op_status(registry: dict, tokens: int, hidden: int, dtype: Any, device: str) -> list[dict]:
    ops = []
    for name in sorted(registry):
        op = registry[name]
        entry: dict[str, Any] = {"op": name, "doc": op.doc}
        try:
            requested, source = op.requested_priority()
            entry.update(requested=requested, source=source, priority=op.get_priority())
        except Exception as exc:  # a bad IRSHIM_PRIORITY entry for this op
            entry.update(requested=[], source="error", priority=[], error=str(exc))
        try:
            inputs = op.generate_inputs(tokens, hidden, dtype, device)
            entry["verdicts"] = op.explain(*inputs)
            entry["chosen"] = op.dispatch(*inputs).provider
        except Exception as exc:
            entry["verdicts"] = [(p, "supported" if impl.supported else "not supported on this platform")
                                 for p, impl in op.impls.items()]
            entry["chosen"] = None
            entry["inputs_error"] = f"{type(exc).__name__}: {exc}"
        ops.append(entry)
    return ops


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _import_qualname(dotted: str) -> type | None:
    import importlib

    module_name, _, qualname = dotted.rpartition(".")
    while module_name:
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            module_name, _, head = module_name.rpartition(".")
            qualname = f"{head}.{qualname}"
            continue
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        return obj if isinstance(obj, type) else None
    return None


def _describe_selection(selection: Any) -> str:
    text = "all" if selection.default else "none"
    text += "".join(f",+{n}" for n in sorted(selection.enabled))
    text += "".join(f",-{n}" for n in sorted(selection.disabled))
    return text


def cmd_status(args: argparse.Namespace) -> int:
    data = _status_data(args.tokens, args.hidden, args.dtype)
    if args.json:
        import json

        print(json.dumps(data, indent=1, default=str))
        return 0
    print(f"IRSHIM_DISPATCH   {data['dispatch']}")
    print(f"IRSHIM_OPS        {data['ops_selection']}")
    print(f"IRSHIM_PRIORITY   {data['priority_env'] or '(unset: platform defaults)'}")
    print(f"shadow sample     {data['shadow_sample']:g}    strict: {'yes' if data['strict'] else 'no'}")
    print(f"report dir        {data['report_dir']}" + (f"    run id: {data['run_id']}" if data["run_id"] else ""))
    print(f"device family     {data['device_family']}")
    print(f"provider packages {', '.join(data['provider_packages']) or 'none'}")
    for name, err in data["provider_failures"].items():
        print(f"  failed to load {name}: {err}")
    if data["installed_bases"]:
        print(f"intercepted bases {', '.join(data['installed_bases'])}")
    t = data["typical_input"]
    print(f"\nIR ops (dispatch shown for {t['num_tokens']} tokens x {t['hidden_size']}, {t['dtype']}, "
          f"on {t['device']}):")
    for op in data["ir_ops"]:
        print(f"\n  {op['op']}: {op['doc']}")
        origin = (f"requested {','.join(op['requested'])} by {op['source']}" if op["requested"]
                  else "no list requested: the op's own semantics")
        print(f"    priority  {' > '.join(op['priority']) or '-'}   ({origin})")
        if op.get("error"):
            print(f"    ERROR     {op['error']}")
        if op.get("inputs_error"):
            print(f"    (no typical input: {op['inputs_error']})")
        print(f"    dispatch  {op['chosen'] or '-'}")
        for provider, verdict in op["verdicts"]:
            if verdict == "not supported on this platform":
                verdict = f"not supported on this platform ({data['device_family']})"
            print(f"      {provider:<14} {verdict}")
    print(f"\nTuned choices for `auto` on this machine ({data['tuning_cache']}):")
    if data["tuned_choices"]:
        print(_table([[c["op"], c["bucket"], c["winner"],
                       ", ".join(f"{p} {us:.1f}" for p, us in sorted(c["times_us"].items(), key=lambda kv: kv[1]))]
                      for c in data["tuned_choices"]], ["op", "bucket", "winner", "candidates (µs)"]))
    else:
        print("  none (`irshim tune OP ...`, or IRSHIM_PRIORITY=op=auto tunes on first use)")
    print("\nCustomOp classes:")
    rows = []
    for c in data["custom_ops"]:
        if c["port"] == "ported":
            detail = "IR ops: " + ", ".join(c.get("ir_ops", []))
        else:
            detail = ("providers: " + ", ".join(c.get("providers") or [])
                      + ("; priority " + " > ".join(c["priority"]) if c.get("priority") else ""))
        enabled = {True: "yes", False: "no", None: "?"}[c.get("enabled")]
        rows.append([c["op"], c["cls"], c["port"], c["mode"], enabled, detail])
    if rows:
        print(_table(rows, ["name", "class", "port", "mode", "enabled", "IR side"]))
    else:
        print("  none known (import your model's modules, or `irshim scan MODULE`)")
    return 0


# -------------------------------------------------------------------- scan
FORWARD_METHODS = ("forward_native", "forward_cuda", "forward_hip", "forward_cpu",
                   "forward_xpu", "forward_tpu", "forward_oot")


def _import_target(target: str) -> Any:
    """A module from a dotted name or a path to a .py file."""
    import importlib
    import importlib.util

    if target.endswith(".py") or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise ImportError(f"no such file {path}")
        name = path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path} is not a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(target)


def _is_custom_op_base(klass: type) -> bool:
    return klass.__name__ == "CustomOp" and any(m in klass.__dict__ for m in ("forward_native", "dispatch_forward"))


def _custom_op_base(cls: type) -> type | None:
    """The CustomOp base in `cls`'s ancestry (irshim's, vLLM's, or another with the protocol)."""
    for klass in cls.__mro__[1:]:
        if _is_custom_op_base(klass):
            return klass
    return None


def _latest_verdicts(base: Path) -> tuple[dict[str, str], str | None]:
    """op -> verdict from the most recent report.json under `base`."""
    import json

    reports = sorted(base.glob("*/report.json"), key=lambda p: p.stat().st_mtime) if base.is_dir() else []
    for path in reversed(reports):
        try:
            data = json.loads(path.read_text())
            return {name: op["verdict"] for name, op in data["ops"].items()}, str(path)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return {}, None


def scan_modules(targets: list[str], recursive: bool = False,
                 report_base: Path | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """(CustomOp subclasses defined in the modules, [(module, import error)])."""
    import pkgutil

    from .ports import find_port

    modules, failures = [], []
    for target in targets:
        try:
            module = _import_target(target)
        except Exception as exc:
            failures.append((target, f"{type(exc).__name__}: {exc}"))
            continue
        modules.append(module)
        if recursive and hasattr(module, "__path__"):
            for info in pkgutil.walk_packages(module.__path__, module.__name__ + "."):
                try:
                    modules.append(__import__(info.name, fromlist=["_"]))
                except Exception as exc:
                    failures.append((info.name, f"{type(exc).__name__}: {exc}"))
    prefixes = tuple(m.__name__ for m in modules)
    classes: dict[type, None] = {}
    for module in modules:
        for value in list(vars(module).values()):
            if isinstance(value, type) and not _is_custom_op_base(value) and _custom_op_base(value) is not None:
                if value.__module__ == module.__name__ or value.__module__.startswith(prefixes):
                    classes[value] = None
    verdicts, report = _latest_verdicts(report_base or _report_base())
    found = []
    for cls in classes:
        base = _custom_op_base(cls)
        overrides = [m for m in FORWARD_METHODS
                     if any(m in k.__dict__ for k in cls.__mro__[: cls.__mro__.index(base)])]
        name = getattr(cls, "name", None)
        name = name if isinstance(name, str) else None
        port = "ported" if find_port(cls) is not None else "automatic"
        found.append({"name": name or "(unregistered)", "cls": f"{cls.__module__}.{cls.__qualname__}",
                      "base": f"{base.__module__}.{base.__qualname__}", "overrides": overrides, "port": port,
                      "verdict": verdicts.get(name) if name else None, "report": report})
    found.sort(key=lambda c: (c["port"] != "automatic", c["name"], c["cls"]))
    return found, failures


def cmd_scan(args: argparse.Namespace) -> int:
    found, failures = scan_modules(args.modules, recursive=args.recursive, report_base=_report_base())
    for module, error in failures:
        print(f"irshim scan: cannot import {module}: {error}", file=sys.stderr)
    if args.json:
        import json

        print(json.dumps({"classes": found, "import_errors": dict(failures)}, indent=1))
        return 1 if failures and not found else 0
    if not found:
        if failures and len(failures) == len(args.modules):
            raise UserError("no module could be imported (see above). Check the names (dotted module "
                            "paths such as vllm.model_executor.layers.layernorm, or .py files) and that "
                            "they import in this Python environment.")
        print(f"no CustomOp subclasses in {', '.join(args.modules)}"
              + ("" if args.recursive else " (for a package, add --recursive to import its submodules)"))
        return 0
    rows = [[c["name"], c["cls"], ",".join(m.removeprefix("forward_") for m in c["overrides"]) or "-",
             c["port"], c["verdict"] or "-"] for c in found]
    print(_table(rows, ["name", "class", "overrides forward_*", "port", "verdict"]))
    todo = [c for c in found if c["port"] == "automatic"]
    report = next((c["report"] for c in found if c["report"]), None)
    print(f"\n{len(found)} CustomOp class(es): {len(found) - len(todo)} ported, {len(todo)} automatic"
          + (" (to port: " + ", ".join(c["name"] for c in todo) + ")" if todo else "")
          + (f"; verdicts from {_rel(Path(report))}" if report else "; no report found for verdicts"))
    return 0


# -------------------------------------------------------------------- tune
def cmd_tune(args: argparse.Namespace) -> int:
    import torch

    from irshim.ir import autotune, get_op

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    try:
        tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--tokens takes comma-separated integers, got {args.tokens!r}") from None
    try:
        ops = [get_op(name) for name in args.ops]
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None
    rows, results = [], []
    for op in ops:
        for t in tokens:
            call = op.generate_inputs(t, args.hidden, dtype, device)
            choice = autotune.tune(op, call, force=args.force)
            results.append(choice)
            times = ", ".join(f"{p} {us:.1f}" for p, us in sorted(choice.times_us.items(), key=lambda kv: kv[1]))
            out = "; ".join(f"{p}: {why}" for p, why in choice.disqualified.items()) or "-"
            rows.append([op.name, choice.bucket, times or "-", choice.winner or "(none valid)", out,
                         "cached" if choice.source == "disk" else f"{choice.tuning_ms:.0f} ms"])
    if args.json:
        import dataclasses
        import json

        print(json.dumps([dataclasses.asdict(c) for c in results], indent=1))
        return 0
    print(f"tuning on {device} ({args.dtype}, hidden {args.hidden}); cache: {autotune.TuneCache().path}")
    print(_table(rows, ["op", "bucket", "candidates (µs)", "winner", "disqualified", "tuning"]))
    return 0


# -------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from . import report as rp
    from .demo import run_demo

    started = time.monotonic()
    run = run_demo(steps=args.steps, device=args.device, dtype=args.dtype, mode=args.mode,
                   report_dir=args.report_dir, run_id=args.run, layers=args.layers, log=print)
    result = rp.aggregate(rp.log_files(run.logs), progress=None)
    if sum(result["records"].values()) == 0:
        raise UserError(f"the demo wrote no observation records to {run.logs}; "
                        "is IRSHIM_REPORT_DIR writable?")
    paths = rp.write_report(result, Path(args.out) if args.out else run.logs, context=run.context)
    print()
    print_summary(result, paths)
    print(f"\ndone in {time.monotonic() - started:.1f} s. Open {_rel(paths['report.html'])} in a browser, "
          f"or read {_rel(paths['report.md'])}.")
    print("next: run your own model with IRSHIM_DISPATCH=shadow, then `irshim report`.")
    return 0


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="irshim", formatter_class=fmt,
        description="Migrate CustomOp layers to irshim's functional IR, one op at a time: run both paths "
                    "in shadow mode, read the report, flip ready ops on.",
        epilog=MAIN_EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "report", formatter_class=fmt, help="aggregate observation logs into report.{md,json,html}",
        description="Aggregate the JSONL observation logs of a run into report.md, report.json and a "
                    "self-contained report.html (charts; opens offline), with a verdict per op.",
        epilog="""\
verdicts (thresholds printed in every report):
  ready    enough compared calls, no mismatch, no IR error, median IR/legacy time <= the limit: flip it on
  review   no disagreement, but too few compared calls, slower, or nothing compared
  blocked  a mismatch or an IR-side exception: fix the port or the provider first
  unseen   registered but never called in this run

examples:
  irshim report                                # latest run under $IRSHIM_REPORT_DIR (./migration_reports)
  irshim report --run 20250101-120000-4242     # one run by id
  irshim report --logs /tmp/logs --out /tmp/r  # any folder of records-*.jsonl (or one file)
  irshim report --fail-on blocked              # exit 3 when an op is blocked (for CI)
""")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", metavar="ID", help="run id: the folder $IRSHIM_REPORT_DIR/ID (default: the latest run)")
    which.add_argument("--logs", metavar="PATH", help="a folder of records-*.jsonl files, or one log file")
    p.add_argument("--out", metavar="DIR", help="where to write the report (default: the logs' folder)")
    p.add_argument("--min-compared", type=int, default=16, metavar="N",
                   help="compared calls an op needs to be ready (default: %(default)s)")
    p.add_argument("--max-time-ratio", type=float, default=1.10, metavar="X",
                   help="largest median IR/legacy time per call for ready (default: %(default)s)")
    p.add_argument("--fail-on", choices=("blocked", "review"),
                   help="exit with status 3 if any op is blocked (or blocked or review)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes for large logs (default: one per CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "status", formatter_class=fmt, help="show the mode, IR ops, providers, priorities and CustomOp classes",
        description="What irshim would do in this environment: IRSHIM_* settings, every IR op with its "
                    "providers (supported or not, and why), its effective priority and the provider "
                    "dispatch picks for a typical input on this machine, and every known CustomOp class "
                    "with its port status.",
        epilog="example:\n  IRSHIM_PRIORITY='rms_norm=native' irshim status --tokens 1 --dtype float16")
    p.add_argument("--tokens", type=int, default=32, help="tokens of the typical input (default: %(default)s)")
    p.add_argument("--hidden", type=int, default=4096, help="hidden size of the typical input (default: %(default)s)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                   help="dtype of the typical input (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "scan", formatter_class=fmt, help="list the CustomOp subclasses of modules: the porting to-do list",
        description="Import the modules and list every CustomOp subclass defined in them (irshim's or "
                    "vLLM's base, or any base named CustomOp with forward_* methods): registered name, "
                    "class, which forward_* methods it overrides, ported or automatic, and its verdict in "
                    "the latest report under $IRSHIM_REPORT_DIR.",
        epilog="""\
examples:
  irshim scan irshim.compat.layers
  irshim scan vllm.model_executor.layers --recursive
  irshim scan ./my_layers.py""")
    p.add_argument("modules", nargs="+", metavar="MODULE", help="dotted module name or path to a .py file")
    p.add_argument("--recursive", action="store_true", help="also import every submodule of a package")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser(
        "tune", formatter_class=fmt, help="measure providers now and cache the winners for `auto`",
        description="Pre-tune IR ops for the priority entry `auto`: for each op and token count, time "
                    "every supported provider on fresh inputs from the op's input generator, disqualify "
                    "those outside the op's tolerance against native, and cache the fastest (the cache "
                    "`auto` reads: $IRSHIM_TUNE_CACHE or ~/.cache/irshim).",
        epilog="""\
examples:
  irshim tune rms_norm silu_and_mul --tokens 1,16,128,1024
  irshim tune fused_add_rms_norm --tokens 4096 --hidden 8192 --dtype float16 --force
then use the choices:  IRSHIM_PRIORITY='rms_norm=auto;silu_and_mul=auto' python serve.py""")
    p.add_argument("ops", nargs="+", metavar="OP", help="IR op names (see `irshim status`)")
    p.add_argument("--tokens", default="1,16,128,1024", help="comma-separated token counts (default: %(default)s)")
    p.add_argument("--hidden", type=int, default=4096,
                   help="hidden size given to the op's input generator (default: %(default)s)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                   help="dtype (default: %(default)s)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--force", action="store_true", help="measure again even where the cache has a choice")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "demo", formatter_class=fmt, help="run a small model in shadow mode and write a migration report",
        description="Build a small Llama-style decoder (embedding, RMSNorm with residual, "
                    "RotaryEmbedding, attention in plain torch, gated MLP with SiluAndMul) from irshim's "
                    "CustomOp layers with fixed weights, run a few forward passes with both paths, and "
                    "write the report. Needs no GPU, network or settings.",
        epilog="example:\n  irshim demo --device cuda --steps 12")
    p.add_argument("--steps", type=int, default=8, help="forward passes (default: %(default)s)")
    p.add_argument("--layers", type=int, default=4, help="decoder layers (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: %(default)s)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                   help="model dtype (default: %(default)s)")
    p.add_argument("--mode", default="shadow", choices=("shadow", "on"),
                   help="shadow compares and returns legacy results; on returns the IR results (default: shadow)")
    p.add_argument("--run", metavar="ID", help="run id (default: demo-<date>-<time>)")
    p.add_argument("--report-dir", metavar="DIR",
                   help="folder for the run's logs (default: $IRSHIM_REPORT_DIR or ./migration_reports)")
    p.add_argument("--out", metavar="DIR", help="where to write the report (default: the run's folder)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"irshim {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"irshim {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # irshim's ConfigError (a malformed IRSHIM_* value) reads well as is
        if type(exc).__name__ == "ConfigError":
            print(f"irshim {args.command}: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
