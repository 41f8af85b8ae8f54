"""Every launch configuration the rules choose, run once on a GPU against native.

The launch rules (`norm_config`, `row_config`, `pipeline_programs`, `act_config`,
`tile_config`, `rope_config`, ...) switch kernels, blocks, warps, masks and programs at
row and width thresholds measured on H100/H200; the other GPU tests run a few model
sizes. This one calls every Triton provider over row counts on each side of every
threshold and widths across every regime, in three dtypes, with contiguous and with
strided rows. Each call's launches are recorded without running them (kernel, tensor
dtypes, compile-time arguments); then, for every distinct set of launches, the smallest
call that made it runs for real and is compared with the op's native semantics.
"""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch

import irshim.ir as ir
from irshim.ir.ops import quant as qops
from irshim.ir.tolerances import assert_close

from quant_checks import check as check_quant  # tests/quant_checks.py

logger = logging.getLogger(__name__)

# Each threshold of the rules at 132 multiprocessors (H100/H200) and its neighbours:
# 256 (quant THROUGHPUT_ROWS), 264 (2 rows an SM), 1024 (PIPELINE_MIN_ROWS), 1056 (8 an SM),
# 4092 (31 an SM), 8184 (62 an SM), 16368 (124 an SM), 16384 (STATIC_NORM_PAIRED_ROWS); odd counts leave tails.
ROWS = (1, 2, 3, 16, 61, 64, 255, 256, 257, 263, 264, 265, 511, 1023, 1024, 1025, 1055, 1056, 1057,
        4091, 4092, 4093, 8183, 8184, 8185, 16367, 16368, 16369, 16383, 16384, 16385)
# The generators' `hidden_size`: the norm width, the activations' output width, the quantized
# width, the rotary head size. Each family's single-pass / chunked / wide-row regimes and
# widths that are not powers of two.
WIDTHS = {
    "layernorm": (64, 1000, 2048, 4096, 5120, 8192, 14336, 16384, 16400),
    "activation": (64, 1000, 4096, 8192, 14336, 28672),
    "quant": (64, 1000, 2048, 4096, 8192, 14336, 16400),
    "rotary": (64, 80, 128, 256),
}
DTYPES = (torch.bfloat16, torch.float16, torch.float32)
SMALL = 61
"""Rows generated (then repeated to the row count): odd, and no width of WIDTHS."""


class LaunchRecorder:
    """Records every Triton launch (``kernel[grid](...)``) while active; `dry` skips running them."""

    def __init__(self) -> None:
        self.launches: list[tuple] = []
        self.dry = False

    @contextlib.contextmanager
    def active(self):
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction

        classes = {cls: cls.run for cls in (JITFunction, InterpretedFunction)}
        for cls, original in classes.items():
            cls.run = self._recording(original)
        try:
            yield self
        finally:
            for cls, original in classes.items():
                cls.run = original

    def _recording(self, original):
        def run(kernel, *args, grid, warmup, **kwargs):
            self.launches.append(_launch_key(kernel, args, kwargs))
            if self.dry:
                return None
            return original(kernel, *args, grid=grid, warmup=warmup, **kwargs)

        return run


def _launch_key(kernel, args: tuple, kwargs: dict) -> tuple:
    """The kernel, its tensors' dtypes and its keyword (compile-time) arguments."""
    dtypes = tuple(str(a.dtype) for a in args if isinstance(a, torch.Tensor))
    consts = tuple(sorted((k, v) for k, v in kwargs.items() if not isinstance(v, torch.Tensor)))
    return kernel.fn.__name__, dtypes, consts


def _family(op: ir.IrOp) -> str:
    return op.native.__module__.rsplit(".", 1)[-1]


def _calls(op: ir.IrOp, args: tuple) -> list[tuple]:
    """The argument tuples to run: the generated one, and the other compile-time modes."""
    if op.name == "gelu_and_mul":
        return [(args[0], "none"), (args[0], "tanh")]
    return [args]


