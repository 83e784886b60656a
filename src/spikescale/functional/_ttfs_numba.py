"""Compiled CPU loops (numba) for the exact TTFS layer of :mod:`spikescale.functional.ttfs`.

Same maths as the PyTorch backend there, without the ``[B, N, M]`` intermediates:

* :func:`search` — per sample, walk the input spikes in time order, accumulate the slope
  ``S_i = Σ w_ij`` and offset ``P_i = Σ w_ij t_j`` of every neuron still below threshold and stop a
  neuron at the first segment whose right-end potential ``S_i r_k − P_i`` reaches ``ϑ_i``. Work
  ``O(M)`` per input spike, vectorised over neurons; memory ``O(B·M)``.
* :func:`causal_forward` / :func:`causal_backward` — the sums ``A_bi = Σ_{j∈C_bi} v_ij`` and
  ``B_bi = Σ_{j∈C_bi} v_ij t_bj`` over each neuron's causal set ``C_bi = {j : rank_bj ≤ last_bi}`` and
  their vector-Jacobian products ``dv_ij = Σ_b [j∈C_bi](dA_bi + dB_bi t_bj)``,
  ``dt_bj = Σ_i [j∈C_bi] dB_bi v_ij``. The backward splits the inputs ``j`` between threads, so every
  thread owns its rows of ``dv`` (deterministic, no atomics).

Threads: the kernels are serial ``nogil`` functions run on a small thread pool of
``torch.get_num_threads()`` workers over contiguous ranges of samples (or inputs). numba's own
parallel layer is not used: a second OpenMP runtime next to PyTorch's makes both spin against each
other (measured: small PyTorch ops 3–5× slower after a parallel numba call on 2 cores).

All arrays are C-contiguous numpy views of torch tensors; weights are passed transposed (``[N, M]``) so
that the inner loops over neurons read contiguous rows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
from numba import njit

__all__ = ["search", "causal_forward", "causal_backward"]

# Reassociation only (no NaN/Inf assumptions): lets the reductions over neurons vectorise.
_REASSOC = {"reassoc", "contract", "nsz", "arcp"}
_BLOCK = 8  # inputs per block of the backward pass
_pool: dict[int, ThreadPoolExecutor] = {}


def _parallel(kernel: Callable, total: int, *args) -> None:
    """Run ``kernel(start, stop, *args)`` over ``torch.get_num_threads()`` contiguous ranges of ``total``."""
    workers = max(1, min(torch.get_num_threads(), total))
    if workers == 1:
        kernel(0, total, *args)
        return
    pool = _pool.get(workers)
    if pool is None:
        pool = _pool[workers] = ThreadPoolExecutor(workers, thread_name_prefix="spikescale-ttfs")
    bounds = np.linspace(0, total, workers + 1).astype(np.int64)
    futures = [pool.submit(kernel, int(a), int(b), *args) for a, b in zip(bounds[:-1], bounds[1:])]
    for future in futures:
        future.result()


@njit(nogil=True, cache=True)
def _accumulate(w, live, tk, r, theta, slope, offset):
    """Add input ``w`` (arriving at ``tk``) to the live neurons; count those crossing by ``r``."""
    hits = 0
    for i in range(w.shape[0]):
        a = w[i] * live[i]
        slope[i] += a
        offset[i] += a * tk
        hits += (slope[i] * r - offset[i] >= theta[i]) & (live[i] > 0)
    return hits


@njit(nogil=True, cache=True)
def _sort_sample(row, t_max, order, rank):
    """Stable time order of the inputs inside the window; returns their count."""
    inputs = row.shape[0]
    keep = np.empty(inputs, np.int64)
    n = 0
    for j in range(inputs):
        rank[j] = inputs  # "never causal"
        if np.isfinite(row[j]) and row[j] <= t_max:
            keep[n] = j
            n += 1
    kept = keep[:n]
    perm = np.argsort(row[kept], kind="mergesort")  # stable: ties keep input order
    for k in range(n):
        order[k] = kept[perm[k]]
        rank[order[k]] = k
    return n


@njit(nogil=True, cache=True)
def _scan_sample(order, row_t, n, w_t, theta, t_max, last, slope_out, offset_out, fired):
    neurons = w_t.shape[1]
    slope = np.zeros(neurons, w_t.dtype)
    offset = np.zeros(neurons, w_t.dtype)
    live = np.ones(neurons, w_t.dtype)
    remaining = neurons
    for k in range(n):
        tk = row_t[order[k]]
        r = t_max
        if k + 1 < n and row_t[order[k + 1]] < r:
            r = row_t[order[k + 1]]
        hits = _accumulate(w_t[order[k]], live, tk, r, theta, slope, offset)
        if hits:
            for i in range(neurons):
                if live[i] > 0 and slope[i] * r - offset[i] >= theta[i]:
                    live[i] = 0
                    last[i] = k
                    slope_out[i] = slope[i]
                    offset_out[i] = offset[i]
                    fired[i] = True
            remaining -= hits
            if remaining == 0:
                return
    for i in range(neurons):
        if live[i] > 0:  # silent: its sums cover every input of the window
            last[i] = n - 1
            slope_out[i] = slope[i]
            offset_out[i] = offset[i]
            fired[i] = False


@njit(nogil=True, cache=True)
def _search_range(b0, b1, t_in, w_t, theta, t_max, order, rank, count, last, slope, offset, fired):
    for b in range(b0, b1):
        count[b] = _sort_sample(t_in[b], t_max, order[b], rank[b])
        _scan_sample(order[b], t_in[b], count[b], w_t, theta, t_max, last[b], slope[b], offset[b], fired[b])


def search(t_in, w_t, theta, t_max, order, rank, count, last, slope, offset, fired):
    """Fill ``order, rank [B, N]``, ``count [B]``, ``last, slope, offset, fired [B, M]`` (module doc)."""
    _parallel(_search_range, t_in.shape[0], t_in, w_t, theta, t_max, order, rank, count, last, slope, offset, fired)


@njit(nogil=True, cache=True, fastmath=_REASSOC)
def _forward_row(last_b, v, k, t, a_out, b_out, zero):
    for i in range(v.shape[0]):
        x = v[i] if k <= last_b[i] else zero
        a_out[i] += x
        b_out[i] += x * t


@njit(nogil=True, cache=True)
def _causal_forward_range(b0, b1, t0, rank_f, last_f, v_t, a_out, b_out, zero):
    inputs = t0.shape[1]
    for b in range(b0, b1):
        a_out[b, :] = 0
        b_out[b, :] = 0
        for j in range(inputs):
            if rank_f[b, j] < inputs:
                _forward_row(last_f[b], v_t[j], rank_f[b, j], t0[b, j], a_out[b], b_out[b], zero)


def causal_forward(t0, rank_f, last_f, v_t, a_out, b_out):
    """``a_out, b_out [B, M]`` ← causal sums of ``v_t [N, M]`` (``rank_f``, ``last_f`` as floats)."""
    _parallel(_causal_forward_range, t0.shape[0], t0, rank_f, last_f, v_t, a_out, b_out, v_t.dtype.type(0))


@njit(nogil=True, cache=True, fastmath=_REASSOC)
def _backward_row(last_b, da, db, dv_row, v_row, k, t, zero):
    acc = zero
    for i in range(v_row.shape[0]):
        causal = k <= last_b[i]
        ga = da[i] if causal else zero
        gb = db[i] if causal else zero
        dv_row[i] += ga + gb * t
        acc += gb * v_row[i]
    return acc


@njit(nogil=True, cache=True)
def _causal_backward_range(j0, j1, t0, rank_f, last_f, v_t, da, db, dv_t, dt, zero):
    batch, inputs = t0.shape
    dv_t[j0:j1, :] = 0
    for block in range(j0, j1, _BLOCK):  # a few rows of dv stay in L1 while the batch streams past
        for b in range(batch):
            for j in range(block, min(j1, block + _BLOCK)):
                if rank_f[b, j] < inputs:
                    dt[b, j] = _backward_row(last_f[b], da[b], db[b], dv_t[j], v_t[j], rank_f[b, j], t0[b, j], zero)
                else:
                    dt[b, j] = zero


def causal_backward(t0, rank_f, last_f, v_t, da, db, dv_t, dt):
    """``dv_t [N, M]``, ``dt [B, N]`` ← vector-Jacobian product of the causal sums (module doc)."""
    _parallel(_causal_backward_range, t0.shape[1], t0, rank_f, last_f, v_t, da, db, dv_t, dt, v_t.dtype.type(0))
