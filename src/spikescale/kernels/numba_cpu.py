r"""CPU backend: the time loops of :mod:`spikescale.functional`, compiled by numba.

Every kernel runs the time loop inside and parallelises over independent rows (batch × blocks of
neurons, or batch elements when neurons interact); the equations are those stated in
:mod:`spikescale.functional.lif`, :mod:`~spikescale.functional.dh_lif` and
:mod:`~spikescale.functional.scan`, evaluated in the same order as the reference so that float64 results
agree to rounding. Surrogate pseudo-derivatives are not restated here: :func:`surrogate_grad` compiles
the surrogate's own ``formula``. Spikes kept for the backward pass are ``uint8``.

The wrappers take and return torch tensors (CPU, float32 or float64) and share memory with them
through ``Tensor.numpy()``. Reductions over time (parameter gradients) accumulate in float64.

Settings: numba's ``workqueue`` threading layer is chosen unless ``NUMBA_THREADING_LAYER`` is set
(OpenMP worker threads that spin after a parallel region slow down PyTorch's own threads on small
machines), and every call uses ``min(torch.get_num_threads(), NUMBA_NUM_THREADS)`` threads.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from ..functional.surrogate import Surrogate

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

__all__ = [
    "RESET_CODES",
    "surrogate_grad",
    "lif_forward",
    "lif_backward",
    "scan_forward",
    "scan_backward",
    "dendrite_forward",
    "dendrite_backward",
    "dh_recurrent_forward",
    "dh_recurrent_backward",
    "EventList",
    "events_from_dense",
    "event_linear_forward",
    "event_linear_weight_grad",
    "event_sparse_forward",
    "event_sparse_weight_grad",
    "event_dendrite_forward",
    "event_dendrite_backward",
]

RESET_CODES = {"soft": 0, "hard": 1, "none": 2}
_SOFT, _HARD, _NONE = 0, 1, 2

_JIT = dict(cache=True, nogil=True)
_PAR = dict(cache=True, nogil=True, parallel=True)


def _threads() -> None:
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _vector(value: Tensor, size: int, like: Tensor) -> np.ndarray:
    """A ``[size]`` array of ``value`` (scalar or ``[size]`` tensor) in the dtype of ``like``."""
    return _np(value.detach().to(like.dtype).expand(size))


def _block(neurons: int) -> int:
    return min(neurons, 128)


# ----------------------------------------------------------------------------------------- surrogates

@njit(**_JIT)
def _exp(x):
    return math.exp(x)


@njit(**_JIT)
def _box(x, half_width):
    return 1.0 if abs(x) < half_width else 0.0


_SURROGATE_KERNELS: dict = {}


def _surrogate_kernel(formula):
    kernel = _SURROGATE_KERNELS.get(formula)
    if kernel is None:
        scalar = njit(nogil=True)(formula)

        @njit(nogil=True, parallel=True)
        def kernel(u, theta, params, out):  # u, out [T, R, N]; theta [N]
            steps, rows, neurons = u.shape
            for job in prange(steps * rows):
                t = job // rows
                r = job % rows
                for n in range(neurons):
                    out[t, r, n] = scalar(u[t, r, n] - theta[n], _exp, _box, *params)

        _SURROGATE_KERNELS[formula] = kernel
    return kernel


def surrogate_grad(surrogate, u: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``g(u - θ)`` for ``u [T, R, N]``, ``θ [N]``: the surrogate's ``formula`` compiled, else its torch ``grad``."""
    formula = type(surrogate).formula
    if formula is None or type(surrogate).grad is not Surrogate.grad:
        return surrogate.grad(torch.from_numpy(u) - torch.from_numpy(theta)).numpy()
    out = np.empty_like(u)
    params = tuple(float(p) for p in surrogate.formula_params())
    _surrogate_kernel(formula)(u, theta, params, out)
    return out


# ----------------------------------------------------------------------------------------------- LIF

@njit(**_PAR)
def _lif_forward(current, scale, beta, theta, u0, s0, reset, block, u_out, s_out, s_mask):
    steps, rows, neurons = current.shape
    blocks = (neurons + block - 1) // block
    for job in prange(rows * blocks):
        r = job // blocks
        n0 = (job % blocks) * block
        n1 = min(neurons, n0 + block)
        u = u0[r, n0:n1].copy()
        s = s0[r, n0:n1].copy()
        for t in range(steps):
            for j in range(n1 - n0):
                n = n0 + j
                drive = (1.0 - beta[n]) * current[t, r, n] if scale else current[t, r, n]
                if reset == _HARD:
                    new = drive + beta[n] * (u[j] * (1.0 - s[j]))
                else:
                    new = drive + beta[n] * u[j]
                    if reset == _SOFT:
                        new = new - theta[n] * s[j]
                spike = new > theta[n]
                u[j] = new
                s[j] = 1.0 if spike else 0.0
                u_out[t, r, n] = new
                s_out[t, r, n] = s[j]
                s_mask[t, r, n] = spike


