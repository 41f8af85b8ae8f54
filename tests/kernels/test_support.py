"""The shared tensor checks of the Triton providers (kernels/triton/_support.py)."""

from __future__ import annotations

import pytest
import torch

from irshim.kernels.triton import _support as S

BUF = torch.zeros(64)


@pytest.mark.parametrize("a, b, expected", [
    (BUF[0:8], BUF[8:16], True),              # adjacent contiguous spans
    (BUF[0:9], BUF[8:16], False),             # one element shared
    (BUF[8:16], BUF[0:8], True),              # either order
    (BUF[4:4], BUF[0:16], True),              # empty, inside the other's span
    (BUF[0:16], BUF[16:16], True),
    (BUF.view(8, 8)[:, :2], BUF.view(8, 8)[:, 2:4], False),  # interleaved columns: spans overlap
    (BUF.view(8, 8)[:4, :2], BUF.view(8, 8)[4:, :2], True),  # strided, rows 0-3 then rows 4-7
    (BUF.view(8, 8)[:0, :2], BUF, True),      # empty and strided
])
def test_disjoint_compares_byte_spans(a, b, expected):
    # Spans are [first byte, one past the last element's): columns 0-1 of rows 0-3 end at
    # element 3 * 8 + 1, before row 4 begins. The test is conservative: interleaved
    # columns share no element but their spans overlap.
    assert S.disjoint(a, b) is expected


def test_device_ok_accepts_cpu_tensors_only_under_the_interpreter():
    assert S.device_ok(torch.zeros(1)) is S.INTERPRET


def test_input_ok_checks_device_dtype_and_rows():
    if not S.INTERPRET:  # CPU tensors are the kernels' only without a GPU
        assert not S.input_ok(torch.zeros(2, 3))
        return
    x = torch.zeros(4, 6, dtype=torch.bfloat16)
    assert S.input_ok(x) and S.input_ok(x[::2]) and S.input_ok(x[:, 1:4])
    assert not S.input_ok(x[:, ::2])  # no unit stride along the last dimension
    assert not S.input_ok(torch.zeros((), dtype=torch.bfloat16))  # contiguous, but no rows
    assert not S.input_ok(x.to(torch.float64)) and not S.input_ok(x.to(torch.int32))
    assert not S.input_ok(torch.zeros(2, 3, device="meta"))


def test_operand_ok_checks_dtype_and_device():
    x = torch.zeros(4, 6)
    assert S.operand_ok(torch.zeros(6, dtype=torch.float16), x)
    assert not S.operand_ok(torch.zeros(6, dtype=torch.float64), x)


def test_weight_ok_checks_rank_size_dtype_and_device():
    x = torch.zeros(4, 6, dtype=torch.bfloat16)
    assert S.weight_ok(None, x) and S.weight_ok(torch.ones(6), x)
    assert not S.weight_ok(torch.ones(5), x)                      # not one value a feature
    assert not S.weight_ok(torch.ones(1, 6), x)                   # not 1-D
    assert not S.weight_ok(torch.ones(6, dtype=torch.float64), x)
    assert not S.weight_ok(torch.ones(6, device="meta"), x)


def test_residual_ok_checks_shape_operand_and_rows():
    x = torch.zeros(4, 6, dtype=torch.bfloat16)
    assert S.residual_ok(torch.zeros(4, 6), x)
    assert S.residual_ok(torch.zeros(8, 6)[::2], x)               # strided rows
    assert not S.residual_ok(torch.zeros(4, 12)[:, ::2], x)       # no unit stride along the features
    assert not S.residual_ok(torch.zeros(4, 5), x)
    assert not S.residual_ok(torch.zeros(4, 6, dtype=torch.int32), x)


