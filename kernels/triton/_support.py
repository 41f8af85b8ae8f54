"""What every Triton provider module shares: where the kernels can run, which
tensors they accept, and the eager/compile split.

Eager calls launch the kernel directly (``kernel[grid](...)``). The same
launcher, handed ``wrap_triton(kernel)``, is the body of a
``torch.library.triton_op``, which torch.compile, make_fx and export see as a
graph node (and Inductor can fuse around). The impl functions registered on the
IR ops switch to that op only while something traces them (``irshim.ir.tracing``,
~0.3 µs), so eager calls never pay the dispatcher round trip of a ``triton_op``:
on the H200 machine's host that round trip added 7-55 µs per eager call
(benchmarks/results/bench_*.md, "Eager per-call wall time": triton vs triton_op,
e.g. rms_norm 1x4096 108 vs 150 µs, silu_and_mul 1x14336 69 vs 95 µs).
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from irshim.ir import tracing as _ir_tracing

NAMESPACE = "irshim_triton"
"""torch.library namespace of the graph-visible ops: ``torch.ops.irshim_triton.<op>``."""

# Read once at import, as Triton itself does when kernels are decorated; the
# predicates below must stay pure (STYLE.md: no environment inside them).
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
"""Triton's interpreter is on: kernels run on CPU tensors (how CI tests them)."""

DTYPES = frozenset((torch.float32, torch.float16, torch.bfloat16))
"""Element types the kernels load and store (all arithmetic is float32). A set: the
predicates test `dtype in DTYPES` on every eager call, 0.20 µs against 0.46 for a
tuple, whose test compares dtypes one by one (dev VM)."""

# Dynamo, FakeTensorMode, make_fx...: the impls call their triton_op, not the raw kernel.
tracing = _ir_tracing


def platform_supported() -> bool:
    """Static support: a CUDA (or ROCm) device, or Triton's interpreter."""
    return INTERPRET or torch.cuda.is_available()


def device_ok(t: torch.Tensor) -> bool:
    # `is_cpu`, not `device.type == "cpu"`: building the torch.device cost 1.1 µs a
    # check on the dev VM, `is_cpu` 0.16 (interpreter runs only; CUDA stops at is_cuda).
    return t.is_cuda or (INTERPRET and t.is_cpu)


def input_ok(t: torch.Tensor) -> bool:
    """A kernel's main input: on a device the kernels run on, of a dtype they load, seen as rows
    (`rows_ok`; a contiguous input stops at is_contiguous, and a 0-dim tensor, contiguous,
    has no rows). The checks every provider makes, in one call: 0.89 µs on the dev VM against
    0.94 for the dtype test, `device_ok` and `rows_ok` called in turn; the rest is the
    tensor attribute reads (0.12-0.3 µs each)."""
    return ((t.is_cuda or (INTERPRET and t.is_cpu)) and t.dtype in DTYPES
            and ((t.is_contiguous() and t.dim() > 0) or rows_ok(t)))


def operand_ok(t: torch.Tensor, x: torch.Tensor) -> bool:
    """Another tensor operand of x's kernel (weight, residual): a dtype the kernels load, x's device."""
    if t.dtype not in DTYPES:
        return False
    if t.is_cuda:  # `same_device`, inlined: a Python frame is ~0.1 µs of a 1-2 µs dispatch
        return x.is_cuda and (_one_gpu() or t.get_device() == x.get_device())
    return not x.is_cuda and t.is_cpu == x.is_cpu


def weight_ok(weight: torch.Tensor | None, x: torch.Tensor) -> bool:
    """A norm's weight for x's kernel: None, or one value a feature of x's last dimension
    (an `operand_ok` operand). `numel()`, not `shape[0]`: no torch.Size built (0.15 against
    0.29 µs, dev VM)."""
    return weight is None or (weight.dim() == 1 and weight.numel() == x.shape[-1] and operand_ok(weight, x))


def residual_ok(r: torch.Tensor, x: torch.Tensor) -> bool:
    """A residual added to x in its kernel: x's shape, an `operand_ok` operand, seen as rows
    (`rows_ok`, whose dimension test x's shape has made already)."""
    return r.shape == x.shape and operand_ok(r, x) and (r.is_contiguous() or rows_ok(r))