def lif_forward(current: Tensor, beta: Tensor, threshold: Tensor, u0: Tensor, s0: Tensor, reset: str, scale_input: bool):
    """Soma forward: ``(spikes [T, B, N] float, u trace [T, B, N], spikes uint8)``."""
    _threads()
    steps, batch, neurons = current.shape
    cur = _np(current)
    u_all = torch.empty_like(current)
    spikes = torch.empty_like(current)
    mask = torch.empty(current.shape, dtype=torch.uint8)
    _lif_forward(
        cur, scale_input, _vector(beta, neurons, current), _vector(threshold, neurons, current),
        _np(u0.to(current.dtype)), _np(s0.to(current.dtype)), RESET_CODES[reset], _block(neurons),
        u_all.numpy(), spikes.numpy(), mask.numpy(),
    )
    return spikes, u_all, mask


@njit(**_PAR)
def _lif_backward(
    grad_s, grad_u_last, sg, u_all, s_mask, current, u0, s0, beta, theta, reset, detach, scale, block,
    write_direct, grad_current, gu_first, g_beta, g_theta, direct_out,
):
    steps, rows, neurons = u_all.shape
    blocks = (neurons + block - 1) // block
    for job in prange(rows * blocks):
        r = job // blocks
        n0 = (job % blocks) * block
        n1 = min(neurons, n0 + block)
        width = n1 - n0
        gu = np.zeros(width, u_all.dtype)
        acc_beta = np.zeros(width, np.float64)
        acc_theta = np.zeros(width, np.float64)
        for t in range(steps - 1, -1, -1):
            for j in range(width):
                n = n0 + j
                u = u_all[t, r, n]
                spiked = s_mask[t, r, n]
                gs = grad_s[t, r, n]
                if not detach:
                    if reset == _SOFT:
                        gs = gs - theta[n] * gu[j]
                    elif reset == _HARD:
                        gs = gs - beta[n] * u * gu[j]
                if reset == _HARD:
                    carried = beta[n] * (0.0 if spiked else 1.0) * gu[j]
                else:
                    carried = beta[n] * gu[j]
                direct = gs * sg[t, r, n]
                g = carried + direct
                if t == steps - 1:
                    g = g + grad_u_last[r, n]
                gu[j] = g
                grad_current[t, r, n] = (1.0 - beta[n]) * g if scale else g
                if write_direct:
                    injected = direct + grad_u_last[r, n] if t == steps - 1 else direct
                    direct_out[t, r, n] = (1.0 - beta[n]) * injected if scale else injected
                if t > 0:
                    u_prev = u_all[t - 1, r, n]
                    s_prev = 1.0 if s_mask[t - 1, r, n] else 0.0
                else:
                    u_prev = u0[r, n]
                    s_prev = s0[r, n]
                term = u_prev * (1.0 - s_prev) if reset == _HARD else u_prev
                if scale:
                    term = term - current[t, r, n]
                acc_beta[j] += g * term
                total = -direct
                if reset == _SOFT:
                    total = total - g * s_prev
                acc_theta[j] += total
        for j in range(width):
            gu_first[r, n0 + j] = gu[j]
            g_beta[r, n0 + j] = acc_beta[j]
            g_theta[r, n0 + j] = acc_theta[j]


def lif_backward(
    grad_spikes: Tensor, grad_u_last: Tensor, u_all: Tensor, spike_mask: Tensor, current: Tensor,
    u0: Tensor, s0: Tensor, beta: Tensor, threshold: Tensor, surrogate, reset: str, detach_reset: bool,
    scale_input: bool, want_direct: bool = False,
):
    """Soma BPTT: ``(dL/dI [T, B, N], g^u_0 [B, N], dL/dβ per (b, n), dL/dθ per (b, n), injections or None)``.

    The injections ``c·ĝ^s_t σ'_t`` (plus ``c·dL/du_T`` at the last step) are written when ``want_direct``.
    """
    _threads()
    steps, batch, neurons = u_all.shape
    u = u_all.numpy()
    theta = _vector(threshold, neurons, u_all)
    sg = surrogate_grad(surrogate, u, theta)
    grad_current = torch.empty_like(u_all)
    gu_first = torch.empty(batch, neurons, dtype=u_all.dtype)
    g_beta = torch.empty(batch, neurons, dtype=u_all.dtype)
    g_theta = torch.empty(batch, neurons, dtype=u_all.dtype)
    direct = torch.empty_like(u_all) if want_direct else u_all.new_empty(1, 1, 1)
    _lif_backward(
        _np(grad_spikes.to(u_all.dtype)), _np(grad_u_last.to(u_all.dtype)), sg, u, spike_mask.numpy(),
        _np(current.to(u_all.dtype)), _np(u0.to(u_all.dtype)), _np(s0.to(u_all.dtype)),
        _vector(beta, neurons, u_all), theta, RESET_CODES[reset], detach_reset, scale_input,
        _block(neurons), want_direct, grad_current.numpy(), gu_first.numpy(), g_beta.numpy(), g_theta.numpy(),
        direct.numpy(),
    )
    return grad_current, gu_first, g_beta, g_theta, direct if want_direct else None


# ------------------------------------------------------------------------------------- linear scans