def test_device_checks_tell_cpu_from_meta():
    """Off CUDA the kernels run CPU tensors (the interpreter): an operand on another
    non-CUDA device is refused, as a CUDA one is."""
    cpu, meta = torch.zeros(6), torch.zeros(6, device="meta")
    assert S.same_device(cpu, torch.ones(2)) and S.same_device(meta, meta)
    assert not S.same_device(cpu, meta) and not S.same_device(meta, cpu)
    assert S.same_devices(cpu, None, torch.ones(1)) and not S.same_devices(cpu, torch.ones(1), meta)
    assert not S.operand_ok(meta, cpu)


def test_cached_config_caches_hashable_arguments_and_passes_symints_through():
    calls = []

    @S.cached_config
    def config(rows: int, cols: int, kind: str = "a") -> tuple:
        calls.append((rows, cols, kind))
        return rows * cols, kind

    assert config(3, 5) == config(3, 5) == (15, "a")
    assert config(3, 5, kind="b") == config(3, 5, kind="b") == (15, "b")
    assert calls == [(3, 5, "a"), (3, 5, "b")]
    # A SymInt (tracing with dynamic shapes) is unhashable: computed every time, never cached.
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    rows = ShapeEnv().create_unbacked_symint()
    config(rows, 5)
    config(rows, 5)
    assert len(calls) == 4 and calls[2][0] is rows and calls[3][0] is rows


def test_on_device_switches_only_to_another_gpu():
    # CPU tensors (and, with one GPU, CUDA tensors) launch where they are: one shared no-op.
    assert S.on_device(torch.zeros(1)) is S.on_device(torch.zeros(2))
    if torch.cuda.device_count() > 1:
        other = torch.zeros(1, device=f"cuda:{1 - torch.cuda.current_device()}")
        assert isinstance(S.on_device(other), torch.cuda.device)


def test_empty_like_rows_is_contiguous_whatever_the_input_layout():
    base = torch.zeros(4, 6, 8, dtype=torch.bfloat16)
    for x in (base, base.transpose(0, 1), base[:, :, :5], base.expand(2, 4, 6, 8)):
        out = S.empty_like_rows(x)
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device and out.is_contiguous()
    q = S.empty_like_rows(base.transpose(0, 1), torch.float8_e4m3fn)
    assert q.shape == (6, 4, 8) and q.dtype == torch.float8_e4m3fn and q.is_contiguous()


def test_memory_gbs_per_sm_from_the_device_properties(monkeypatch):
    # Double data rate x bus width / SMs: an H100 SXM's properties give 25.4 GB/s, an H200's 36.5;
    # a torch without the fields, ROCm or a CPU tensor gives None.
    class Props:
        def __init__(self, **fields):
            self.__dict__.update(fields, multi_processor_count=132)

    props = {0: Props(memory_clock_rate=2_619_000, memory_bus_width=5120),
             1: Props(memory_clock_rate=3_201_000, memory_bus_width=6016), 2: Props()}
    monkeypatch.setattr(torch.cuda, "get_device_properties", props.__getitem__)
    S._memory_gbs_per_sm.cache_clear()
    try:
        assert S._memory_gbs_per_sm(0) == pytest.approx(25.39, abs=0.01)
        assert S._memory_gbs_per_sm(1) == pytest.approx(36.47, abs=0.01)
        assert S._memory_gbs_per_sm(2) is None
        S._memory_gbs_per_sm.cache_clear()
        monkeypatch.setattr(torch.version, "hip", "6.2")  # ROCm: not measured, no figure
        assert S._memory_gbs_per_sm(1) is None
    finally:
        S._memory_gbs_per_sm.cache_clear()
    assert S.memory_gbs_per_sm(torch.empty(4)) is None


def test_every_op_with_a_triton_provider_puts_it_first_on_cuda():
    """kernels.triton's OPS lists them all: an op left out runs native on a GPU."""
    import irshim.ir as ir
    from irshim.ir import priority
    from irshim.ir.op import IrOp

    ir.load_providers()
    with_triton = [name for name, op in IrOp.registry.items() if "triton" in op._impls]
    assert "compare_pairs" in with_triton
    for name in with_triton:
        assert priority.requested(name, "cuda")[0][0] == "triton", name