def rows_ok(t: torch.Tensor) -> bool:
    """The kernels see a tensor as ``rows x last``: unit stride along the last
    dimension, and leading dimensions that collapse into one row stride (true
    for contiguous tensors, slices of the last dimension, a strided token
    dimension...). ``t.view(-1, last)`` succeeds exactly then, without a copy.
    """
    if t.dim() == 0:
        return False
    if t.is_contiguous():
        return True
    shape, strides = t.shape, t.stride()
    if shape[-1] > 1 and strides[-1] != 1:
        return False
    # Merge leading dims from the innermost outwards; size-1 dims never matter.
    row_stride = None
    expected = None
    for size, stride in zip(reversed(shape[:-1]), reversed(strides[:-1])):
        if size == 1:
            continue
        if row_stride is None:
            row_stride, expected = stride, stride * size
        elif stride != expected:
            return False
        else:
            expected = stride * size
    return True


_CONTIGUOUS = torch.contiguous_format


def empty_like_rows(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A fresh contiguous tensor of x's shape and device, of x's dtype unless given: an output.
    3.7 µs a call on the H200 machine's host against 8.0 for ``torch.empty(x.shape, dtype=...,
    device=x.device)`` (a CUDA bf16 [1, 4096] x, session 9); the contiguous format, because
    `empty_like` would otherwise copy the strides of a dense permuted x."""
    return torch.empty_like(x, dtype=dtype, memory_format=_CONTIGUOUS)


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a 2-D ``[rows, last]`` view (never a copy; callers checked `rows_ok`)."""
    return t if t.dim() == 2 else t.view(-1, t.shape[-1])


def next_pow2(n: int) -> int:
    """``triton.next_power_of_2`` without its per-call overhead (~6 µs on the CI CPU)."""
    if type(n) is not int:  # a SymInt while tracing with dynamic shapes
        import triton

        return triton.next_power_of_2(n)
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _device_index(t: torch.Tensor) -> int:
    """t's GPU (a CUDA tensor): 0 on a one-GPU machine without asking, else `get_device()`, not
    `t.device.index`, which builds a torch.device (1.1 µs on the dev VM, see `device_ok`)."""
    return 0 if _one_gpu() else t.get_device()


def sm_count(t: torch.Tensor) -> int:
    """Streaming multiprocessors of t's GPU (132 under the interpreter: an H100/H200's)."""
    return _sm_count(_device_index(t)) if t.is_cuda else 132


@functools.cache
def _memory_gbs_per_sm(device_index: int) -> float | None:
    if torch.version.hip:  # measured on NVIDIA GPUs only (a CU and a wavefront of 64 are another matter)
        return None
    props = torch.cuda.get_device_properties(device_index)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    if not (clock_khz and bus_bits):
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9 / props.multi_processor_count


def memory_gbs_per_sm(t: torch.Tensor) -> float | None:
    """Peak DRAM bandwidth of t's GPU a streaming multiprocessor, GB/s (double data rate x bus
    width, from the device properties): H100 SXM 25.4, H200 36.5. None where unknown (the
    interpreter, a torch without these properties) or not measured (ROCm)."""
    return _memory_gbs_per_sm(_device_index(t)) if t.is_cuda else None


WIDE_DRAM_GBS_PER_SM = 30.0
"""Between the H100's 25.4 and the H200's 36.5 GB/s a multiprocessor: where launch rules that
were measured to differ between the two GPUs split (`memory_gbs_per_sm`)."""


def narrow_dram(gbs_per_sm: float | None) -> bool:
    """A GPU known to have the H100's DRAM bandwidth a multiprocessor or less (`WIDE_DRAM_GBS_PER_SM`)."""
    return gbs_per_sm is not None and gbs_per_sm < WIDE_DRAM_GBS_PER_SM


def wide_dram(gbs_per_sm: float | None) -> bool:
    """A GPU known to have the H200's DRAM bandwidth a multiprocessor or more; unknown GPUs are neither."""
    return gbs_per_sm is not None and gbs_per_sm >= WIDE_DRAM_GBS_PER_SM


PROGRAMS_PER_SM = 4
"""Element-wise kernels at small sizes: enough programs for four a streaming multiprocessor."""