@njit(**_PAR)
def _scan_forward(x, a, y0, scale, reverse, y):
    steps, rows, channels = x.shape
    for r in prange(rows):
        prev = y0[r].copy()
        for step in range(steps):
            t = steps - 1 - step if reverse else step
            for c in range(channels):
                drive = (1.0 - a[c]) * x[t, r, c] if scale else x[t, r, c]
                prev[c] = drive + a[c] * prev[c]
                y[t, r, c] = prev[c]


def scan_forward(x: Tensor, a: Tensor, y0: Tensor, scale_input: bool, reverse: bool = False) -> Tensor:
    """``y_t = a y_{t-1} + c(a) x_t`` for ``x [T, R, C]``, ``a [C]``, ``y0 [R, C]`` (``reverse``: from ``t = T-1``)."""
    _threads()
    y = torch.empty_like(x)
    _scan_forward(_np(x), _vector(a, x.shape[-1], x), _np(y0.to(x.dtype)), scale_input, reverse, y.numpy())
    return y


@njit(**_PAR)
def _scan_backward(grad_y, x, a, y0, scale, grad_x, g_a, g_y0):
    steps, rows, channels = x.shape
    for r in prange(rows):
        prev = y0[r].copy()  # recompute y into grad_x, then overwrite it backwards with dL/dx
        for t in range(steps):
            for c in range(channels):
                drive = (1.0 - a[c]) * x[t, r, c] if scale else x[t, r, c]
                prev[c] = drive + a[c] * prev[c]
                grad_x[t, r, c] = prev[c]
        g = np.zeros(channels, x.dtype)
        acc = np.zeros(channels, np.float64)
        for t in range(steps - 1, -1, -1):
            for c in range(channels):
                g[c] = grad_y[t, r, c] + a[c] * g[c]
                y_prev = grad_x[t - 1, r, c] if t > 0 else y0[r, c]
                term = y_prev - x[t, r, c] if scale else y_prev
                acc[c] += g[c] * term
                grad_x[t, r, c] = (1.0 - a[c]) * g[c] if scale else g[c]
        for c in range(channels):
            g_a[r, c] = acc[c]
            g_y0[r, c] = a[c] * g[c]


def scan_backward(grad_y: Tensor, x: Tensor, a: Tensor, y0: Tensor, scale_input: bool):
    """BPTT of :func:`scan_forward`: ``(dL/dx, dL/da per row [R, C], dL/dy0)``."""
    _threads()
    rows, channels = y0.shape
    grad_x = torch.empty_like(x)
    g_a = torch.empty(rows, channels, dtype=x.dtype)
    g_y0 = torch.empty(rows, channels, dtype=x.dtype)
    _scan_backward(
        _np(grad_y.to(x.dtype)), _np(x), _vector(a, channels, x), _np(y0.to(x.dtype)), scale_input,
        grad_x.numpy(), g_a.numpy(), g_y0.numpy(),
    )
    return grad_x, g_a, g_y0


# -------------------------------------------------------------------------------------- dendrites

@njit(**_PAR)
def _dendrite_forward(current, alpha, i0, block, total, i_last):
    steps, rows, neurons, branches = current.shape
    blocks = (neurons + block - 1) // block
    for job in prange(rows * blocks):
        r = job // blocks
        n0 = (job % blocks) * block
        n1 = min(neurons, n0 + block)
        i = i0[r, n0:n1].copy()
        for t in range(steps):
            for j in range(n1 - n0):
                n = n0 + j
                acc = 0.0
                for d in range(branches):
                    value = (1.0 - alpha[n, d]) * current[t, r, n, d] + alpha[n, d] * i[j, d]
                    i[j, d] = value
                    acc += value
                total[t, r, n] = acc
        i_last[r, n0:n1] = i


def dendrite_forward(current: Tensor, alpha: Tensor, i0: Tensor):
    """``(J [T, B, N], i_T [B, N, D])`` for branch inputs ``current [T, B, N, D]``."""
    _threads()
    steps, batch, neurons, branches = current.shape
    total = current.new_empty(steps, batch, neurons)
    i_last = current.new_empty(batch, neurons, branches)
    _dendrite_forward(
        _np(current), _np(alpha.to(current.dtype)), _np(i0.to(current.dtype)), _block(neurons),
        total.numpy(), i_last.numpy(),
    )
    return total, i_last


