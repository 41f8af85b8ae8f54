"""On-demand autotuning: the priority entry ``auto`` picks the provider measured fastest.

``rms_norm=auto`` (in IRSHIM_PRIORITY, ir.set_priority or op.set_priority):
candidates are all supported providers of the op; ``rms_norm=auto,triton,native``
limits them to those listed, which are also the static order used where no
measurement may run (tracing, CUDA-graph capture, ``IRSHIM_TUNE=off`` without a
cached choice). Choices are kept per signature bucket (`bucket.py`), in memory
and on disk (`cache.py`).
"""

from .bucket import default_bucket
from .cache import TuneCache, cache_dir
from .tuner import AutoImpl, Choice, cached_choices, stats, tune

__all__ = ["AutoImpl", "Choice", "TuneCache", "cache_dir", "cached_choices", "default_bucket", "stats", "tune"]
