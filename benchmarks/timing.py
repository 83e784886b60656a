"""Timing helpers shared by the benchmarks: median wall time after warm-up, peak memory, isolated runs.

Isolated runs: each measured variant runs in its own subprocess (fresh interpreter, same settings) and
prints one JSON line; :func:`best_of_rounds` repeats the whole set of variants in ``rounds`` rounds (the
order rotated each round) and keeps, per variant, the lowest of its per-round medians. On a machine
shared with other jobs this is the measure least disturbed by them; the spread over rounds is kept.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Sequence


def median_seconds(fn: Callable[[], object], repeat: int = 10, warmup: int = 2, clock=time.perf_counter) -> float:
    """Median time of ``fn()`` over ``repeat`` calls after ``warmup`` untimed calls (wall time by default;
    ``clock=time.process_time`` gives the CPU time of all the process's threads)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def adam_training_step(parameters, forward: Callable, x, target) -> tuple[Callable, Callable[[], None]]:
    """``(loss, train)``: the cross-entropy of the time-averaged output ``forward(x) [T, B, classes]``, and one
    training step on it (zero the gradients, backward, Adam at lr 1e-3)."""
    import torch

    optimiser = torch.optim.Adam(parameters, lr=1e-3)

    def loss():
        return torch.nn.functional.cross_entropy(forward(x).mean(0), target)

    def train():
        optimiser.zero_grad(set_to_none=True)
        loss().backward()
        optimiser.step()

    return loss, train


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB, Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def malloc_in_use_mib() -> float:
    """Bytes currently allocated through glibc malloc (heap + mmapped blocks), MiB; PyTorch CPU tensors
    and NumPy arrays are allocated there."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )]

    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20


def held_for_backward_mib(forward_loss: Callable[[], object]) -> float:
    """Memory allocated by a forward pass and still held when the loss is computed (what the backward
    pass will read: saved activations, spike masks, outputs), MiB."""
    before = malloc_in_use_mib()
    loss = forward_loss()
    held = malloc_in_use_mib() - before
    loss.backward()
    return held


def print_table(title: str, rows: list[tuple[str, float]], floor: float) -> None:
    print(f"\n{title}")
    print(f"  {'variant':58s} {'ms':>9s} {'× floor':>8s}")
    for name, seconds in rows:
        print(f"  {name:58s} {seconds * 1e3:9.1f} {seconds / floor:8.2f}")


def tune_malloc() -> None:
    """glibc: serve large blocks from the heap and keep freed memory (no page faults on reuse)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 1 << 30)


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def run_isolated(script: str, arguments: Sequence[str], timeout: float) -> dict:
    """Run ``python script --worker … arguments`` and return its last JSON line (or ``{"error": …}``)."""
    command = [sys.executable, os.path.abspath(script), *arguments]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:110]}
    return json.loads(lines[-1])


def best_of_rounds(run: Callable[[str], dict], variants: Sequence[str], rounds: int, keys: Sequence[str]) -> dict:
    """Per variant: the result of the round with the lowest ``keys[0]``, each key's minimum and all values."""
    collected: dict[str, list[dict]] = {name: [] for name in variants}
    order = list(variants)
    for round_index in range(rounds):
        for name in order[round_index % len(order):] + order[: round_index % len(order)]:
            collected[name].append(run(name))
    results = {}
    for name, runs in collected.items():
        good = [r for r in runs if "error" not in r]
        if not good:
            results[name] = runs[0]
            continue
        best = dict(min(good, key=lambda r: r[keys[0]]))
        for key in keys:
            values = [r[key] for r in good]
            best[key] = min(values)
            best[f"{key}_all"] = values
        results[name] = best
    return results