@njit(**_PAR)
def _dendrite_backward(grad_total, grad_i_last, current, alpha, i0, block, grad_current, g_alpha, g_i0):
    steps, rows, neurons, branches = current.shape
    blocks = (neurons + block - 1) // block
    for job in prange(rows * blocks):
        r = job // blocks
        n0 = (job % blocks) * block
        n1 = min(neurons, n0 + block)
        width = n1 - n0
        i = i0[r, n0:n1].copy()
        for t in range(steps):  # recompute the currents into grad_current
            for j in range(width):
                for d in range(branches):
                    n = n0 + j
                    i[j, d] = (1.0 - alpha[n, d]) * current[t, r, n, d] + alpha[n, d] * i[j, d]
                    grad_current[t, r, n, d] = i[j, d]
        g = grad_i_last[r, n0:n1].copy()
        acc = np.zeros((width, branches), np.float64)
        for t in range(steps - 1, -1, -1):
            for j in range(width):
                n = n0 + j
                for d in range(branches):
                    if t == steps - 1:
                        g[j, d] = g[j, d] + grad_total[t, r, n]
                    else:
                        g[j, d] = grad_total[t, r, n] + alpha[n, d] * g[j, d]
                    i_prev = grad_current[t - 1, r, n, d] if t > 0 else i0[r, n, d]
                    acc[j, d] += g[j, d] * (i_prev - current[t, r, n, d])
                    grad_current[t, r, n, d] = (1.0 - alpha[n, d]) * g[j, d]
        for j in range(width):
            for d in range(branches):
                g_alpha[r, n0 + j, d] = acc[j, d]
                g_i0[r, n0 + j, d] = alpha[n0 + j, d] * g[j, d]


def dendrite_backward(grad_total: Tensor, grad_i_last: Tensor, current: Tensor, alpha: Tensor, i0: Tensor):
    """BPTT of :func:`dendrite_forward`: ``(dL/dI, dL/dα per batch row [B, N, D], dL/di0)``."""
    _threads()
    batch, neurons, branches = i0.shape
    grad_current = torch.empty_like(current)
    g_alpha = current.new_empty(batch, neurons, branches)
    g_i0 = current.new_empty(batch, neurons, branches)
    _dendrite_backward(
        _np(grad_total.to(current.dtype)), _np(grad_i_last.to(current.dtype)), _np(current),
        _np(alpha.to(current.dtype)), _np(i0.to(current.dtype)), _block(neurons),
        grad_current.numpy(), g_alpha.numpy(), g_i0.numpy(),
    )
    return grad_current, g_alpha, g_i0


# ------------------------------------------------------------------------------- recurrent DH-LIF

@njit(**_PAR)
def _dh_recurrent_forward(ff, w_rec_t, alpha, beta, theta, i0, u0, s0, reset, scale, u_out, s_out, s_mask, i_last):
    steps, rows, neurons, branches = ff.shape
    for r in prange(rows):
        i = i0[r].copy()
        u = u0[r].copy()
        s = s0[r].copy()
        current = np.empty((neurons, branches), ff.dtype)
        for t in range(steps):
            current[:, :] = ff[t, r]
            for k in range(neurons):  # I_t = I^ff_t + W_rec s_{t-1}, skipping silent neurons
                if s[k] != 0.0:
                    for n in range(neurons):
                        for d in range(branches):
                            current[n, d] += w_rec_t[k, n, d] * s[k]
            for n in range(neurons):
                total = 0.0
                for d in range(branches):
                    value = (1.0 - alpha[n, d]) * current[n, d] + alpha[n, d] * i[n, d]
                    i[n, d] = value
                    total += value
                drive = (1.0 - beta[n]) * total if scale else total
                if reset == _HARD:
                    new = drive + beta[n] * (u[n] * (1.0 - s[n]))
                else:
                    new = drive + beta[n] * u[n]
                    if reset == _SOFT:
                        new = new - theta[n] * s[n]
                u[n] = new
                u_out[t, r, n] = new
            for n in range(neurons):
                spike = u[n] > theta[n]
                s[n] = 1.0 if spike else 0.0
                s_out[t, r, n] = s[n]
                s_mask[t, r, n] = spike
        i_last[r] = i


def dh_recurrent_forward(feedforward, w_rec, alpha, beta, threshold, i0, u0, s0, reset, scale_input):
    """DH-SRNN forward: ``(spikes float, u trace, spikes uint8, i_T)``; ``w_rec [N·D, N]``."""
    _threads()
    steps, batch, neurons, branches = feedforward.shape
    like = feedforward
    u_all = like.new_empty(steps, batch, neurons)
    spikes = like.new_empty(steps, batch, neurons)
    mask = torch.empty(steps, batch, neurons, dtype=torch.uint8)
    i_last = like.new_empty(batch, neurons, branches)
    w_rec_t = _np(w_rec.detach().to(like.dtype).t().reshape(neurons, neurons, branches))
    _dh_recurrent_forward(
        _np(like), w_rec_t, _np(alpha.to(like.dtype)), _vector(beta, neurons, like),
        _vector(threshold, neurons, like), _np(i0.to(like.dtype)), _np(u0.to(like.dtype)),
        _np(s0.to(like.dtype)), RESET_CODES[reset], scale_input, u_all.numpy(), spikes.numpy(), mask.numpy(),
        i_last.numpy(),
    )
    return spikes, u_all, mask, i_last


@njit(**_JIT)
def _recurrent_input(ff, w_rec_t, s_mask, s0, t, r, current):
    """``current = I^ff_t + W_rec s_{t-1}`` for row ``r`` from the stored spikes (``s0`` before step 0)."""
    neurons, branches = current.shape
    current[:, :] = ff[t, r]
    for k in range(neurons):
        s_prev = (1.0 if s_mask[t - 1, r, k] else 0.0) if t > 0 else s0[r, k]
        if s_prev != 0.0:
            for n in range(neurons):
                for d in range(branches):
                    current[n, d] += w_rec_t[k, n, d] * s_prev


