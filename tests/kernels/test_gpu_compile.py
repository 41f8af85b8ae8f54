"""Kernels compile for a Hopper GPU without one (Triton's compiler needs no device), as
written and as Inductor copies them into a compiled graph.

The interpreter runs the CPU tests but accepts code that compiled Triton rejects (a
@triton.jit helper returning int32 in one constexpr branch and int64 in the other did),
and eager launches never see Inductor's copy of a kernel (which lacked a helper named
through its module); both showed only on the GPU. Compiling both settings of each
kernel's switch (int64 offsets, masks dropped), in both forms, catches such errors in CI.
The compile runs in a child process: the CPU tests' TRITON_INTERPRET=1 turns every
@triton.jit function into an interpreted one at import.
"""

from __future__ import annotations

import os
import subprocess
import sys

_NORM_ARGS = {name: kind for names, kind in (
    (("X", "R", "W", "OUT", "RES_OUT"), "*bf16"),
    (("X_ROW_STRIDE", "R_ROW_STRIDE", "W_STRIDE", "OUT_ROW_STRIDE", "RES_OUT_ROW_STRIDE", "N_ROWS", "N_COLS"), "i32"),
    (("EPS",), "fp32")) for name in names}

KERNELS = {  # name -> (module, kernel, runtime argument types, constexprs, the boolean constexpr tried both ways)
    "plain_flat": ("activation", "_plain_flat_kernel", {"X": "*bf16", "OUT": "*bf16", "N": "i32"},
                   {"ACT": "quick_gelu", "BLOCK": 1024, "EVEN": False}, "I64"),
    "gated_flat": ("activation", "_gated_flat_kernel", {"X": "*bf16", "OUT": "*bf16", "N": "i32", "PARAM": "fp32"},
                   {"D": 14336, "ACT": "gelu", "ACT_ON_SECOND": True, "BLOCK": 1024, "EVEN": False}, "I64"),
    "static_quant_flat": ("quant", "_static_quant_flat_kernel",
                          {"X": "*bf16", "Q": "*fp8e4nv", "SCALE": "*fp32", "N": "i32"}, {"BLOCK": 2048, "EVEN": True},
                          "I64"),
    "fused_add_quant_pipelined": ("quant", "_fused_add_quant_pipelined_kernel", {
        **{name: "*bf16" for name in ("X", "R", "W", "RES_OUT")}, "Q": "*fp8e4nv", "SCALE": "*fp32",
        **{name: "i32" for name in ("X_ROW_STRIDE", "R_ROW_STRIDE", "W_STRIDE", "Q_ROW_STRIDE",
                                    "RES_OUT_ROW_STRIDE", "N_ROWS", "N_COLS")}, "EPS": "fp32"},
        {"BLOCK_N": 2048}, "HAS_WEIGHT"),
    "rms_norm_one_row": ("layernorm", "_rms_norm_kernel", _NORM_ARGS,
                         {"HAS_RESIDUAL": True, "HAS_WEIGHT": True, "GEMMA": False, "BLOCK_M": 1, "BLOCK_N": 8192,
                          "SINGLE_PASS": True}, "EVEN"),
    "rms_norm_rows": ("layernorm", "_rms_norm_kernel", _NORM_ARGS,
                      {"HAS_RESIDUAL": False, "HAS_WEIGHT": True, "GEMMA": True, "BLOCK_M": 2, "BLOCK_N": 4096,
                       "SINGLE_PASS": True}, "EVEN"),
}


def _inductor_copy(fn, folder):
    """The kernel as Inductor re-emits a user-defined Triton kernel inside a compiled graph: its
    source plus the JIT helpers and constants it names (a helper reached as `module.helper`
    is not copied: the copy then fails with a NameError, as it did on the GPU)."""
    import importlib.util

    from torch._inductor.codegen.wrapper import (
        user_defined_triton_kernel_transitive_closure_source_code,
    )

    path = folder / f"{fn.__name__}_copy.py"
    path.write_text("import triton\nimport triton.language as tl\n\n@triton.jit\n"
                    + user_defined_triton_kernel_transitive_closure_source_code(fn))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, fn.__name__)


def _compile_all() -> None:
    """Child process: compile every kernel, as written and as Inductor copies it, with its switch
    off and on; print one line each."""
    import importlib
    import tempfile
    from pathlib import Path

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    folder = Path(tempfile.mkdtemp())
    for name, (module, kernel, signature, constexprs, switch) in KERNELS.items():
        fn = getattr(importlib.import_module(f"irshim.kernels.triton.{module}"), kernel)
        for form, compiled_fn in (("as written", fn), ("inductor copy", _inductor_copy(fn, folder))):
            for on in (False, True):
                consts = {**constexprs, switch: on}
                source = ASTSource(fn=compiled_fn, signature={**signature, **dict.fromkeys(consts, "constexpr")},
                                   constexprs=consts)
                label = f"{name} ({form}) {switch}={on}"
                try:
                    ptx = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4}).asm["ptx"]
                    print(label, "ok" if ".target sm_90" in ptx else "no sm_90 target in the PTX")
                except Exception as e:  # noqa: BLE001  (reported to the parent test)
                    print(label, "failed:", " ".join(str(e).split())[-300:])


def test_kernels_compile_for_hopper():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 4 * len(KERNELS), done.stdout + done.stderr[-2000:]
    failed = [line for line in lines if not line.endswith(" ok")]
    assert not failed, "\n".join(failed)


if __name__ == "__main__":
    _compile_all()
