"""Host time of call variants timed side by side: the method of the overhead benchmarks.

Each repeat times every variant in turn (the order reversed every other repeat, so a
drift of the machine hits both sides of a comparison alike); an overhead is the median
of the per-repeat differences between two variants, with the difference of the minima
and the interquartile range of the differences beside it.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable


def per_call_us(fn: Callable[[], object], number: int) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6


def measure(variants: dict[str, Callable[[], object]], number: int, repeats: int) -> dict[str, list[float]]:
    """Per-call µs of each variant, one sample per repeat."""
    samples: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants.items())
    for fn in variants.values():  # warm-up
        per_call_us(fn, max(1, number // 10))
    for r in range(repeats):
        for name, fn in order if r % 2 == 0 else order[::-1]:
            samples[name].append(per_call_us(fn, number))
    return samples


def difference(samples: dict[str, list[float]], base: str, other: str) -> dict[str, float]:
    """`other` - `base`: median of the per-repeat differences, difference of the minima,
    interquartile range of the per-repeat differences."""
    diffs = [o - b for b, o in zip(samples[base], samples[other])]
    q1, _, q3 = statistics.quantiles(diffs, n=4)
    return {"median": statistics.median(diffs), "min": min(samples[other]) - min(samples[base]), "iqr": q3 - q1}