def program_elements(n_elements: int, sm_count: int, smallest: int, largest: int) -> int:
    """Elements a program (a power of two in [smallest, largest]) for PROGRAMS_PER_SM
    programs a streaming multiprocessor over `n_elements`."""
    target = next_pow2(max(1, n_elements // (PROGRAMS_PER_SM * sm_count)))
    return max(smallest, min(largest, target))


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.cache
def _one_gpu() -> bool:
    return torch.cuda.device_count() <= 1


def same_device(a: torch.Tensor, b: torch.Tensor) -> bool:
    # get_device() is an int (-1 for CPU): cheaper than building two torch.device
    # objects, and not read at all on a machine with one GPU. The predicates of the
    # eager dispatch read tensor metadata at ~0.2 µs an attribute (dev VM).
    # Off CUDA, both on the CPU or neither (the interpreter's CPU tensors beside a meta one).
    if a.is_cuda:
        return b.is_cuda and (_one_gpu() or a.get_device() == b.get_device())
    return not b.is_cuda and a.is_cpu == b.is_cpu


def same_devices(x: torch.Tensor, *others: torch.Tensor | None) -> bool:
    """Every tensor of `others` (None skipped) is on x's device: `same_device` for several."""
    cuda = x.is_cuda
    for other in others:
        if other is not None and other.is_cuda != cuda:
            return False
    if not cuda:
        cpu = x.is_cpu
        return all(other is None or other.is_cpu == cpu for other in others)
    if not _one_gpu():
        index = x.get_device()
        return all(other is None or other.get_device() == index for other in others)
    return True


def cached_config(fn):
    """Memoise a pure launch-config function (SymInts while tracing bypass the cache).

    A SymInt is unhashable (TypeError), so the cache lookup itself tells it apart: 0.5 µs a
    call on the dev VM, where testing each argument's type first cost 1.6 µs (every eager
    launch makes one to three of these calls)."""
    cached = functools.lru_cache(maxsize=4096)(fn)

    @functools.wraps(fn)
    def config(*args, **kwargs):
        try:
            return cached(*args, **kwargs)
        except TypeError:  # an unhashable argument: a SymInt (dynamic shapes)
            return fn(*args, **kwargs)

    return config


@dataclass(frozen=True)
class FlatConfig:
    """Flat element-wise kernels (contiguous tensors seen as one run): elements a program, warps."""

    block: int
    num_warps: int


INT32_MAX = 2**31 - 1
"""Offsets past this make the flat kernels index in int64 (their `I64` constexpr)."""


@triton.jit
def flat_index(BLOCK: tl.constexpr, I64: tl.constexpr):
    """The element offsets of this program of a flat kernel: one per element, int32 (as
    Inductor indexes) unless the tensor needs int64."""
    # One return: compiled Triton rejects returns of different types, even under a constexpr
    # branch (the interpreter does not).
    if I64:
        idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    else:
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    return idx


def row_stride(t2d: torch.Tensor, n_rows: int) -> int:
    """The stride between the rows of `t2d` (`n_rows` of them). A single row's stride is
    irrelevant: the row length then, so that Triton's divisibility specialisation still sees
    aligned rows. `stride()[0]` and the caller's row count: 0.4 µs a call on the dev VM, against
    1.2 for ``stride(0)`` and two `shape` reads (four calls a norm launch)."""
    return t2d.stride()[0] if n_rows > 1 else t2d.shape[1]


def rows_apart(t: torch.Tensor) -> bool:
    """No two rows of ``t`` (seen as `as_rows`) share memory: needed to write it in
    place. A contiguous tensor's elements never overlap (no view built then)."""
    if t.is_contiguous():
        return True
    t2d = as_rows(t)
    return t2d.shape[0] <= 1 or abs(t2d.stride(0)) >= t2d.shape[1]


def _extent(t: torch.Tensor) -> tuple[int, int]:
    """[start, end) of the bytes `t` spans; end == start when it is empty."""
    start = t.data_ptr()
    if t.is_contiguous():
        return start, start + t.nbytes  # one read, not numel() and element_size()
    if t.numel() == 0:
        return start, start
    span = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    return start, start + (span + 1) * t.element_size()


def disjoint(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The memory spans of `a` and `b` do not intersect (a cheap, conservative test)."""
    a0, a1 = _extent(a)
    b0, b1 = _extent(b)
    return a0 == a1 or b0 == b1 or a1 <= b0 or b1 <= a0


_SAME_DEVICE = contextlib.nullcontext()


def on_device(t: torch.Tensor):
    """Launch on `t`'s GPU: Triton launches on the *current* device, so a tensor on
    another GPU (cuda:1 while cuda:0 is current) would be read through the wrong
    context. A no-op (one shared nullcontext) in the usual case; with one GPU, without
    asking torch for the current device."""
    if t.is_cuda and not _one_gpu():
        index = t.get_device()
        if index != torch.cuda.current_device():
            return torch.cuda.device(index)
    return _SAME_DEVICE