@njit(**_PAR)
def _dh_recurrent_backward(
    grad_s, grad_i_last, grad_u_last, sg, ff, w_rec_t, alpha, beta, theta, i0, u0, s0, u_all, s_mask,
    reset, detach, scale, g_current, gu_first, gi_first, g_alpha, g_beta, g_theta,
):
    steps, rows, neurons, branches = ff.shape
    for r in prange(rows):
        # Forward recomputation of the dendritic currents i_t into g_current (slot t), overwritten
        # backwards with dL/dI_t once i_t and i_{t-1} have been used.
        i = i0[r].copy()
        current = np.empty((neurons, branches), ff.dtype)
        for t in range(steps):
            _recurrent_input(ff, w_rec_t, s_mask, s0, t, r, current)
            for n in range(neurons):
                for d in range(branches):
                    i[n, d] = (1.0 - alpha[n, d]) * current[n, d] + alpha[n, d] * i[n, d]
                    g_current[t, r, n, d] = i[n, d]
        gu = np.zeros(neurons, ff.dtype)
        gi = np.zeros((neurons, branches), ff.dtype)
        acc_alpha = np.zeros((neurons, branches), np.float64)
        acc_beta = np.zeros(neurons, np.float64)
        acc_theta = np.zeros(neurons, np.float64)
        for t in range(steps - 1, -1, -1):
            _recurrent_input(ff, w_rec_t, s_mask, s0, t, r, current)
            for n in range(neurons):
                gs = grad_s[t, r, n]
                if t < steps - 1:  # W_rec^T g^I_{t+1}, g^I_{t+1} in slot t+1
                    rec = 0.0
                    for c in range(neurons):
                        for d in range(branches):
                            rec += w_rec_t[n, c, d] * g_current[t + 1, r, c, d]
                    gs = gs + rec
                u = u_all[t, r, n]
                spiked = s_mask[t, r, n]
                if not detach:
                    if reset == _SOFT:
                        gs = gs - theta[n] * gu[n]
                    elif reset == _HARD:
                        gs = gs - beta[n] * u * gu[n]
                if reset == _HARD:
                    carried = beta[n] * (0.0 if spiked else 1.0) * gu[n]
                else:
                    carried = beta[n] * gu[n]
                direct = gs * sg[t, r, n]
                g = carried + direct
                if t == steps - 1:
                    g = g + grad_u_last[r, n]
                gu[n] = g
                if t > 0:
                    u_prev = u_all[t - 1, r, n]
                    s_prev_n = 1.0 if s_mask[t - 1, r, n] else 0.0
                else:
                    u_prev = u0[r, n]
                    s_prev_n = s0[r, n]
                term = u_prev * (1.0 - s_prev_n) if reset == _HARD else u_prev
                if scale:
                    total = 0.0
                    for d in range(branches):
                        total += g_current[t, r, n, d]  # i_t, still in slot t
                    term = term - total
                acc_beta[n] += g * term
                theta_total = -direct
                if reset == _SOFT:
                    theta_total = theta_total - g * s_prev_n
                acc_theta[n] += theta_total
            for n in range(neurons):
                drive = (1.0 - beta[n]) * gu[n] if scale else gu[n]
                for d in range(branches):
                    value = drive + alpha[n, d] * gi[n, d]
                    if t == steps - 1:
                        value = value + grad_i_last[r, n, d]
                    gi[n, d] = value
                    i_prev = g_current[t - 1, r, n, d] if t > 0 else i0[r, n, d]
                    acc_alpha[n, d] += value * (i_prev - current[n, d])
                    g_current[t, r, n, d] = (1.0 - alpha[n, d]) * value
        for n in range(neurons):
            gu_first[r, n] = gu[n]
            g_beta[r, n] = acc_beta[n]
            g_theta[r, n] = acc_theta[n]
            for d in range(branches):
                gi_first[r, n, d] = alpha[n, d] * gi[n, d]
                g_alpha[r, n, d] = acc_alpha[n, d]


def dh_recurrent_backward(
    grad_spikes, grad_i_last, grad_u_last, feedforward, w_rec, alpha, beta, threshold, i0, u0, s0, u_all,
    spike_mask, surrogate, reset, detach_reset, scale_input,
):
    """DH-SRNN BPTT: ``(dL/dI [T,B,N,D], g^u_0, dL/di0, dL/dα per row, dL/dβ per row, dL/dθ per row)``."""
    _threads()
    steps, batch, neurons, branches = feedforward.shape
    like = feedforward
    theta = _vector(threshold, neurons, like)
    sg = surrogate_grad(surrogate, u_all.numpy(), theta)
    g_current = torch.empty_like(feedforward)
    gu_first = like.new_empty(batch, neurons)
    gi_first = like.new_empty(batch, neurons, branches)
    g_alpha = like.new_empty(batch, neurons, branches)
    g_beta = like.new_empty(batch, neurons)
    g_theta = like.new_empty(batch, neurons)
    w_rec_t = _np(w_rec.detach().to(like.dtype).t().reshape(neurons, neurons, branches))
    _dh_recurrent_backward(
        _np(grad_spikes.to(like.dtype)), _np(grad_i_last.to(like.dtype)), _np(grad_u_last.to(like.dtype)), sg,
        _np(like), w_rec_t, _np(alpha.to(like.dtype)), _vector(beta, neurons, like), theta,
        _np(i0.to(like.dtype)), _np(u0.to(like.dtype)), _np(s0.to(like.dtype)), u_all.numpy(),
        spike_mask.numpy(), RESET_CODES[reset], detach_reset, scale_input, g_current.numpy(), gu_first.numpy(),
        gi_first.numpy(), g_alpha.numpy(), g_beta.numpy(), g_theta.numpy(),
    )
    return g_current, gu_first, gi_first, g_alpha, g_beta, g_theta


