"""The numba loops of the sparse-tap delay kernels (see :mod:`spikescale.functional.delay_kernels`).

Module-level and cached on disk by numba (``cache=True``), so they compile once per machine. Each loop is
parallel over independent tasks (``prange``) and calls the register tiles of
:mod:`spikescale.functional.delay_vector_ir` for its inner work.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..kernels.numba_cpu import _exp, soma_update
from .delay_kernels import BLOCK, GROUP, LANES, MAX_CORRELATE_TAPS, ROWS, SINGLE_TAP_ROWS
from .delay_vector_ir import correlate, tile_single, tile_window, transpose

__all__ = ["pack", "pack_bits", "gather_accumulate", "gather_lif", "correlate_values", "gauss_window",
           "gauss_window_backward"]

SYNAPSES = 256  # synapses per task of gauss_window: its loops over them vectorise

_OPTIONS = dict(parallel=True, fastmath=True, boundscheck=False, nogil=True, cache=True)


@njit(**_OPTIONS)
def pack(x, before, out):  # pragma: no cover - compiled
    # out[n, c, before + t, l] = x[t, 16n + l, c], zeros in the other rows and padded samples; 16 × 16 blocks
    steps, batch, channels = x.shape
    groups, _, rows, _ = out.shape
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    for task in prange(groups * rows):
        n = task // rows
        r = task - n * rows
        t = r - before
        lanes = min(LANES, batch - n * LANES) if 0 <= t < steps else 0
        for c0 in range(0, channels, LANES):
            if lanes == LANES and c0 + LANES <= channels:
                transpose(flat_x, (t * batch + n * LANES) * channels + c0, channels,
                          flat_out, ((n * channels + c0) * rows + r) * LANES, rows * LANES)
                continue
            for c in range(c0, min(channels, c0 + LANES)):
                for lane in range(LANES):
                    out[n, c, r, lane] = x[t, n * LANES + lane, c] if lane < lanes else 0.0


@njit(**_OPTIONS)
def pack_bits(x, before, out):  # pragma: no cover - compiled
    # out[n, c, before + t] bit l = (x[t, 16n + l, c] != 0) (out is zero-filled); returns how many
    # values were neither 0 nor 1 (NaN included)
    steps, batch, channels = x.shape
    groups, _, rows = out.shape
    first, last = max(0, -before), min(steps, rows - before)
    others = 0
    for task in prange(groups * max(0, last - first)):
        n = task // (last - first)
        t = first + task - n * (last - first)
        masks = np.zeros(channels, np.int32)
        for lane in range(min(LANES, batch - n * LANES)):
            values = x[t, n * LANES + lane]
            for c in range(channels):
                masks[c] |= np.int32(values[c] != 0.0) << lane
                others += (values[c] != 0.0) & (values[c] != 1.0)
        for c in range(channels):
            out[n, c, before + t] = masks[c]
    return others


@njit(nogil=True, fastmath=True, boundscheck=False, cache=True)
def store_tile(tile_rows, t0, n, out):  # pragma: no cover - compiled
    # out[t0 + k, 16n + l, c] = tile_rows[c, k, l] for the steps and samples out has, by 16 × 16 blocks
    steps, batch, channels = out.shape
    height = tile_rows.shape[1]
    lanes = min(LANES, batch - n * LANES)
    flat_tile, flat_out = tile_rows.reshape(-1), out.reshape(-1)
    for k in range(min(height, steps - t0)):
        for c0 in range(0, channels, LANES):
            if lanes == LANES and c0 + LANES <= channels:
                transpose(flat_tile, (c0 * height + k) * LANES, height * LANES,
                          flat_out, ((t0 + k) * batch + n * LANES) * channels + c0, channels)
                continue
            for lane in range(lanes):
                for c in range(c0, min(channels, c0 + LANES)):
                    out[t0 + k, n * LANES + lane, c] = tile_rows[c, k, lane]


@njit(**_OPTIONS)
def gather_accumulate(src, offsets, values, out):  # pragma: no cover - compiled
    # out[t, 16n + l, c] = Σ_{e,j} values[c, e, j] · src[n] (flat)[offsets[c, e] + u (t − j) (+ l)], rows
    # of u = 16 elements (float source [B/16, C, R, 16]) or of one 16-bit mask (spike source [B/16, C, R]).
    # Each task computes all channels of one tile of rows and samples, then transposes it into out.
    steps, batch, channels = out.shape
    unit = LANES if src.ndim == 4 else 1
    panel = src.shape[1] * src.shape[2] * unit
    flat_src = src.reshape(-1)
    height = SINGLE_TAP_ROWS if values.shape[2] == 1 else ROWS
    tiles = -(-steps // height)
    for task in prange(src.shape[0] * tiles):  # sample-group-major: neighbouring tiles share source rows
        n = task // tiles
        t0 = (task - n * tiles) * height
        tile_rows = np.empty((channels, height, LANES), values.dtype)
        gather_tile(flat_src, src.shape[1], n * panel + t0 * unit, offsets, values, tile_rows)
        store_tile(tile_rows, t0, n, out)


@njit(nogil=True, fastmath=True, boundscheck=False, cache=True)
def gather_tile(flat_src, sources, base, offsets, values, tile_rows):  # pragma: no cover - compiled
    # tile_rows[c, k, l] = Σ_{e,j} values[c, e, j] · flat_src[base + offsets[c, e] + u (k − j) (+ l)] for every
    # channel c: the entries taken GROUP source channels at a time (their rows stay in the L1 cache)
    channels, height = tile_rows.shape[0], tile_rows.shape[1]
    entries, taps = values.shape[1], values.shape[2]
    block = GROUP * (entries // sources)
    flat_tile = tile_rows.reshape(-1)
    for first in range(0, entries, block):
        last = min(entries, first + block)
        for c in range(channels):
            at = c * height * LANES
            if taps == 1:
                tile_single(flat_src, base, offsets, values, taps, first, last, c, flat_tile, at, first == 0)
            else:
                tile_window(flat_src, base, offsets, values, taps, first, last, c, flat_tile, at, first == 0)


@njit(**_OPTIONS)
def gather_lif(src, offsets, values, gain, bias, scale, beta, theta, soft, consts, u, s, out):  # pragma: no cover
    # gather_accumulate's integer-delay gather (spike masks, one tap) of each 16-step tile, then on it the LIF
    # soma of kernels.numba_cpu (soma_update, consts = [1, h, soft]) driven by I = gain[c] · y + bias[c];
    # out[t, 16n + l, c] = spikes. u, s [B, C]: the soma state before the first step, after the last on return.
    steps, batch, channels = out.shape
    one, hard = consts[0], consts[1]
    zero = one - one
    panel = src.shape[1] * src.shape[2]
    flat_src = src.reshape(-1)
    for n in prange(src.shape[0]):  # the soma runs forward in time: one task per sample group
        lanes = min(LANES, batch - n * LANES)
        tile_rows = np.empty((channels, SINGLE_TAP_ROWS, LANES), values.dtype)
        u_n = np.zeros((channels, LANES), values.dtype)
        s_n = np.zeros((channels, LANES), values.dtype)
        for lane in range(lanes):
            for c in range(channels):
                u_n[c, lane], s_n[c, lane] = u[n * LANES + lane, c], s[n * LANES + lane, c]
        for t0 in range(0, steps, SINGLE_TAP_ROWS):
            gather_tile(flat_src, src.shape[1], n * panel + t0, offsets, values, tile_rows)
            for c in range(channels):
                u_c, s_c, row_gain, row_bias = u_n[c], s_n[c], gain[c], bias[c]
                for k in range(min(SINGLE_TAP_ROWS, steps - t0)):
                    row = tile_rows[c, k]
                    for lane in range(LANES):
                        new = soma_update(row_gain * row[lane] + row_bias, u_c[lane], s_c[lane], scale[c], beta[c],
                                          soft[c], hard, one)
                        u_c[lane] = new
                        s_c[lane] = one if new > theta[c] else zero
                        row[lane] = s_c[lane]
            store_tile(tile_rows, t0, n, out)
        for lane in range(lanes):
            for c in range(channels):
                u[n * LANES + lane, c], s[n * LANES + lane, c] = u_n[c, lane], s_n[c, lane]


@njit(**_OPTIONS)
def correlate_values(grad, shift, rows, src, offsets, out):  # pragma: no cover - compiled
    # out[c, e, j] = Σ_n Σ_{t<rows, l} grad[n, c, shift + t, l] · src[n] (flat)[offsets[c, e] + 16 (t − j) + l]
    groups, channels, grad_rows, _ = grad.shape
    entries, taps = out.shape[1], out.shape[2]
    panel = src.shape[1] * src.shape[2] * LANES
    block = GROUP * (entries // src.shape[1])
    flat_grad, flat_src, flat_out = grad.reshape(-1), src.reshape(-1), out.reshape(-1)
    passes = -(-entries // block)
    # one task: BLOCK destination channels × the entries of one group (they share its source rows); tasks
    # over groups too, so that narrow layers (few destination channels) still have work for every thread
    for task in prange(-(-channels // BLOCK) * passes):
        first_channel = (task // passes) * BLOCK
        first = (task % passes) * block
        for c in range(first_channel, min(channels, first_channel + BLOCK)):
            grad_base = (c * grad_rows + shift) * LANES
            for e in range(first, min(entries, first + block)):
                for j0 in range(0, taps, MAX_CORRELATE_TAPS):
                    correlate(flat_grad, grad_base, channels * grad_rows * LANES,
                              flat_src, offsets[c, e] - j0 * LANES, panel, groups, rows // ROWS,
                              min(MAX_CORRELATE_TAPS, taps - j0), flat_out, (c * entries + e) * taps + j0)


@njit(**_OPTIONS)
def gauss_window(centres, start, weight, width, floor, max_delay, eps, taps, values, moment):  # pragma: no cover
    # taps[s, j] = ĝ_{start_s + j}, values[s, j] = w_s taps[s, j], moment[s] = Σ_d ĝ_d (d − δ_s) over all K
    # taps, with ĝ_d = e_d / (Σ_d' e_d' + eps), e_d = exp(x) for x = −(d − δ_s)² / (2 width²) above floor, else 0;
    # float64 inside
    synapses, window = taps.shape
    scale = -0.5 / (width * width)
    for task in prange(-(-synapses // SYNAPSES)):
        first, last = task * SYNAPSES, min(synapses, task * SYNAPSES + SYNAPSES)
        count = last - first
        bumps = np.empty((max_delay, count))  # e_d of each synapse, contiguous over synapses
        total = np.zeros(count)
        weighted = np.zeros(count)
        centre = centres[first:last]
        for d in range(max_delay):
            row = bumps[d]  # one-dimensional views: the loop over synapses vectorises
            for i in range(count):
                distance = d - np.float64(centre[i])
                exponent = scale * distance * distance
                e = _exp(max(exponent, floor)) if exponent > floor else 0.0
                row[i] = e
                total[i] += e
                weighted[i] += e * distance
        for i in range(count):
            s = first + i
            norm = 1.0 / (total[i] + eps)
            moment[s] = weighted[i] * norm
            for j in range(window):
                g = bumps[start[s] + j, i] * norm
                taps[s, j] = g
                values[s, j] = weight[s] * g


@njit(**_OPTIONS)
def gauss_window_backward(grad_values, taps, start, centres, weight, moment, width, grad_weight,
                          grad_positions):  # pragma: no cover - compiled
    # dL/dw_s = Σ_j ḡ_sj ĝ_sj;
    # dL/dp_s = −(w_s / width²) (Σ_j ḡ_sj ĝ_sj (d_j − δ_s) − dL/dw_s · moment[s])
    synapses, window = taps.shape
    for s in prange(synapses):
        by_weight = 0.0
        by_distance = 0.0
        for j in range(window):
            product = np.float64(grad_values[s, j]) * taps[s, j]
            by_weight += product
            by_distance += product * (start[s] + j - np.float64(centres[s]))
        grad_weight[s] = by_weight
        grad_positions[s] = -(weight[s] / (width * width)) * (by_distance - by_weight * moment[s])
