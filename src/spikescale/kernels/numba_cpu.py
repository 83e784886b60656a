r"""CPU backend: the time loops of :mod:`spikescale.functional`, compiled by numba.

Every kernel runs the time loop inside and parallelises over independent rows (batch elements); the
innermost loop runs over contiguous neurons (or branches) so that it compiles to SIMD instructions.
The equations are those stated in :mod:`spikescale.functional.lif`, :mod:`~spikescale.functional.dh_lif`,
:mod:`~spikescale.functional.scan` and :mod:`~spikescale.functional.events`, evaluated in the same order
as the PyTorch reference (results agree to rounding). The three reset modes share one branch-free
update, ``u_t = c I_t + β (u_{t-1} (1 - h s_{t-1})) - θ_soft s_{t-1}`` with ``h = 1`` for the hard reset
and ``θ_soft = θ`` for the soft reset (0 otherwise), which reproduces each mode's operations exactly.

Surrogate pseudo-derivatives are not restated: :func:`surrogate_grad` compiles the surrogate's own
``formula`` with a vectorisable ``exp`` (relative error below 1e-15). Spikes kept for the backward pass
are ``uint8``; reductions over time (parameter gradients) accumulate in float64.

The wrappers take and return torch tensors (CPU, float32 or float64) and share memory with them
through ``Tensor.numpy()``. Every call uses ``min(torch.get_num_threads(), NUMBA_NUM_THREADS)`` threads
(one below 65 536 elements, where waking the other threads costs more than it saves;
:mod:`spikescale.kernels.threads`).
Threading: numba's default layer is used (OpenMP when TBB is absent). On Linux it loads the same
``libgomp.so.1`` as PyTorch, so the kernels and PyTorch's ops share one thread pool; the ``workqueue``
layer measured 1.7× slower per training step on 2 cores (it hands each parallel region to its own
threads, which then compete with PyTorch's spinning OpenMP threads).
"""

from __future__ import annotations

import math
from typing import Optional

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic
from torch import Tensor

from .threads import use_threads
from ..functional.surrogate import ATan, FastSigmoid, MultiGaussian, Rectangular, Surrogate

__all__ = [
    "surrogate_grad",
    "soma_coefficients",
    "soma_update",
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
    "event_dendrite_forward",
    "event_dendrite_backward",
]

_JIT = dict(cache=True, nogil=True)
_PAR = dict(cache=True, nogil=True, parallel=True)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _vector(value: Tensor, size: int, like: Tensor) -> np.ndarray:
    """A contiguous ``[size]`` array of ``value`` (scalar or ``[size]`` tensor) in the dtype of ``like``."""
    return _np(value.detach().to(like.dtype).expand(size))


def soma_coefficients(beta: Tensor, threshold: Tensor, reset: str, scale_input: bool, neurons: int, like: Tensor):
    """Per-neuron ``(β, c, θ, θ_soft)`` and ``[1, h, soft]`` in the dtype of ``like``: the arguments of
    :func:`soma_update` (see the module docstring)."""
    beta_v = _vector(beta, neurons, like)
    theta_v = _vector(threshold, neurons, like)
    scale = _np((1.0 - beta.detach().to(like.dtype)).expand(neurons)) if scale_input else np.ones(neurons, beta_v.dtype)
    soft = theta_v if reset == "soft" else np.zeros(neurons, beta_v.dtype)
    consts = np.array([1.0, 1.0 if reset == "hard" else 0.0, 1.0 if reset == "soft" else 0.0], beta_v.dtype)
    return beta_v, scale, theta_v, soft, consts


@njit(inline="always", **_JIT)
def soma_update(current, u, s, scale, beta, soft, hard, one):
    """The membrane after one step: ``c I_t + β (u_{t-1} (1 - h s_{t-1})) - θ_soft s_{t-1}`` (module docstring)."""
    return (scale * current + beta * (u * (one - s * hard))) - soft * s


# ----------------------------------------------------------------------------------------- surrogates

@intrinsic
def _float64_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10


@njit(inline="always", **_JIT)
def _exp(x):
    """``e^x`` in float64 without branches or library calls, so loops calling it vectorise.

    Range reduction ``x = k ln 2 + r`` (``|r| ≤ ln 2 / 2``), degree-12 Taylor polynomial of ``e^r`` and
    ``2^k`` built from its exponent bits; arguments are clamped to [-708, 709] (below, the result is
    at most 3e-308 instead of a subnormal or zero). Relative error < 1e-15 (tested against ``math.exp``).
    """
    x = min(max(x, -708.0), 709.0)
    k = math.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (
        1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (1.0 / 3628800 + r * (
            1.0 / 39916800 + r * (1.0 / 479001600))))))))))))
    return p * _float64_from_bits((np.int64(k) + 1023) << 52)


@njit(inline="always", **_JIT)
def _box(x, half_width):
    return 1.0 if abs(x) < half_width else 0.0


_MULTI_GAUSSIAN = njit(inline="always", **_JIT)(MultiGaussian.formula)
_ATAN = njit(inline="always", **_JIT)(ATan.formula)
_FAST_SIGMOID = njit(inline="always", **_JIT)(FastSigmoid.formula)
_RECTANGULAR = njit(inline="always", **_JIT)(Rectangular.formula)
_BUILT_IN = {MultiGaussian: 0, ATan: 1, FastSigmoid: 2, Rectangular: 3}


@njit(**_PAR)
def _built_in_surrogate(kind, u, theta, p, out):
    """The built-in surrogates' formulas (compiled once and cached); ``p`` holds the parameters."""
    rows, neurons = u.shape
    for r in prange(rows):
        x, o = u[r], out[r]
        if kind == 0:
            for n in range(neurons):
                o[n] = _MULTI_GAUSSIAN(x[n] - theta[n], _exp, _box, p[0], p[1], p[2], p[3], p[4])
        elif kind == 1:
            for n in range(neurons):
                o[n] = _ATAN(x[n] - theta[n], _exp, _box, p[0])
        elif kind == 2:
            for n in range(neurons):
                o[n] = _FAST_SIGMOID(x[n] - theta[n], _exp, _box, p[0])
        else:
            for n in range(neurons):
                o[n] = _RECTANGULAR(x[n] - theta[n], _exp, _box, p[0])