# ------------------------------------------------------------------------------------------ events

class EventList:
    """Non-zero entries of an input ``[R, M]`` (``R = T·B`` rows), by row (CSR) and, on demand, by column.

    ``indptr [R+1]``, ``indices [nnz]`` (input channel), ``values [nnz]`` (the entries: 1 for binary
    spikes, or small counts).
    """

    def __init__(self, rows: int, cols: int, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray):
        self.rows, self.cols = rows, cols
        self.indptr, self.indices, self.values = indptr, indices, values
        self._by_column = None

    @property
    def count(self) -> int:
        return int(self.indptr[-1])

    @property
    def density(self) -> float:
        return self.count / max(1, self.rows * self.cols)

    def by_column(self):
        """``(colptr [M+1], rows [nnz], values [nnz])``: the same events grouped by input channel."""
        if self._by_column is None:
            colptr = np.zeros(self.cols + 1, np.int64)
            rows = np.empty(self.count, np.int32)
            values = np.empty_like(self.values)
            _events_by_column(self.indptr, self.indices, self.values, colptr, rows, values)
            self._by_column = (colptr, rows, values)
        return self._by_column


@njit(**_PAR)
def _count_rows(x, counts):
    rows, cols = x.shape
    for r in prange(rows):
        count = 0
        for m in range(cols):
            if x[r, m] != 0:
                count += 1
        counts[r] = count


@njit(**_PAR)
def _fill_rows(x, indptr, indices, values):
    rows, cols = x.shape
    for r in prange(rows):
        k = indptr[r]
        for m in range(cols):
            v = x[r, m]
            if v != 0:
                indices[k] = m
                values[k] = v
                k += 1


@njit(**_JIT)
def _events_by_column(indptr, indices, values, colptr, col_rows, col_values):
    for k in range(indices.size):
        colptr[indices[k] + 1] += 1
    for m in range(colptr.size - 1):
        colptr[m + 1] += colptr[m]
    fill = colptr[:-1].copy()
    for r in range(indptr.size - 1):
        for k in range(indptr[r], indptr[r + 1]):
            m = indices[k]
            col_rows[fill[m]] = r
            col_values[fill[m]] = values[k]
            fill[m] += 1


