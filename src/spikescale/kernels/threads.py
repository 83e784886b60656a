"""numba's thread pool, kept in step with PyTorch's thread count.

numba's OpenMP threading layer (its default when TBB is absent) loads the same ``libgomp.so.1`` as
PyTorch. When its pool starts, it sets that runtime's thread count to ``NUMBA_NUM_THREADS``, which
silently undoes an earlier ``torch.set_num_threads``: after the first parallel numba call a process set
to one thread runs PyTorch's ops and the kernels on every core. :func:`use_threads` starts the pool
first (once per process), gives PyTorch its count back, then sets numba's count from it, so that
``torch.get_num_threads()`` stays the one setting both follow. Every compiled kernel calls it.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import njit, prange

__all__ = ["use_threads"]

SMALL = 1 << 16  # elements below which one thread is faster than waking the others
_started = False


@njit(parallel=True, cache=True)
def _touch(out):  # pragma: no cover - compiled
    for i in prange(out.size):
        out[i] = i


def _start_pool() -> None:
    global _started
    threads = torch.get_num_threads()
    _touch(np.empty(2))
    torch.set_num_threads(threads)
    _started = True


def use_threads(work: int) -> None:
    """Run the next numba kernel on PyTorch's thread count (one thread below :data:`SMALL` elements of work)."""
    if not _started:
        _start_pool()
    threads = 1 if work < SMALL else min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(max(1, threads))
