"""Comparison tolerances: a dtype -> (atol, rtol) table, per-op overrides, assert_close.

The defaults allow about one rounding step of the dtype at the output (bf16 has
8 significant bits, so one ulp is 2^-7 relative: rtol 1.6e-2), plus an atol for
values near zero where a relative bound means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    reason: str = "default for the dtype"


DEFAULT: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(1e-9, 1e-7),
    torch.float32: Tolerance(1e-5, 1e-5),
    torch.float16: Tolerance(1e-3, 2e-3),
    torch.bfloat16: Tolerance(1e-2, 1.6e-2),
}


def default_tolerance(dtype: torch.dtype) -> Tolerance:
    try:
        return DEFAULT[dtype]
    except KeyError:
        raise ValueError(
            f"no default tolerance for {dtype}; known: {sorted(map(str, DEFAULT))}. "
            "Pass atol/rtol explicitly or add an override on the op."
        ) from None


def comparison_tolerance(dtype: torch.dtype, op=None) -> Tolerance:
    """What to compare values of `dtype` with: exact for non-float dtypes, else the op's
    tolerance (or the dtype's default), falling back to float32's for dtypes without one."""
    if not dtype.is_floating_point:
        return Tolerance(0.0, 0.0, "exact for non-float dtypes")
    try:
        return op.tolerance(dtype) if op is not None else default_tolerance(dtype)
    except ValueError:
        return default_tolerance(torch.float32)


def outside(actual: torch.Tensor, expected: torch.Tensor, tol: Tolerance) -> torch.Tensor:
    """Boolean mask of elements outside ``|a - e| <= atol + rtol * |e|``.

    NaN matches NaN and an infinity matches the same infinity; anything else
    involving a non-finite value is outside.
    """
    a = actual.detach().to(torch.float64)
    e = expected.detach().to(torch.float64)
    both_nan = a.isnan() & e.isnan()
    same_inf = a.isinf() & e.isinf() & (a == e)
    close = a.isfinite() & e.isfinite() & ((a - e).abs() <= tol.atol + tol.rtol * e.abs())
    return ~(close | both_nan | same_inf)


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    tol: Tolerance | None = None,
    *,
    what: str = "",
) -> None:
    """Raise AssertionError naming the worst element and the tolerance used."""
    if tol is None:
        tol = default_tolerance(actual.dtype)
    label = f"{what}: " if what else ""
    if actual.shape != expected.shape:
        raise AssertionError(f"{label}shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    bad = outside(actual, expected, tol)
    count = int(bad.sum())
    if count == 0:
        return
    a = actual.detach().to(torch.float64)
    e = expected.detach().to(torch.float64)
    err = (a - e).abs().masked_fill(~bad, -1.0).nan_to_num(nan=float("inf"))
    flat = int(err.flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), actual.shape))
    wa, we = a.flatten()[flat].item(), e.flatten()[flat].item()
    raise AssertionError(
        f"{label}{count} of {actual.numel()} elements outside tolerance "
        f"(atol={tol.atol:g}, rtol={tol.rtol:g}, {tol.reason}); worst at {index}: "
        f"actual={wa!r} expected={we!r} abs err={abs(wa - we):.3g} "
        f"rel err={abs(wa - we) / max(abs(we), 1e-300):.3g}"
    )