def _resize(args: tuple, rows: int, strided: bool, fill: bool) -> tuple:
    """`args` (generated with SMALL rows) at `rows` rows: the rows repeated (`fill`) or left
    uninitialised (a dry run reads nothing); `strided`: activations as column slices of a wider
    buffer (rows strided)."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor) and a.dim() >= 1 and a.shape[0] == SMALL:
            if fill:
                grown = a.repeat((-(-rows // SMALL),) + (1,) * (a.dim() - 1))[:rows]
            else:
                grown = torch.empty((rows, *a.shape[1:]), dtype=a.dtype, device=a.device)
            if strided and grown.dim() == 2 and grown.is_floating_point():
                wide = torch.empty((rows, grown.shape[1] + 32), dtype=grown.dtype, device=grown.device)
                view = wide[:, 16:16 + grown.shape[1]]
                if fill:
                    view.copy_(grown)
                grown = view
            a = grown
        out.append(a)
    return tuple(out)


def _compare(op: ir.IrOp, impl, args: tuple, what: str) -> None:
    """Run `impl` on copies (in-place providers overwrite) and compare with native."""
    copies = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    actual = impl.impl_fn(*copies)
    if op in qops.OPS:
        check_quant(op, args, actual, what)
        return
    expected = op.native(*args)
    actual = actual if isinstance(actual, tuple) else (actual,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    tol = op.tolerance(args[0].dtype if op.name != "rotary_embedding" else args[1].dtype)
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape and a.dtype == e.dtype, f"{what} output {i}: {a.shape} {a.dtype}"
        assert_close(a, e, tol, what=f"{what} output {i}")


def _triton_impls(op: ir.IrOp) -> list:
    return [impl for name, impl in op.impls.items() if name.startswith("triton") and impl.supported]


@pytest.mark.cuda
@pytest.mark.parametrize("family", sorted(WIDTHS))
def test_every_launch_configuration_matches_native(family):
    ir.load_providers()
    ops = [op for op in ir.IrOp.registry.values() if _family(op) == family and _triton_impls(op)]
    assert ops, f"no op of family {family} has a Triton provider"
    recorder = LaunchRecorder()
    # (op, provider) -> launch set -> the smallest call that made it: (elements, width, rows, dtype, strided, call)
    chosen: dict[tuple, dict[tuple, tuple]] = {}
    refused: list[str] = []
    with recorder.active():
        recorder.dry = True
        for op in ops:
            for width in WIDTHS[family]:
                for dtype in DTYPES:
                    small = op.generate_inputs(SMALL, width, dtype, "cuda")
                    for k, call in enumerate(_calls(op, small)):
                        for rows in ROWS:
                            for strided in (False, True):
                                args = _resize(call, rows, strided, fill=False)
                                for impl in _triton_impls(op):
                                    if not impl.supports(*args):
                                        if not strided:
                                            refused.append(f"{op.name}/{impl.provider} {rows}x{width} {dtype}")
                                        continue
                                    recorder.launches = []
                                    impl.impl_fn(*args)
                                    key = tuple(recorder.launches)
                                    seen = chosen.setdefault((op.name, impl.provider), {})
                                    size = rows * width
                                    if key not in seen or size < seen[key][0]:
                                        seen[key] = (size, width, rows, dtype, strided, k)
        assert not refused, f"providers refused contiguous inputs: {refused[:10]}"
        recorder.dry = False
        failures, runs = [], 0
        for (name, provider), by_launches in chosen.items():
            op = ir.get_op(name)
            impl = op.impls[provider]
            for _, width, rows, dtype, strided, k in sorted(by_launches.values(), key=lambda v: v[:3]):
                small = _calls(op, op.generate_inputs(SMALL, width, dtype, "cuda"))[k]
                args = _resize(small, rows, strided, fill=True)
                what = f"{name}/{provider} {rows}x{width} {str(dtype)[6:]}{' strided' if strided else ''}"
                runs += 1
                try:
                    _compare(op, impl, args, what)
                except AssertionError as exc:
                    failures.append(f"{what}: {str(exc)[:300]}")
    launch_sets = sum(len(v) for v in chosen.values())
    logger.info("%s: %d launch sets over %d providers, %d runs", family, launch_sets, len(chosen), runs)
    assert launch_sets >= len(chosen) > 0
    assert not failures, f"{len(failures)} of {runs} runs differ from native:\n" + "\n".join(failures[:20])