_SURROGATE_KERNELS: dict = {}

# Other surrogates with a ``formula``: numba inlines a function into a loop (so that the loop vectorises)
# only when it is called with explicit arguments, so the kernel for a formula of ``n`` parameters is
# generated with ``params[0], …, params[n-1]`` (compiled on first use, not cached on disk).
_SURROGATE_SOURCE = """
def kernel(u, theta, params, out):
    rows, neurons = u.shape
    for r in prange(rows):
        for n in range(neurons):
            out[r, n] = scalar(u[r, n] - theta[n], exp, box, {arguments})
"""


def _surrogate_kernel(formula, arity: int):
    kernel = _SURROGATE_KERNELS.get(formula)
    if kernel is None:
        arguments = ", ".join(f"params[{i}]" for i in range(arity))
        namespace = {"scalar": njit(inline="always")(formula), "exp": _exp, "box": _box, "prange": prange}
        exec(_SURROGATE_SOURCE.format(arguments=arguments), namespace)
        kernel = _SURROGATE_KERNELS[formula] = njit(nogil=True, parallel=True)(namespace["kernel"])
    return kernel


def surrogate_grad(surrogate, u: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``g(u - θ)`` for ``u [..., N]``, ``θ [N]``: the surrogate's ``formula`` compiled, else its torch ``grad``."""
    cls = type(surrogate)
    if cls.formula is None or cls.grad is not Surrogate.grad:
        return surrogate.grad(torch.from_numpy(u) - torch.from_numpy(theta)).numpy()
    params = tuple(float(p) for p in surrogate.formula_params())
    flat = u.reshape(-1, u.shape[-1])
    out = np.empty_like(flat)
    if cls in _BUILT_IN:
        _built_in_surrogate(_BUILT_IN[cls], flat, theta, np.array(params + (0.0,) * (5 - len(params))), out)
    else:
        _surrogate_kernel(cls.formula, len(params))(flat, theta, params, out)
    return out.reshape(u.shape)


# ----------------------------------------------------------------------------------------------- LIF
#
# The soma's (batch, neuron) lanes are independent, so the kernels see the data as ``[T, B·N]`` and split
# the lanes into contiguous chunks (one per job), with the per-neuron coefficients tiled to ``B·N``: long
# inner loops that vectorise, whatever the layer width.

def _lane_chunk(lanes: int) -> int:
    """Lanes per job: about four jobs per thread, at least 64 lanes, a multiple of 16."""
    per_job = -(-lanes // (4 * numba.get_num_threads()))
    return max(64, -(-per_job // 16) * 16)


def _tiled(values: np.ndarray, batch: int) -> np.ndarray:
    return np.tile(values, batch)


@njit(**_PAR)
def _lif_forward(current, scale, beta, theta, soft, consts, u0, s0, chunk, keep, u_out, s_out, s_mask, u_last):
    steps, lanes = current.shape
    one, hard = consts[0], consts[1]
    zero = one - one
    for job in prange((lanes + chunk - 1) // chunk):
        j0 = job * chunk
        j1 = min(lanes, j0 + chunk)
        u = u0[j0:j1].copy()
        s = s0[j0:j1].copy()
        c, b, th, so_ = scale[j0:j1], beta[j0:j1], theta[j0:j1], soft[j0:j1]
        for t in range(steps):
            cur, out = current[t, j0:j1], s_out[t, j0:j1]
            for n in range(u.size):
                new = soma_update(cur[n], u[n], s[n], c[n], b[n], so_[n], hard, one)
                u[n] = new
                s[n] = one if new > th[n] else zero
                out[n] = s[n]
            if keep:  # the trace and the spike mask are kept for a backward pass
                u_out[t, j0:j1] = u
                mask = s_mask[t, j0:j1]
                for n in range(u.size):
                    mask[n] = s[n] != zero
        u_last[j0:j1] = u


def lif_forward(current: Tensor, beta: Tensor, threshold: Tensor, u0: Tensor, s0: Tensor, reset: str,
                scale_input: bool, keep: bool = True):
    """Soma forward: ``(spikes [T, B, N] float, u trace [T, B, N], spikes uint8, u_T)``.

    With ``keep=False`` (inference) only the spikes and the final membrane are written; the trace and
    the mask are returned as ``None``.
    """
    use_threads(current.numel())
    steps, batch, neurons = current.shape
    lanes = batch * neurons
    coefficients = soma_coefficients(beta, threshold, reset, scale_input, neurons, current)
    beta_v, scale, theta, soft = (_tiled(v, batch) for v in coefficients[:4])
    spikes = torch.empty_like(current)
    u_last = current.new_empty(batch, neurons)
    shape = current.shape if keep else (1, 1, neurons)
    u_all = current.new_empty(shape)
    mask = torch.empty(shape, dtype=torch.uint8)
    flat = (steps, lanes) if keep else (1, neurons)
    _lif_forward(
        _np(current).reshape(steps, lanes), scale, beta_v, theta, soft, coefficients[4],
        _np(u0.to(current.dtype)).reshape(lanes), _np(s0.to(current.dtype)).reshape(lanes), _lane_chunk(lanes), keep,
        u_all.numpy().reshape(flat), spikes.numpy().reshape(steps, lanes), mask.numpy().reshape(flat),
        u_last.numpy().reshape(lanes),
    )
    return spikes, (u_all if keep else None), (mask if keep else None), u_last


@njit(inline="always", **_JIT)
def _soma_reverse_row(
    grad_s, sg, u, spiked, u_prev, s_prev, cur, last_grad, beta, theta, scale, soft, consts, reset_grad,
    scale_input, needs, gu, acc_beta, acc_theta, grad_current, direct_out,
):
    """One reverse step ``t`` of the soma over a vector of lanes; updates ``gu`` in place.

    ``needs = (β gradient, θ gradient, write the injections)``; the accumulators are skipped when not needed.
    """
    one, hard, soft_reset = consts[0], consts[1], consts[2]
    need_beta, need_theta, write_direct = needs
    for n in range(gu.size):
        keep = one - spiked[n] * hard
        gs = grad_s[n] - (soft[n] + beta[n] * u[n] * hard) * gu[n] * reset_grad
        direct = gs * sg[n]
        g = beta[n] * keep * gu[n] + direct + last_grad[n]
        gu[n] = g
        grad_current[n] = scale[n] * g
        if write_direct:
            direct_out[n] = scale[n] * (direct + last_grad[n])
        if need_beta:
            term = u_prev[n] * (one - s_prev[n] * hard) - cur[n] * scale_input
            acc_beta[n] += g * term
        if need_theta:
            acc_theta[n] -= direct + g * s_prev[n] * soft_reset


@njit(inline="always", **_JIT)
def _previous_spikes(s_mask, s0, t, r, out):
    """``s_{t-1}`` of row ``r`` as floats (the initial state ``s0`` before the first step)."""
    if t > 0:
        out[:] = s_mask[t - 1, r]
    else:
        out[:] = s0[r]


@njit(**_PAR)
def _lif_backward(
    grad_s, grad_u_last, sg, u_all, s_mask, current, u0, s0, beta, theta, scale, soft, consts, reset_grad,
    scale_input, needs, chunk, grad_current, gu_first, g_beta, g_theta, direct_out,
):
    steps, lanes = u_all.shape
    for job in prange((lanes + chunk - 1) // chunk):
        j0 = job * chunk
        j1 = min(lanes, j0 + chunk)
        width = j1 - j0
        gu = np.zeros(width, u_all.dtype)
        acc_beta = np.zeros(width, np.float64)
        acc_theta = np.zeros(width, np.float64)
        no_grad = np.zeros(width, u_all.dtype)
        spiked = np.empty(width, u_all.dtype)
        s_prev = np.empty(width, u_all.dtype)
        b, th, c, so_ = beta[j0:j1], theta[j0:j1], scale[j0:j1], soft[j0:j1]
        for t in range(steps - 1, -1, -1):
            spiked[:] = s_mask[t, j0:j1]
            if t > 0:
                s_prev[:] = s_mask[t - 1, j0:j1]
                u_prev = u_all[t - 1, j0:j1]
            else:
                s_prev[:] = s0[j0:j1]
                u_prev = u0[j0:j1]
            _soma_reverse_row(
                grad_s[t, j0:j1], sg[t, j0:j1], u_all[t, j0:j1], spiked, u_prev, s_prev, current[t, j0:j1],
                grad_u_last[j0:j1] if t == steps - 1 else no_grad, b, th, c, so_, consts, reset_grad,
                scale_input, needs, gu, acc_beta, acc_theta, grad_current[t, j0:j1],
                direct_out[t, j0:j1] if needs[2] else direct_out[0, :width],
            )
        gu_first[j0:j1] = gu
        g_beta[j0:j1] = acc_beta
        g_theta[j0:j1] = acc_theta


def lif_backward(
    grad_spikes: Tensor, grad_u_last: Tensor, u_all: Tensor, spike_mask: Tensor, current: Tensor,
    u0: Tensor, s0: Tensor, beta: Tensor, threshold: Tensor, surrogate, reset: str, detach_reset: bool,
    scale_input: bool, want_direct: bool = False, needs: tuple[bool, bool] = (True, True),
):
    """Soma BPTT: ``(dL/dI [T, B, N], g^u_0 [B, N], dL/dβ per (b, n), dL/dθ per (b, n), injections or None)``.

    The injections ``c·ĝ^s_t σ'_t`` (plus ``c·dL/du_T`` at the last step) are written when ``want_direct``;
    ``needs`` = (β, θ) says which parameter gradients to accumulate.
    """
    use_threads(u_all.numel())
    steps, batch, neurons = u_all.shape
    lanes = batch * neurons
    like = u_all
    coefficients = soma_coefficients(beta, threshold, reset, scale_input, neurons, like)
    beta_v, scale, theta, soft = (_tiled(v, batch) for v in coefficients[:4])
    consts = coefficients[4]
    u = u_all.numpy().reshape(steps, lanes)
    sg = surrogate_grad(surrogate, u, theta)
    grad_current = torch.empty_like(u_all)
    gu_first = like.new_empty(batch, neurons)
    g_beta = like.new_empty(batch, neurons)
    g_theta = like.new_empty(batch, neurons)
    direct = torch.empty_like(u_all) if want_direct else like.new_empty(1, 1, lanes)
    reset_grad = consts.dtype.type(0.0 if detach_reset or reset == "none" else 1.0)
    flat = (steps, lanes)
    _lif_backward(
        _np(grad_spikes.to(like.dtype)).reshape(flat), _np(grad_u_last.to(like.dtype)).reshape(lanes), sg, u,
        spike_mask.numpy().reshape(flat), _np(current.to(like.dtype)).reshape(flat),
        _np(u0.to(like.dtype)).reshape(lanes), _np(s0.to(like.dtype)).reshape(lanes), beta_v, theta, scale, soft,
        consts, reset_grad, consts.dtype.type(1.0 if scale_input else 0.0),
        (bool(needs[0]), bool(needs[1]), want_direct), _lane_chunk(lanes), grad_current.numpy().reshape(flat),
        gu_first.numpy().reshape(lanes), g_beta.numpy().reshape(lanes), g_theta.numpy().reshape(lanes),
        direct.numpy().reshape(-1, lanes),
    )
    return grad_current, gu_first, g_beta, g_theta, direct if want_direct else None


# ------------------------------------------------------------------------------------- linear scans

@njit(**_PAR)
def _scan_forward(x, a, scale, y0, reverse, y):
    steps, rows, channels = x.shape
    for r in prange(rows):
        prev = y0[r].copy()
        for step in range(steps):
            t = steps - 1 - step if reverse else step
            xt, yt = x[t, r], y[t, r]
            for c in range(channels):
                prev[c] = scale[c] * xt[c] + a[c] * prev[c]
                yt[c] = prev[c]


def _scan_scale(a: np.ndarray, like: Tensor, a_tensor: Tensor, scale_input: bool) -> np.ndarray:
    if scale_input:
        return _np((1.0 - a_tensor.detach().to(like.dtype)).expand(a.size))
    return np.ones(a.size, a.dtype)


def scan_forward(x: Tensor, a: Tensor, y0: Tensor, scale_input: bool, reverse: bool = False) -> Tensor:
    """``y_t = a y_{t-1} + c(a) x_t`` for ``x [T, R, C]``, ``a [C]``, ``y0 [R, C]`` (``reverse``: from ``t = T-1``)."""
    use_threads(x.numel())
    y = torch.empty_like(x)
    a_v = _vector(a, x.shape[-1], x)
    _scan_forward(_np(x), a_v, _scan_scale(a_v, x, a, scale_input), _np(y0.to(x.dtype)), reverse, y.numpy())
    return y


@njit(**_PAR)
def _scan_backward(grad_y, x, a, scale, y0, scale_input, grad_x, g_a, g_y0):
    steps, rows, channels = x.shape
    for r in prange(rows):
        prev = y0[r].copy()  # recompute y into grad_x, then overwrite it backwards with dL/dx
        for t in range(steps):
            xt, yt = x[t, r], grad_x[t, r]
            for c in range(channels):
                prev[c] = scale[c] * xt[c] + a[c] * prev[c]
                yt[c] = prev[c]
        g = np.zeros(channels, x.dtype)
        acc = np.zeros(channels, np.float64)
        for t in range(steps - 1, -1, -1):
            gy, xt, gx = grad_y[t, r], x[t, r], grad_x[t, r]
            y_prev = grad_x[t - 1, r] if t > 0 else y0[r]
            for c in range(channels):
                g[c] = gy[c] + a[c] * g[c]
                acc[c] += g[c] * (y_prev[c] - xt[c] * scale_input)
                gx[c] = scale[c] * g[c]
        for c in range(channels):
            g_a[r, c] = acc[c]
            g_y0[r, c] = a[c] * g[c]


def scan_backward(grad_y: Tensor, x: Tensor, a: Tensor, y0: Tensor, scale_input: bool):
    """BPTT of :func:`scan_forward`: ``(dL/dx, dL/da per row [R, C], dL/dy0)``."""
    use_threads(x.numel())
    rows, channels = y0.shape
    grad_x = torch.empty_like(x)
    g_a = x.new_empty(rows, channels)
    g_y0 = x.new_empty(rows, channels)
    a_v = _vector(a, channels, x)
    _scan_backward(
        _np(grad_y.to(x.dtype)), _np(x), a_v, _scan_scale(a_v, x, a, scale_input), _np(y0.to(x.dtype)),
        a_v.dtype.type(1.0 if scale_input else 0.0), grad_x.numpy(), g_a.numpy(), g_y0.numpy(),
    )
    return grad_x, g_a, g_y0


# -------------------------------------------------------------------------------------- dendrites

@njit(inline="always", **_JIT)
def _dendrite_step(current, alpha, scale, i, total, branches):
    """``i ← (1-α) I + α i`` over the flattened ``[N·D]`` row, then ``J[n] = Σ_d i[n, d]``."""
    for c in range(i.size):
        i[c] = scale[c] * current[c] + alpha[c] * i[c]
    for n in range(total.size):
        acc = i[n * branches]
        for d in range(1, branches):
            acc += i[n * branches + d]
        total[n] = acc


@njit(**_PAR)
def _dendrite_forward(current, alpha, scale, i0, total, i_last):
    steps, rows, channels = current.shape
    branches = channels // total.shape[2]
    for r in prange(rows):
        i = i0[r].copy()
        for t in range(steps):
            _dendrite_step(current[t, r], alpha, scale, i, total[t, r], branches)
        i_last[r] = i


def _flat_alpha(alpha: Tensor, like: Tensor):
    a = _np(alpha.detach().to(like.dtype).reshape(-1))
    return a, _np((1.0 - alpha.detach().to(like.dtype)).reshape(-1))


def dendrite_forward(current: Tensor, alpha: Tensor, i0: Tensor):
    """``(J [T, B, N], i_T [B, N, D])`` for branch inputs ``current [T, B, N, D]``."""
    use_threads(current.numel())
    steps, batch, neurons, branches = current.shape
    total = current.new_empty(steps, batch, neurons)
    i_last = current.new_empty(batch, neurons, branches)
    a, scale = _flat_alpha(alpha, current)
    _dendrite_forward(
        _np(current).reshape(steps, batch, -1), a, scale, _np(i0.to(current.dtype)).reshape(batch, -1),
        total.numpy(), i_last.numpy().reshape(batch, -1),
    )
    return total, i_last


@njit(**_PAR)
def _dendrite_backward(grad_total, grad_i_last, current, alpha, scale, i0, grad_current, g_alpha, g_i0):
    steps, rows, channels = current.shape
    neurons = grad_total.shape[2]
    branches = channels // neurons
    for r in prange(rows):
        i = i0[r].copy()
        for t in range(steps):  # recompute the currents into grad_current
            cur, out = current[t, r], grad_current[t, r]
            for c in range(channels):
                i[c] = scale[c] * cur[c] + alpha[c] * i[c]
                out[c] = i[c]
        g = grad_i_last[r].copy()
        acc = np.zeros(channels, np.float64)
        for t in range(steps - 1, -1, -1):
            gt, cur, out = grad_total[t, r], current[t, r], grad_current[t, r]
            i_prev = grad_current[t - 1, r] if t > 0 else i0[r]
            for c in range(channels):
                gj = gt[c // branches]
                g[c] = g[c] + gj if t == steps - 1 else gj + alpha[c] * g[c]
                acc[c] += g[c] * (i_prev[c] - cur[c])
                out[c] = scale[c] * g[c]
        for c in range(channels):
            g_alpha[r, c] = acc[c]
            g_i0[r, c] = alpha[c] * g[c]


def dendrite_backward(grad_total: Tensor, grad_i_last: Tensor, current: Tensor, alpha: Tensor, i0: Tensor):
    """BPTT of :func:`dendrite_forward`: ``(dL/dI, dL/dα per batch row [B, N, D], dL/di0)``."""
    use_threads(current.numel())
    steps, batch, neurons, branches = current.shape
    grad_current = torch.empty_like(current)
    g_alpha = current.new_empty(batch, neurons, branches)
    g_i0 = current.new_empty(batch, neurons, branches)
    a, scale = _flat_alpha(alpha, current)
    flat = (steps, batch, -1)
    _dendrite_backward(
        _np(grad_total.to(current.dtype)), _np(grad_i_last.to(current.dtype)).reshape(batch, -1),
        _np(current).reshape(flat), a, scale, _np(i0.to(current.dtype)).reshape(batch, -1),
        grad_current.numpy().reshape(flat), g_alpha.numpy().reshape(batch, -1), g_i0.numpy().reshape(batch, -1),
    )
    return grad_current, g_alpha, g_i0


# ------------------------------------------------------------------------------- recurrent DH-LIF

@njit(inline="always", **_JIT)
def _recurrent_input(feedforward, w_rec_t, s_prev, current):
    """``current = I^ff_t + W_rec s_{t-1}`` for one row, skipping silent neurons (``w_rec_t [N, N·D]``)."""
    current[:] = feedforward
    for k in range(s_prev.size):
        if s_prev[k] != 0:
            w = w_rec_t[k]
            v = s_prev[k]
            for c in range(current.size):
                current[c] += w[c] * v


@njit(inline="always", **_JIT)
def _soma_forward_row(total, u, s, beta, scale, theta, soft, hard, one, u_out, s_out, s_mask):
    zero = one - one
    for n in range(u.size):
        new = soma_update(total[n], u[n], s[n], scale[n], beta[n], soft[n], hard, one)
        spike = new > theta[n]
        u[n] = new
        s[n] = one if spike else zero
        u_out[n] = new
        s_out[n] = s[n]
        s_mask[n] = spike


@njit(**_PAR)
def _dh_recurrent_forward(ff, w_rec_t, alpha, a_scale, beta, scale, theta, soft, consts, i0, u0, s0, u_out, s_out, s_mask, i_last):
    steps, rows, channels = ff.shape
    neurons = u0.shape[1]
    branches = channels // neurons
    one, hard = consts[0], consts[1]
    for r in prange(rows):
        i = i0[r].copy()
        u = u0[r].copy()
        s = s0[r].copy()
        current = np.empty(channels, ff.dtype)
        total = np.empty(neurons, ff.dtype)
        for t in range(steps):
            _recurrent_input(ff[t, r], w_rec_t, s, current)
            _dendrite_step(current, alpha, a_scale, i, total, branches)
            _soma_forward_row(total, u, s, beta, scale, theta, soft, hard, one, u_out[t, r], s_out[t, r], s_mask[t, r])
        i_last[r] = i


def dh_recurrent_forward(feedforward, w_rec, alpha, beta, threshold, i0, u0, s0, reset, scale_input):
    """DH-SRNN forward: ``(spikes float, u trace, spikes uint8, i_T)``; ``w_rec [N·D, N]``."""
    use_threads(feedforward.numel())
    steps, batch, neurons, branches = feedforward.shape
    like = feedforward
    beta_v, scale, theta, soft, consts = soma_coefficients(beta, threshold, reset, scale_input, neurons, like)
    a, a_scale = _flat_alpha(alpha, like)
    u_all = like.new_empty(steps, batch, neurons)
    spikes = like.new_empty(steps, batch, neurons)
    mask = torch.empty(steps, batch, neurons, dtype=torch.uint8)
    i_last = like.new_empty(batch, neurons, branches)
    _dh_recurrent_forward(
        _np(like).reshape(steps, batch, -1), _np(w_rec.detach().to(like.dtype).t()), a, a_scale, beta_v, scale,
        theta, soft, consts, _np(i0.to(like.dtype)).reshape(batch, -1), _np(u0.to(like.dtype)),
        _np(s0.to(like.dtype)), u_all.numpy(), spikes.numpy(), mask.numpy(), i_last.numpy().reshape(batch, -1),
    )
    return spikes, u_all, mask, i_last


@njit(**_PAR)
def _dh_recurrent_backward(
    grad_s, grad_i_last, grad_u_last, sg, ff, w_rec_t, alpha, a_scale, i0, u0, s0, u_all, s_mask, beta, theta,
    scale, soft, consts, reset_grad, scale_input, g_current, gu_first, gi_first, g_alpha, g_beta, g_theta,
):
    steps, rows, channels = ff.shape
    neurons = u0.shape[1]
    branches = channels // neurons
    for r in prange(rows):
        # Forward recomputation of the dendritic currents i_t into g_current (slot t), overwritten
        # backwards with dL/dI_t once i_t and i_{t-1} have been used.
        i = i0[r].copy()
        s_prev = np.empty(neurons, ff.dtype)
        current = np.empty(channels, ff.dtype)
        total = np.empty(neurons, ff.dtype)
        for t in range(steps):
            _previous_spikes(s_mask, s0, t, r, s_prev)
            _recurrent_input(ff[t, r], w_rec_t, s_prev, current)
            _dendrite_step(current, alpha, a_scale, i, total, branches)
            g_current[t, r] = i
        gu = np.zeros(neurons, ff.dtype)
        gi = np.zeros(channels, ff.dtype)
        acc_alpha = np.zeros(channels, np.float64)
        acc_beta = np.zeros(neurons, np.float64)
        acc_theta = np.zeros(neurons, np.float64)
        no_grad = np.zeros(neurons, ff.dtype)
        spiked = np.empty(neurons, ff.dtype)
        grad_spikes = np.empty(neurons, ff.dtype)
        drive = np.empty(neurons, ff.dtype)
        for t in range(steps - 1, -1, -1):
            spiked[:] = s_mask[t, r]
            _previous_spikes(s_mask, s0, t, r, s_prev)
            u_prev = u_all[t - 1, r] if t > 0 else u0[r]
            i_now = g_current[t, r]
            for n in range(neurons):  # J_t = Σ_d i_t (slot t still holds i_t); the soma's input
                acc = i_now[n * branches]
                for d in range(1, branches):
                    acc += i_now[n * branches + d]
                total[n] = acc
            grad_spikes[:] = grad_s[t, r]
            if t < steps - 1:  # W_rec^T g^I_{t+1}, g^I_{t+1} in slot t+1
                g_next = g_current[t + 1, r]
                for n in range(neurons):
                    w = w_rec_t[n]
                    acc = grad_spikes[n]
                    for c in range(channels):
                        acc += w[c] * g_next[c]
                    grad_spikes[n] = acc
            _soma_reverse_row(
                grad_spikes, sg[t, r], u_all[t, r], spiked, u_prev, s_prev, total,
                grad_u_last[r] if t == steps - 1 else no_grad, beta, theta, scale, soft, consts, reset_grad,
                scale_input, (True, True, False), gu, acc_beta, acc_theta, drive, drive,
            )
            _recurrent_input(ff[t, r], w_rec_t, s_prev, current)
            i_prev = g_current[t - 1, r] if t > 0 else i0[r]
            out = g_current[t, r]
            last = grad_i_last[r]
            for c in range(channels):
                value = drive[c // branches] + alpha[c] * gi[c]
                if t == steps - 1:
                    value = value + last[c]
                gi[c] = value
                acc_alpha[c] += value * (i_prev[c] - current[c])
                out[c] = a_scale[c] * value
        gu_first[r] = gu
        g_beta[r] = acc_beta
        g_theta[r] = acc_theta
        for c in range(channels):
            gi_first[r, c] = alpha[c] * gi[c]
            g_alpha[r, c] = acc_alpha[c]


def dh_recurrent_backward(
    grad_spikes, grad_i_last, grad_u_last, feedforward, w_rec, alpha, beta, threshold, i0, u0, s0, u_all,
    spike_mask, surrogate, reset, detach_reset, scale_input,
):
    """DH-SRNN BPTT: ``(dL/dI [T,B,N,D], g^u_0, dL/di0, dL/dα per row, dL/dβ per row, dL/dθ per row)``."""
    use_threads(feedforward.numel())
    steps, batch, neurons, branches = feedforward.shape
    like = feedforward
    beta_v, scale, theta, soft, consts = soma_coefficients(beta, threshold, reset, scale_input, neurons, like)
    a, a_scale = _flat_alpha(alpha, like)
    sg = surrogate_grad(surrogate, u_all.numpy(), theta)
    g_current = torch.empty_like(feedforward)
    gu_first = like.new_empty(batch, neurons)
    gi_first = like.new_empty(batch, neurons, branches)
    g_alpha = like.new_empty(batch, neurons, branches)
    g_beta = like.new_empty(batch, neurons)
    g_theta = like.new_empty(batch, neurons)
    flat = (steps, batch, -1)
    reset_grad = consts.dtype.type(0.0 if detach_reset or reset == "none" else 1.0)
    _dh_recurrent_backward(
        _np(grad_spikes.to(like.dtype)), _np(grad_i_last.to(like.dtype)).reshape(batch, -1),
        _np(grad_u_last.to(like.dtype)), sg, _np(like).reshape(flat), _np(w_rec.detach().to(like.dtype).t()), a,
        a_scale, _np(i0.to(like.dtype)).reshape(batch, -1), _np(u0.to(like.dtype)), _np(s0.to(like.dtype)),
        u_all.numpy(), spike_mask.numpy(), beta_v, theta, scale, soft, consts, reset_grad,
        consts.dtype.type(1.0 if scale_input else 0.0), g_current.numpy().reshape(flat), gu_first.numpy(),
        gi_first.numpy().reshape(batch, -1), g_alpha.numpy().reshape(batch, -1), g_beta.numpy(), g_theta.numpy(),
    )
    return g_current, gu_first, gi_first, g_alpha, g_beta, g_theta


# ------------------------------------------------------------------------------------------ events

class EventList:
    """Non-zero entries of an input ``[R, M]`` (``R = T·B`` rows), by row (CSR).

    ``indptr [R+1]``, ``indices [nnz]`` (input channel), ``values [nnz]`` (the entries: 1 for binary
    spikes, or small counts).
    """

    def __init__(self, rows: int, cols: int, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray):
        self.rows, self.cols = rows, cols
        self.indptr, self.indices, self.values = indptr, indices, values

    @property
    def count(self) -> int:
        return int(self.indptr[-1])

    def values_as(self, dtype) -> np.ndarray:
        return self.values.astype(dtype, copy=False)


@njit(**_PAR)
def _count_rows(x, counts):
    rows, cols = x.shape
    for r in prange(rows):
        row = x[r]
        count = 0
        for m in range(cols):
            count += row[m] != 0
        counts[r] = count


@njit(**_PAR)
def _fill_rows(x, indptr, indices, values):
    rows, cols = x.shape
    for r in prange(rows):
        row = x[r]
        found = np.empty(cols + 1, indices.dtype)
        count = 0
        for m in range(cols):  # branch-free compaction: always write, advance only on a non-zero
            found[count] = m
            count += row[m] != 0
        start = indptr[r]
        for k in range(count):
            indices[start + k] = found[k]
            values[start + k] = row[found[k]]


def events_from_dense(x: Tensor, max_density: float) -> Optional[EventList]:
    """Events of ``x [R, M]``, or ``None`` when more than ``max_density`` of its entries are non-zero."""
    use_threads(x.numel())
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
        row = out[r]
        row[:] = bias
        for k in range(indptr[r], indptr[r + 1]):
            w = weight_t[indices[k]]
            v = values[k]
            for o in range(width):
                row[o] += v * w[o]


def _bias(bias: Optional[Tensor], width: int, like: Tensor) -> np.ndarray:
    dtype = torch.empty(0, dtype=like.dtype).numpy().dtype
    return np.zeros(width, dtype) if bias is None else _np(bias.to(like.dtype).reshape(-1))


def event_linear_forward(events: EventList, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``x W^T + b`` from the events of ``x``: ``[R, O]`` for ``weight [O, M]``."""
    use_threads(events.count * weight.shape[0])
    width = weight.shape[0]
    out = weight.new_empty(events.rows, width)
    weight_t = _np(weight.t())
    _event_linear_forward(
        events.indptr, events.indices, events.values_as(weight_t.dtype), weight_t, _bias(bias, width, weight),
        out.detach().numpy(),
    )
    return out


@njit(**_PAR)
def _event_linear_weight_grad(indptr, indices, values, grad_out, partial):
    rows = grad_out.shape[0]
    parts = partial.shape[0]
    for p in prange(parts):
        acc = partial[p]  # [M, O]: small enough to stay in cache while the rows stream past
        acc[:] = 0.0
        for r in range(p * rows // parts, (p + 1) * rows // parts):
            g = grad_out[r]
            for k in range(indptr[r], indptr[r + 1]):
                target = acc[indices[k]]
                v = values[k]
                for o in range(g.size):
                    target[o] += v * g[o]


def _parts(rows: int) -> int:
    return max(1, min(rows, numba.get_num_threads()))


def event_linear_weight_grad(events: EventList, grad_out: Tensor) -> Tensor:
    """``grad_out^T x`` (``[O, M]``) from the events of ``x``.

    Visits the rows in order (each gradient row is read once) and accumulates into one ``[M, O]``
    buffer per thread, summed at the end.
    """
    use_threads(events.count * grad_out.shape[1])
    grad = _np(grad_out)
    partial = np.empty((_parts(events.rows), events.cols, grad.shape[1]), grad.dtype)
    _event_linear_weight_grad(events.indptr, events.indices, events.values_as(grad.dtype), grad, partial)
    return torch.from_numpy(partial.sum(0) if partial.shape[0] > 1 else partial[0]).t()


# ------------------------------------------------------------- events fused with the dendritic sum
#
# The fused kernels keep each row's dendritic state branch-major, ``[D, N]`` (entry ``d·N + n``), so that
# the dendrite update and the sum over branches ``J = Σ_d i[d, :]`` are contiguous vector operations. An
# event of input ``m`` adds the masked weight column ``W[:, m]`` (``[D·N]``, zeros off the mask) to the
# branch inputs: a contiguous multiply-add that vectorises, measured 3× faster on this CPU than
# scattering the N connected entries one by one (which does D times fewer operations but one at a time).
# The wrappers convert parameters and results from and to the ``[N, D]`` layout of the layers.

@njit(inline="always", **_JIT)
def _add_columns(indptr, indices, values, columns, r, out):
    """``out += Σ_events v · columns[m]`` over the events of row ``r``."""
    for k in range(indptr[r], indptr[r + 1]):
        column = columns[indices[k]]
        v = values[k]
        for c in range(out.size):
            out[c] += v * column[c]


@njit(inline="always", **_JIT)
def _branch_sum(i, total):
    """``J[n] = Σ_d i[d·N + n]`` (branch-major state)."""
    neurons = total.size
    total[:] = i[:neurons]
    for d in range(1, i.size // neurons):
        branch = i[d * neurons:(d + 1) * neurons]
        for n in range(neurons):
            total[n] += branch[n]


@njit(**_PAR)
def _event_dendrite_forward(indptr, indices, values, columns, bias, alpha, scale, i0, chunk, total, i_last, checkpoints):
    steps, batch, neurons = total.shape
    channels = alpha.size
    for b in prange(batch):
        i = i0[b].copy()
        current = np.empty(channels, i0.dtype)
        for t in range(steps):
            if t % chunk == 0:
                checkpoints[t // chunk, b] = i
            current[:] = bias
            _add_columns(indptr, indices, values, columns, t * batch + b, current)
            for c in range(channels):
                i[c] = scale[c] * current[c] + alpha[c] * i[c]
            _branch_sum(i, total[t, b])
        i_last[b] = i


_CHUNK = 32


def _branch_major(values: Tensor, like: Tensor, neurons: int, branches: int) -> np.ndarray:
    """``[..., N, D]`` → contiguous ``[..., D·N]`` array in the dtype of ``like``."""
    moved = values.detach().to(like.dtype).reshape(*values.shape[:-2], neurons, branches).transpose(-1, -2)
    return _np(moved).reshape(*values.shape[:-2], -1)


def _neuron_major(values: np.ndarray, neurons: int, branches: int) -> Tensor:
    """Contiguous ``[..., D·N]`` array → ``[..., N, D]`` tensor (a copy)."""
    moved = torch.from_numpy(values).reshape(*values.shape[:-1], branches, neurons).transpose(-1, -2)
    return moved.contiguous()


def _columns(structure, w_values: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Masked weight columns ``[M, D·N]`` (branch-major, zeros off the mask) and each value's flat position."""
    w = _np(w_values)
    position = np.repeat(np.arange(structure.inputs, dtype=np.int64), np.diff(structure.colptr)) * structure.outputs
    position += structure.rows_branch_major
    columns = np.zeros(structure.inputs * structure.outputs, w.dtype)
    columns[position] = w
    return columns.reshape(structure.inputs, structure.outputs), position


def event_dendrite_forward(events: EventList, steps: int, structure, w_values: Tensor,
                           bias: Optional[Tensor], alpha: Tensor, i0: Tensor):
    """``(J [T, B, N], i_T [B, N, D], checkpoints)``: branch inputs from events, summed dendritic currents.

    Never materialises the ``[T, B, N, D]`` branch inputs; ``checkpoints`` (the currents every 32 steps)
    let the backward pass recompute them chunk by chunk.
    """
    use_threads(steps * i0.numel())
    batch, neurons, branches = i0.shape
    like = w_values
    columns, _ = _columns(structure, like)
    total = like.new_empty(steps, batch, neurons)
    i_last = np.empty((batch, neurons * branches), columns.dtype)
    checkpoints = like.new_empty(-(-steps // _CHUNK), batch, neurons * branches)
    bias_bm = np.zeros(neurons * branches, columns.dtype) if bias is None else _branch_major(bias, like, neurons, branches)
    _event_dendrite_forward(
        events.indptr, events.indices, events.values_as(columns.dtype), columns, bias_bm,
        _branch_major(alpha, like, neurons, branches), _branch_major(1.0 - alpha.detach(), like, neurons, branches),
        _branch_major(i0, like, neurons, branches), _CHUNK, total.detach().numpy(), i_last, checkpoints.detach().numpy(),
    )
    return total, _neuron_major(i_last, neurons, branches), checkpoints


@njit(**_PAR)
def _event_dendrite_backward(
    indptr, indices, values, columns, bias, alpha, scale, checkpoints, chunk, grad_total, grad_i_last,
    write_grad_current, grad_columns, grad_bias, grad_alpha, grad_i0, grad_current,
):
    steps, batch, neurons = grad_total.shape
    channels = alpha.size
    branches = channels // neurons
    parts = grad_columns.shape[0]
    for p in prange(parts):
        acc_w = grad_columns[p]
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
                    cur = currents[j]
                    cur[:] = bias
                    _add_columns(indptr, indices, values, columns, t * batch + b, cur)
                    before, after = trace[j], trace[j + 1]
                    for c in range(channels):
                        after[c] = scale[c] * cur[c] + alpha[c] * before[c]
                for t in range(t1 - 1, t0 - 1, -1):
                    j = t - t0
                    gt = grad_total[t, b]
                    before, cur = trace[j], currents[j]
                    for d in range(branches):
                        base = d * neurons
                        gd = g[base:base + neurons]
                        ad = alpha[base:base + neurons]
                        if t == steps - 1:
                            for n in range(neurons):
                                gd[n] += gt[n]
                        else:
                            for n in range(neurons):
                                gd[n] = gt[n] + ad[n] * gd[n]
                    for c in range(channels):
                        acc_alpha[c] += g[c] * (before[c] - cur[c])
                    for c in range(channels):
                        g_current[c] = scale[c] * g[c]
                        acc_bias[c] += g_current[c]
                    if write_grad_current:
                        grad_current[t, b] = g_current
                    r = t * batch + b
                    for k in range(indptr[r], indptr[r + 1]):
                        target = acc_w[indices[k]]
                        v = values[k]
                        for c in range(channels):
                            target[c] += v * g_current[c]
            for c in range(channels):
                grad_i0[b, c] = alpha[c] * g[c]


def event_dendrite_backward(events: EventList, structure, w_values: Tensor, bias: Optional[Tensor],
                            alpha: Tensor, checkpoints: Tensor, grad_total: Tensor, grad_i_last: Tensor,
                            need_grad_current: bool):
    """BPTT of :func:`event_dendrite_forward`.

    Returns ``(dL/dw [nnz], dL/db [N, D], dL/dα [N, D], dL/di0 [B, N, D], dL/dI [T, B, N·D] or None)``;
    ``dL/dI`` (the only ``[T, B, N·D]`` tensor) is written only when asked for (input gradient).
    """
    use_threads(grad_total.numel() * alpha.shape[-1])
    steps, batch, neurons = grad_total.shape
    branches = alpha.shape[-1]
    like = w_values
    columns, position = _columns(structure, like)
    dtype = columns.dtype
    channels = structure.outputs
    parts = _parts(batch)
    grad_columns = np.empty((parts, structure.inputs, channels), dtype)
    grad_bias = np.empty((parts, channels), dtype)  # per-step sums in the data type, like the reference loop
    grad_alpha = np.empty((parts, channels), dtype)
    grad_i0 = np.empty((batch, channels), dtype)
    grad_current = np.empty((steps, batch, channels) if need_grad_current else (1, 1, channels), dtype)
    bias_bm = np.zeros(channels, dtype) if bias is None else _branch_major(bias, like, neurons, branches)
    _event_dendrite_backward(
        events.indptr, events.indices, events.values_as(dtype), columns, bias_bm,
        _branch_major(alpha, like, neurons, branches), _branch_major(1.0 - alpha.detach(), like, neurons, branches),
        _np(checkpoints), _CHUNK, _np(grad_total.to(like.dtype)), _branch_major(grad_i_last, like, neurons, branches),
        need_grad_current, grad_columns, grad_bias, grad_alpha, grad_i0, grad_current,
    )
    to = dict(dtype=like.dtype)
    grad_w = grad_columns.sum(0).reshape(-1)[position] if parts > 1 else grad_columns[0].reshape(-1)[position]
    return (
        torch.from_numpy(grad_w),
        _neuron_major(grad_bias.sum(0), neurons, branches).to(**to),
        _neuron_major(grad_alpha.sum(0), neurons, branches).to(**to),
        _neuron_major(grad_i0, neurons, branches),
        _neuron_major(grad_current, neurons, branches).reshape(steps, batch, channels) if need_grad_current else None,
    )
