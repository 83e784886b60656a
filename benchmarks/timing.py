"""Small timing helpers shared by the benchmarks (median wall time after warm-up, peak memory)."""

from __future__ import annotations

import resource
import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], repeat: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB, Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def print_table(title: str, rows: list[tuple[str, float]], floor: float) -> None:
    print(f"\n{title}")
    print(f"  {'variant':58s} {'ms':>9s} {'× floor':>8s}")
    for name, seconds in rows:
        print(f"  {name:58s} {seconds * 1e3:9.1f} {seconds / floor:8.2f}")
