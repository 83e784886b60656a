"""Compiled CPU loops (numba) for the exact TTFS layer of :mod:`spikescale.functional.ttfs`.

Same maths as the PyTorch back-end there, without its ``[B, N, M]`` intermediates:

* :func:`search` — per sample, sort the input spikes inside the window (stable LSD radix sort on
  order-preserving integer keys), then walk them in time order keeping, for every neuron, the slope
  ``S_i`` and the potential ``V_i`` at the end of the current segment,
  ``S_i += w_ij``, ``V_i += S_i (r_k − t_k)``; a neuron fires in the first segment whose right-end
  potential reaches ``ϑ_i`` (its threshold is then set to ``+∞`` so it is not detected again), and
  ``P_i = S_i r_k − V_i``. Work ``O(M)`` per input spike, vectorised over neurons; memory ``O(B·M)``.
* :func:`subtract_tails` / :func:`subtract_tail_gradients` — the causal sums ``Σ_{j∈C_bi}`` of
  :mod:`..ttfs` and their vector-Jacobian products are computed (in PyTorch) as dense matrix products
  over every input of the window; these loops subtract each neuron's *tail*
  ``{j : last_bi < rank_bj < n_b}`` (inputs that arrived after neuron ``i`` fired). Tails are short
  (measured on Fashion-MNIST, first layer: 2–5 % of the dense work; silent neurons have none); the
  loops visit, per sample, the tail inputs in time order and only the neurons whose tail holds them
  (all neurons at once, vectorised and masked, when there are many).

Threads: the kernels are serial ``nogil`` functions run over contiguous ranges of samples by the
calling thread and a small pool, ``torch.get_num_threads()`` threads in all. numba's own parallel
layer is not used: a second OpenMP runtime next to PyTorch's makes both spin against each other
(measured on the shared 2-core machine: small PyTorch ops 3–5× slower right after a parallel numba
call).

All arrays are C-contiguous numpy views of torch tensors; weights are passed transposed (``[N, M]``) so
that the inner loops over neurons read contiguous rows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
from numba import njit

__all__ = ["float_bits", "search", "subtract_tails", "subtract_tail_gradients", "workers"]

# Reassociation only (no NaN/Inf assumptions): lets the reduction over neurons vectorise.
_REASSOC = {"reassoc", "contract", "nsz", "arcp"}
_pool: dict[int, ThreadPoolExecutor] = {}


def workers(total: int) -> int:
    """Threads used for ``total`` independent items (``torch.get_num_threads()`` at most)."""
    return max(1, min(torch.get_num_threads(), total))


def _parallel(kernel: Callable, total: int, *args) -> None:
    """Run ``kernel(start, stop, part, *args)`` on :func:`workers` contiguous ranges of ``total``; the
    calling thread takes the last range itself."""
    count = workers(total)
    bounds = np.linspace(0, total, count + 1).astype(np.int64)
    futures = []
    if count > 1:
        pool = _pool.get(count)
        if pool is None:
            pool = _pool[count] = ThreadPoolExecutor(count - 1, thread_name_prefix="spikescale-ttfs")
        futures = [pool.submit(kernel, int(bounds[p]), int(bounds[p + 1]), p, *args) for p in range(count - 1)]
    kernel(int(bounds[-2]), int(bounds[-1]), count - 1, *args)
    for future in futures:
        future.result()


def float_bits(t_in: torch.Tensor) -> np.ndarray:
    """The bits of ``t_in`` as signed integers of the same width (a view, no copy)."""
    return t_in.view(torch.int32 if t_in.dtype == torch.float32 else torch.int64).numpy()


@njit(nogil=True, cache=True)
def _radix_order(row, bits, t_max, order, rank, inside, t0, key_a, key_b, idx_a, idx_b, hist):
    """Stable LSD radix sort (bytes, constant bytes skipped) of the inputs inside the window.

    Keys: the float bits as a signed integer are ordered like the floats for non-negative values and
    reversed for negative ones; flipping all but the sign bit of negative values, then the sign bit,
    gives unsigned keys in float order (``-0.0`` is first made ``+0.0``). Also fills the in-window
    mask ``inside`` (1.0 / 0.0) and the times ``t0`` with the inputs outside the window set to 0.
    """
    inputs = row.shape[0]
    low_bits = (np.int64(1) << np.int64(8 * bits.itemsize - 1)) - np.int64(1)
    sign = np.uint64(1) << np.uint64(63)
    n = 0
    ones = np.uint64(0)
    zeros = ~np.uint64(0)
    for j in range(inputs):
        rank[j] = inputs  # "never causal"
        inside[j] = 0
        t0[j] = 0
        if np.isfinite(row[j]) and row[j] <= t_max:
            inside[j] = 1
            t0[j] = row[j]
            raw = np.int64(bits[j]) if row[j] != 0 else np.int64(0)
            key = np.uint64(raw ^ low_bits if raw < 0 else raw) ^ sign
            key_a[n] = key
            idx_a[n] = j
            ones |= key
            zeros &= key
            n += 1
    varying = ones ^ zeros  # bits that differ between keys; bytes without any are already sorted
    src_k, dst_k, src_i, dst_i = key_a, key_b, idx_a, idx_b
    for byte in range(8):
        shift = np.uint64(8 * byte)
        if (varying >> shift) & np.uint64(255) == 0:
            continue
        hist[:] = 0
        for m in range(n):
            hist[(src_k[m] >> shift) & np.uint64(255)] += 1
        start = 0
        for d in range(256):
            c = hist[d]
            hist[d] = start
            start += c
        for m in range(n):
            d = (src_k[m] >> shift) & np.uint64(255)
            dst_k[hist[d]] = src_k[m]
            dst_i[hist[d]] = src_i[m]
            hist[d] += 1
        src_k, dst_k, src_i, dst_i = dst_k, src_k, dst_i, src_i
    for k in range(n):
        order[k] = src_i[k]
        rank[src_i[k]] = k
    return n


@njit(nogil=True, cache=True)
def _advance(w_t, j, delta, slope, volt, theta):
    """Add input ``j``, move every potential to the segment end; count neurons at threshold."""
    hits = 0
    for i in range(w_t.shape[1]):
        slope[i] += w_t[j, i]
        volt[i] += slope[i] * delta
        hits += volt[i] >= theta[i]
    return hits


@njit(nogil=True, cache=True)
def _scan_sample(order, row_t, n, w_t, theta, t_max, last, slope_out, offset_out, fired):
    neurons = w_t.shape[1]
    slope = np.zeros(neurons, w_t.dtype)
    volt = np.zeros(neurons, w_t.dtype)
    active = theta.copy()  # +inf once a neuron has fired
    remaining = neurons
    for k in range(n):
        tk = row_t[order[k]]
        r = t_max
        if k + 1 < n and row_t[order[k + 1]] < r:
            r = row_t[order[k + 1]]
        hits = _advance(w_t, order[k], r - tk, slope, volt, active)
        if hits:
            for i in range(neurons):
                if volt[i] >= active[i]:
                    active[i] = np.inf
                    last[i] = k
                    slope_out[i] = slope[i]
                    offset_out[i] = slope[i] * r - volt[i]
                    fired[i] = True
            remaining -= hits
            if remaining == 0:
                return
    for i in range(neurons):
        if active[i] < np.inf:  # silent: its sums cover every input of the window
            last[i] = n - 1
            slope_out[i] = slope[i]
            offset_out[i] = slope[i] * t_max - volt[i]
            fired[i] = False


@njit(nogil=True, cache=True)
def _search_range(b0, b1, part, t_in, bits, w_t, theta, t_max, order, rank, count, last, slope, offset, fired, window):
    batch, inputs = t_in.shape
    key_a = np.empty(inputs, np.uint64)
    key_b = np.empty(inputs, np.uint64)
    idx_a = np.empty(inputs, np.int64)
    idx_b = np.empty(inputs, np.int64)
    hist = np.empty(256, np.int64)
    for b in range(b0, b1):
        count[b] = _radix_order(
            t_in[b], bits[b], t_max, order[b], rank[b], window[b], window[batch + b], key_a, key_b, idx_a, idx_b, hist
        )
        _scan_sample(order[b], t_in[b], count[b], w_t, theta, t_max, last[b], slope[b], offset[b], fired[b])


def search(t_in, bits, w_t, theta, t_max, order, rank, count, last, slope, offset, fired, window):
    """Fill ``order, rank [B, N]``, ``count [B]``, ``last, slope, offset, fired [B, M]`` and
    ``window [2B, N]`` (in-window mask, then in-window times) (module doc); ``bits``: :func:`float_bits`
    of ``t_in``."""
    _parallel(_search_range, t_in.shape[0], t_in, bits, w_t, theta, t_max, order, rank, count, last, slope, offset, fired, window)


@njit(nogil=True, cache=True)
def _tails(last_b, n):
    """Neurons with a non-empty tail sorted by ``last``, and for each tail row ``k`` (input rank) the
    number ``p_k`` of them whose tail holds it: the tails nest, so those are the first ``p_k``."""
    neurons = np.flatnonzero(last_b < n - 1)
    neurons = neurons[np.argsort(last_b[neurons], kind="mergesort")]
    first = last_b[neurons[0]] + 1 if neurons.shape[0] else n
    rows = np.arange(first, n)
    return neurons, rows, np.searchsorted(last_b[neurons], rows, side="left")


@njit(nogil=True, cache=True, fastmath=_REASSOC)
def _tail_row_backward(last, b, k, v_t, j, tj, grad_a, grad_b, dv, dv_row):
    """Input ``j`` (rank ``k``) of sample ``b``, all neurons at once (vectorised, masked by ``last < k``):
    ``dv[dv_row] −= tail terms``; returns the tail part of ``dt[b, j]``."""
    zero = v_t.dtype.type(0)
    acc = zero
    for i in range(v_t.shape[1]):
        tail = last[b, i] < k
        ga = grad_a[b, i] if tail else zero
        gb = grad_b[b, i] if tail else zero
        dv[dv_row, i] -= ga + gb * tj
        acc += gb * v_t[j, i]
    return acc


@njit(nogil=True, cache=True, fastmath=_REASSOC)
def _tail_row_forward(last, b, k, v_t, j, tj, sums_a, sums_b):
    zero = v_t.dtype.type(0)
    for i in range(v_t.shape[1]):
        x = v_t[j, i] if last[b, i] < k else zero
        sums_a[b, i] -= x
        sums_b[b, i] -= x * tj


@njit(nogil=True, cache=True)
def _tails_forward_range(b0, b1, part, t0, order, count, last, v_t, sums_a, sums_b):
    width = v_t.shape[1]
    for b in range(b0, b1):
        neurons, rows, prefix = _tails(last[b], count[b])
        for r in range(rows.shape[0]):
            j = order[b, rows[r]]
            tj = t0[b, j]
            if 8 * prefix[r] > width:  # many tail neurons: one masked pass over all of them
                _tail_row_forward(last, b, rows[r], v_t, j, tj, sums_a, sums_b)
            else:
                for q in range(prefix[r]):
                    i = neurons[q]
                    sums_a[b, i] -= v_t[j, i]
                    sums_b[b, i] -= v_t[j, i] * tj


@njit(nogil=True, cache=True)
def _tails_backward_range(b0, b1, part, t0, order, count, last, v_t, grad_a, grad_b, dv_t, dv_parts, dt):
    """Subtract the tails from ``dv_t`` (first worker) or from ``dv_parts[part - 1]``; ``dt`` gets the
    tail parts (to subtract)."""
    width = v_t.shape[1]
    dv = dv_t if part == 0 else dv_parts[part - 1]
    for b in range(b0, b1):
        neurons, rows, prefix = _tails(last[b], count[b])
        for r in range(rows.shape[0]):
            j = order[b, rows[r]]
            tj = t0[b, j]
            if 8 * prefix[r] > width:
                dt[b, j] = _tail_row_backward(last, b, rows[r], v_t, j, tj, grad_a, grad_b, dv, j)
            else:
                acc = v_t.dtype.type(0)
                for q in range(prefix[r]):
                    i = neurons[q]
                    dv[j, i] -= grad_a[b, i] + grad_b[b, i] * tj
                    acc += grad_b[b, i] * v_t[j, i]
                dt[b, j] = acc


def subtract_tails(t0, order, count, last, v_t, sums_a, sums_b):
    """Forward causal sums: ``sums_a, sums_b [B, M]`` hold the dense sums over the window; subtract the tails."""
    _parallel(_tails_forward_range, t0.shape[0], t0, order, count, last, v_t, sums_a, sums_b)


def subtract_tail_gradients(t0, order, count, last, v_t, grad_a, grad_b, dv_t):
    """Backward: ``dv_t [N, M]`` holds the dense vector-Jacobian product over the window; subtract the
    tails in place. Returns the tails of ``dt [B, N]`` (to subtract from its dense product)."""
    parts = np.zeros((workers(t0.shape[0]) - 1,) + v_t.shape, t0.dtype)
    dt = np.zeros(t0.shape, t0.dtype)
    _parallel(_tails_backward_range, t0.shape[0], t0, order, count, last, v_t, grad_a, grad_b, dv_t, parts, dt)
    for part in parts:  # the other workers' (already negated) tails
        dv_t += part
    return dt
