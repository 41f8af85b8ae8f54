#!/usr/bin/env python3
"""A decoder layer of compat layers, compiled through the IR, against the legacy paths.

Variants, all in one run on one device:
- legacy eager:    IRSHIM_DISPATCH=off, the layers' own forward_* methods;
- legacy compiled: torch.compile of the same model (Inductor), off mode;
- IR native:       on mode, irshim.ir.compile.backend(), every op lowered to `native`;
- IR triton:       on mode, the same backend, ops lowered to `triton` where it exists.
The compiled IR variants must match legacy eager within a whole-layer tolerance;
times are CUDA-graph replay medians (triton.testing.do_bench_cudagraph) on a GPU,
wall-clock medians on a CPU.

    python benchmarks/compile_decoder.py [--tokens 1024] [--out DIR]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

import irshim.compat as compat
import irshim.ir as ir
from irshim.compat.demo import DecoderLayer, DemoConfig
from irshim.ir import compile as irc
from irshim.ir.tolerances import Tolerance, assert_close
from report_files import write_report

# Llama-3-8B proportions at half width, so that four compiles fit a short run.
CONFIG = DemoConfig(hidden_size=2048, num_heads=16, num_kv_heads=4, intermediate_size=7168, num_layers=1)
LAYER_TOLERANCE = Tolerance(
    atol=6e-2, rtol=6e-2,
    reason="a whole bf16 layer: compiled graphs fuse norms and activations in float32 and "
           "keep fewer bf16 roundings than the eager layer; matmul accumulation order differs")
IR_OPS = ("rms_norm", "fused_add_rms_norm", "silu_and_mul")


def _time_us(fn, device: torch.device) -> float:
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench_cudagraph(fn, rep=200) * 1e3
    samples = []
    for _ in range(10):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="a tiny layer (CPU smoke test)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cfg = DemoConfig(hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=96, num_layers=1) \
        if args.small else CONFIG
    torch.manual_seed(0)
    layer = DecoderLayer(cfg, torch.bfloat16).to(device)
    for name, p in layer.named_parameters():
        with torch.no_grad():
            p.copy_((1 + 0.1 * torch.randn_like(p)) if "norm" in name else torch.randn_like(p) / p.shape[-1] ** 0.5)
    positions = torch.arange(args.tokens, device=device)
    hidden = torch.randn(args.tokens, cfg.hidden_size, device=device, dtype=torch.bfloat16)
    residual = torch.randn_like(hidden)

    def call(model):
        # The layer's norm works in place on the GPU (vLLM's convention): fresh copies each call.
        return lambda: model(positions, hidden.clone(), residual.clone())

    results: dict[str, dict] = {}
    with torch.no_grad():
        with compat.override(dispatch="off"):
            reference = call(layer)()
            results["legacy eager"] = {"us": _time_us(call(layer), device)}
            torch._dynamo.reset()
            compiled = torch.compile(layer, fullgraph=True)
            call(compiled)()
            results["legacy compiled (Inductor)"] = {"us": _time_us(call(compiled), device)}
        for provider in ("native", "triton"):
            key = f"IR {provider} (irshim backend)"
            available = [op for op in IR_OPS if provider in ir.get_op(op).impls and ir.get_op(op).impls[provider].supported]
            if provider != "native" and not available:
                results[key] = {"skipped": f"no supported {provider} provider here"}
                continue
            ir.set_priority({op: list(dict.fromkeys([provider, "native"])) if op in available else ["native"]
                             for op in IR_OPS})
            try:
                with compat.override(dispatch="on", ops="all"):
                    torch._dynamo.reset()
                    compiled = torch.compile(layer, fullgraph=True, backend=irc.backend())
                    out = call(compiled)()
                    lowered = [(s.op, s.provider) for s in irc.last_lowering()]
                    for got, want in zip(out, reference):
                        assert_close(got, want, LAYER_TOLERANCE, what=key)
                    results[key] = {"us": _time_us(call(compiled), device), "lowering": lowered,
                                    "max_abs_err_vs_legacy": max(float((g.float() - w.float()).abs().max())
                                                                 for g, w in zip(out, reference))}
            finally:
                ir.set_priority({op: None for op in IR_OPS})
    base = results["legacy eager"]["us"]
    for r in results.values():
        if "us" in r:
            r["speedup_vs_legacy_eager"] = base / r["us"]
    env = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "tokens": args.tokens,
           "layer": f"hidden {cfg.hidden_size}, heads {cfg.num_heads}/{cfg.num_kv_heads}, "
                    f"intermediate {cfg.intermediate_size}, bf16"}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        pass
    report = {"environment": env, "results": results}
    lines = [f"# Compiled decoder layer: IR lowering vs legacy ({env['device']})", "",
             f"torch {env['torch']}, triton {env.get('triton', '-')}; {env['layer']}; {args.tokens} tokens. "
             "CUDA-graph replay medians (do_bench_cudagraph).", "",
             "| variant | µs | vs legacy eager | lowering |", "|---|---|---|---|"]
    for name, r in results.items():
        if "us" in r:
            low = ", ".join(f"{o}->{p}" for o, p in r.get("lowering", []))
            lines.append(f"| {name} | {r['us']:.1f} | {r['speedup_vs_legacy_eager']:.2f}x | {low} |")
        else:
            lines.append(f"| {name} | – | – | {r['skipped']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(args.out, "compile_decoder", report, text)
    return report


if __name__ == "__main__":
    main()