def events_from_dense(x: Tensor, max_density: float) -> Optional[EventList]:
    """Events of ``x [R, M]``, or ``None`` when more than ``max_density`` of its entries are non-zero."""
    _threads()
    data = _np(x)
    rows, cols = data.shape
    counts = np.empty(rows, np.int64)
    _count_rows(data, counts)
    total = int(counts.sum())
    if total > max_density * rows * cols:
        return None
    indptr = np.zeros(rows + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(total, np.int32)
    values = np.empty(total, data.dtype)
    _fill_rows(data, indptr, indices, values)
    return EventList(rows, cols, indptr, indices, values)


@njit(**_PAR)
def _event_linear_forward(indptr, indices, values, weight_t, bias, out):
    rows, width = out.shape
    for r in prange(rows):
        for o in range(width):
            out[r, o] = bias[o]
        for k in range(indptr[r], indptr[r + 1]):
            m = indices[k]
            v = values[k]
            for o in range(width):
                out[r, o] += v * weight_t[m, o]


def _bias(bias: Optional[Tensor], width: int, like: Tensor) -> np.ndarray:
    return np.zeros(width, _np(like).dtype) if bias is None else _np(bias.to(like.dtype).reshape(-1))


def event_linear_forward(events: EventList, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``x W^T + b`` from the events of ``x``: ``[R, O]`` for ``weight [O, M]``."""
    _threads()
    width = weight.shape[0]
    out = weight.new_empty(events.rows, width)
    _event_linear_forward(
        events.indptr, events.indices, events.values.astype(_np(weight).dtype, copy=False),
        _np(weight.t()), _bias(bias, width, weight), out.numpy(),
    )
    return out


@njit(**_PAR)
def _event_linear_weight_grad(colptr, col_rows, col_values, grad_out, grad_weight_t):
    cols = colptr.size - 1
    width = grad_out.shape[1]
    for m in prange(cols):
        for o in range(width):
            grad_weight_t[m, o] = 0.0
        for k in range(colptr[m], colptr[m + 1]):
            r = col_rows[k]
            v = col_values[k]
            for o in range(width):
                grad_weight_t[m, o] += v * grad_out[r, o]


def event_linear_weight_grad(events: EventList, grad_out: Tensor) -> Tensor:
    """``grad_out^T x`` (``[O, M]``) from the events of ``x``."""
    _threads()
    colptr, col_rows, col_values = events.by_column()
    grad_t = grad_out.new_empty(events.cols, grad_out.shape[1])
    _event_linear_weight_grad(colptr, col_rows, col_values.astype(_np(grad_out).dtype, copy=False), _np(grad_out), grad_t.numpy())
    return grad_t.t()


@njit(**_PAR)
def _event_sparse_forward(indptr, indices, values, w_colptr, w_rows, w_values, bias, out):
    rows, width = out.shape
    for r in prange(rows):
        for o in range(width):
            out[r, o] = bias[o]
        for k in range(indptr[r], indptr[r + 1]):
            m = indices[k]
            v = values[k]
            for q in range(w_colptr[m], w_colptr[m + 1]):
                out[r, w_rows[q]] += v * w_values[q]


def event_sparse_forward(events: EventList, structure, w_values: Tensor, bias: Optional[Tensor]) -> Tensor:
    """Masked projection ``[R, N·D]`` from the events, touching only the connected (input, branch) pairs."""
    _threads()
    out = w_values.new_empty(events.rows, structure.outputs)
    _event_sparse_forward(
        events.indptr, events.indices, events.values.astype(_np(w_values).dtype, copy=False),
        structure.colptr, structure.rows, _np(w_values), _bias(bias, structure.outputs, w_values), out.numpy(),
    )
    return out


@njit(**_PAR)
def _event_sparse_weight_grad(colptr, col_rows, col_values, w_colptr, w_rows, grad_out, grad_w):
    cols = colptr.size - 1
    for m in prange(cols):
        for q in range(w_colptr[m], w_colptr[m + 1]):
            grad_w[q] = 0.0
        for k in range(colptr[m], colptr[m + 1]):
            r = col_rows[k]
            v = col_values[k]
            for q in range(w_colptr[m], w_colptr[m + 1]):
                grad_w[q] += v * grad_out[r, w_rows[q]]


def event_sparse_weight_grad(events: EventList, structure, grad_out: Tensor) -> Tensor:
    """Gradient of the connected weight values (in ``structure`` order, a ``SparseWeight``) from the events."""
    _threads()
    colptr, col_rows, col_values = events.by_column()
    grad_w = grad_out.new_empty(structure.rows.size)
    _event_sparse_weight_grad(
        colptr, col_rows, col_values.astype(_np(grad_out).dtype, copy=False), structure.colptr, structure.rows,
        _np(grad_out), grad_w.numpy(),
    )
    return grad_w


# ------------------------------------------------------------- events fused with the dendritic sum

@njit(**_JIT)
def _branch_input(indptr, indices, values, w_colptr, w_rows, w_values, bias, r, out):
    """``out = b + Σ_events v·w``: the branch inputs ``I_t`` of one row from its events."""
    for c in range(out.size):
        out[c] = bias[c]
    for k in range(indptr[r], indptr[r + 1]):
        m = indices[k]
        v = values[k]
        for q in range(w_colptr[m], w_colptr[m + 1]):
            out[w_rows[q]] += v * w_values[q]


@njit(**_PAR)
def _event_dendrite_forward(indptr, indices, values, w_colptr, w_rows, w_values, bias, alpha, i0, chunk, total, i_last, checkpoints):
    steps, batch, neurons = total.shape
    channels = alpha.size
    branches = channels // neurons
    for b in prange(batch):
        i = i0[b].copy()
        current = np.empty(channels, i0.dtype)
        for t in range(steps):
            if t % chunk == 0:
                checkpoints[t // chunk, b] = i
            _branch_input(indptr, indices, values, w_colptr, w_rows, w_values, bias, t * batch + b, current)
            for n in range(neurons):
                acc = 0.0
                for d in range(branches):
                    c = n * branches + d
                    value = (1.0 - alpha[c]) * current[c] + alpha[c] * i[c]
                    i[c] = value
                    acc += value
                total[t, b, n] = acc
        i_last[b] = i


_CHUNK = 32


def event_dendrite_forward(events: EventList, steps: int, structure, w_values: Tensor,
                           bias: Optional[Tensor], alpha: Tensor, i0: Tensor):
    """``(J [T, B, N], i_T [B, N, D], checkpoints)``: branch inputs from events, summed dendritic currents.

    Never materialises the ``[T, B, N, D]`` branch inputs; ``checkpoints`` (the currents every 32 steps)
    let the backward pass recompute them chunk by chunk.
    """
    _threads()
    batch, neurons, branches = i0.shape
    like = w_values
    total = like.new_empty(steps, batch, neurons)
    i_last = like.new_empty(batch, neurons, branches)
    checkpoints = like.new_empty(-(-steps // _CHUNK), batch, neurons * branches)
    _event_dendrite_forward(
        events.indptr, events.indices, events.values.astype(_np(like).dtype, copy=False), structure.colptr,
        structure.rows, _np(like), _bias(bias, structure.outputs, like), _np(alpha.to(like.dtype).reshape(-1)),
        _np(i0.to(like.dtype).reshape(batch, -1)), _CHUNK, total.numpy(), i_last.numpy().reshape(batch, -1),
        checkpoints.numpy(),
    )
    return total, i_last, checkpoints


@njit(**_PAR)
def _event_dendrite_backward(
    indptr, indices, values, w_colptr, w_rows, w_values, bias, alpha, checkpoints, chunk, grad_total,
    grad_i_last, write_grad_current, grad_w, grad_bias, grad_alpha, grad_i0, grad_current,
):
    steps, batch, neurons = grad_total.shape
    channels = alpha.size
    branches = channels // neurons
    parts = grad_w.shape[0]
    for p in prange(parts):
        acc_w = grad_w[p]
        acc_bias = grad_bias[p]
        acc_alpha = grad_alpha[p]
        acc_w[:] = 0.0
        acc_bias[:] = 0.0
        acc_alpha[:] = 0.0
        trace = np.empty((chunk + 1, channels), alpha.dtype)  # trace[j] = i_{t0 + j - 1}
        currents = np.empty((chunk, channels), alpha.dtype)
        g = np.empty(channels, alpha.dtype)
        g_current = np.empty(channels, alpha.dtype)
        for b in range(p * batch // parts, (p + 1) * batch // parts):
            g[:] = grad_i_last[b]
            for block in range((steps + chunk - 1) // chunk - 1, -1, -1):
                t0 = block * chunk
                t1 = min(steps, t0 + chunk)
                trace[0] = checkpoints[block, b]
                for t in range(t0, t1):
                    j = t - t0
                    _branch_input(indptr, indices, values, w_colptr, w_rows, w_values, bias, t * batch + b, currents[j])
                    for c in range(channels):
                        trace[j + 1, c] = (1.0 - alpha[c]) * currents[j, c] + alpha[c] * trace[j, c]
                for t in range(t1 - 1, t0 - 1, -1):
                    j = t - t0
                    for n in range(neurons):
                        gj = grad_total[t, b, n]
                        for d in range(branches):
                            c = n * branches + d
                            if t == steps - 1:
                                g[c] = g[c] + gj
                            else:
                                g[c] = gj + alpha[c] * g[c]
                            acc_alpha[c] += g[c] * (trace[j, c] - currents[j, c])
                            g_current[c] = (1.0 - alpha[c]) * g[c]
                            acc_bias[c] += g_current[c]
                    if write_grad_current:
                        grad_current[t, b] = g_current
                    r = t * batch + b
                    for k in range(indptr[r], indptr[r + 1]):
                        m = indices[k]
                        v = values[k]
                        for q in range(w_colptr[m], w_colptr[m + 1]):
                            acc_w[q] += v * g_current[w_rows[q]]
            for c in range(channels):
                grad_i0[b, c] = alpha[c] * g[c]


def event_dendrite_backward(events: EventList, structure, w_values: Tensor, bias: Optional[Tensor],
                            alpha: Tensor, checkpoints: Tensor, grad_total: Tensor, grad_i_last: Tensor,
                            need_grad_current: bool):
    """BPTT of :func:`event_dendrite_forward`.

    Returns ``(dL/dw [nnz], dL/db [N·D], dL/dα [N·D], dL/di0 [B, N·D], dL/dI [T, B, N·D] or None)``;
    ``dL/dI`` (the only ``[T, B, N·D]`` tensor) is written only when asked for (input gradient).
    """
    _threads()
    steps, batch, neurons = grad_total.shape
    like = w_values
    dtype = _np(like).dtype
    channels = structure.outputs
    parts = max(1, min(batch, numba.get_num_threads()))
    grad_w = np.empty((parts, structure.rows.size), np.float64)
    grad_bias = np.empty((parts, channels), np.float64)
    grad_alpha = np.empty((parts, channels), np.float64)
    grad_i0 = like.new_empty(batch, channels)
    grad_current = like.new_empty(steps, batch, channels) if need_grad_current else like.new_empty(1, 1, channels)
    _event_dendrite_backward(
        events.indptr, events.indices, events.values.astype(dtype, copy=False), structure.colptr, structure.rows,
        _np(like), _bias(bias, channels, like), _np(alpha.to(like.dtype).reshape(-1)), _np(checkpoints), _CHUNK,
        _np(grad_total.to(like.dtype)), _np(grad_i_last.to(like.dtype).reshape(batch, -1)), need_grad_current,
        grad_w, grad_bias, grad_alpha, grad_i0.numpy(), grad_current.numpy(),
    )
    to = dict(dtype=like.dtype)
    return (
        torch.from_numpy(grad_w.sum(0)).to(**to),
        torch.from_numpy(grad_bias.sum(0)).to(**to),
        torch.from_numpy(grad_alpha.sum(0)).to(**to),
        grad_i0,
        grad_current if need_grad_current else None,
    )
