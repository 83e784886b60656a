r"""First-order linear recurrences: dendritic currents and leaky-integrator readouts.

.. math:: y_t = a \odot y_{t-1} + c(a) \odot x_t, \qquad c(a) = 1 - a \ \text{(scaled, DH-SNN)}
          \ \text{or}\ 1 \ \text{(unscaled)}

The recurrence is linear and never resets, so it needs no per-step Python loop: :func:`linear_scan`
can evaluate it in chunks of ``L`` steps with one batched matrix product (a lower-triangular Toeplitz
matrix :math:`P_{jk} = a^{j-k}` per channel) and carry the chunk ends forward in ``T/L`` tiny updates;
on CPU, where the scan is memory-bound, a loop of one fused multiply-add per step is faster and is
the default there. :func:`linear_recurrence` wraps it in an autograd Function whose backward is the same
scan run backwards in time (both loops run on the backend chosen in :mod:`spikescale.kernels`, compiled
on CPU when available, with :func:`linear_scan` as the reference):

.. math:: g_t = \bar g_t + a\, g_{t+1}, \quad
          \frac{\partial L}{\partial x_t} = c(a)\, g_t, \quad
          \frac{\partial L}{\partial a} = \sum_t g_t \,(y_{t-1} + c'(a)\, x_t), \quad
          \frac{\partial L}{\partial y_0} = a\, g_1

with :math:`\bar g_t` the incoming gradient. Only ``x`` and ``y_0`` are kept for the backward pass; the
outputs are recomputed there (one more scan), so no ``[T, ...]`` tensor beyond the input is held.

Devices: CPU, CUDA. Autograd: hand-written backward; ``gradcheck`` in float64 against
:func:`linear_recurrence_reference`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..kernels import select
from .precision import full_precision

__all__ = [
    "linear_scan",
    "linear_step",
    "linear_recurrence",
    "linear_recurrence_reference",
    "leaky_integrator",
]


def _chunk_length(steps: int) -> int:
    """Chunk length ≈ √T (clamped to [4, 32]) balances the O(T·L) products and the T/L carries."""
    return max(4, min(32, int(math.sqrt(max(steps, 1)))))


def linear_scan(
    x: Tensor, a: Tensor, y0: Optional[Tensor] = None, *, reverse: bool = False, method: str = "auto"
) -> Tensor:
    r"""Evaluate :math:`y_t = a \odot y_{t-1} + x_t` for all steps (no autograd of its own).

    Args:
        x: ``[T, *batch, *features]`` already-scaled input.
        a: ``[*features]`` decay factors, broadcast over time and batch (the trailing dims of ``x``).
        y0: ``[*batch, *features]`` state before the first step (zeros if ``None``).
        reverse: run from ``t = T-1`` down to 0 (``y_t = a y_{t+1} + x_t``), used by backward passes.
        method: ``"chunked"`` (Toeplitz products per chunk, no per-step loop), ``"loop"`` (one fused
            multiply-add per step) or ``"auto"``: chunked on accelerators, loop on CPU, where the scan is
            memory-bound and the loop makes the fewest passes over memory (measured: 25 ms vs 310 ms for
            ``T=1000, B=32, C=512`` on 2 cores).

    Returns:
        ``y`` with the shape of ``x``.
    """
    if reverse:
        return linear_scan(x.flip(0), a, y0, method=method).flip(0)
    if method == "auto":
        method = "loop" if x.device.type == "cpu" else "chunked"
    if method not in ("loop", "chunked"):
        raise ValueError(f"unknown scan method {method!r}; expected 'auto', 'loop' or 'chunked'")
    if x.shape[0] == 0:
        return x.clone()
    a = a.to(x.dtype)
    if y0 is None:
        y0 = x.new_zeros(x.shape[1:])
    return _scan_loop(x, a, y0) if method == "loop" else _scan_chunked(x, a, y0)


def _scan_loop(x: Tensor, a: Tensor, y0: Tensor) -> Tensor:
    y = torch.empty_like(x)
    prev = y0.to(x.dtype)
    for t in range(x.shape[0]):
        prev = torch.addcmul(x[t], a, prev, out=y[t])
    return y


def _scan_chunked(x: Tensor, a: Tensor, y0: Tensor) -> Tensor:
    steps = x.shape[0]
    channels = a.numel()
    a_flat = a.reshape(-1)
    xf = x.reshape(steps, -1, channels)  # [T, Bf, C]
    batch = xf.shape[1]
    length = _chunk_length(steps)
    chunks = -(-steps // length)
    padded = chunks * length
    if padded != steps:
        xf = torch.cat([xf, xf.new_zeros(padded - steps, batch, channels)])
    # Toeplitz powers P[c, j, k] = a_c^(j-k) for j >= k, else 0.
    idx = torch.arange(length, device=x.device)
    lag = idx[:, None] - idx[None, :]
    powers = torch.pow(a_flat[:, None, None], lag.clamp(min=0).to(x.dtype)) * (lag >= 0)
    # Local scans of every chunk with zero initial state: [C, L, L] @ [C, L, chunks*Bf].
    xc = xf.reshape(chunks, length, batch, channels).permute(3, 1, 0, 2).reshape(channels, length, -1)
    local = torch.bmm(powers, xc).reshape(channels, length, chunks, batch).permute(2, 1, 3, 0)
    # local: [chunks, L, Bf, C]. Carry the chunk ends forward: e_n = local_n[L-1] + a^L e_{n-1}.
    decay_chunk = torch.pow(a_flat, float(length))
    carry = y0.reshape(batch, channels).to(x.dtype)
    carries = []
    for n in range(chunks):
        carries.append(carry)
        carry = torch.addcmul(local[n, length - 1], decay_chunk, carry)
    carry_in = torch.stack(carries)  # [chunks, Bf, C], state entering each chunk
    lead = torch.pow(a_flat[None, :], (idx + 1).to(x.dtype)[:, None])  # [L, C]: a^(j+1)
    y = local + lead[None, :, None, :] * carry_in[:, None]
    return y.reshape(padded, batch, channels)[:steps].reshape(x.shape)


def linear_step(y: Tensor, x_t: Tensor, a: Tensor, *, scale_input: bool = True) -> Tensor:
    """One step ``a·y + c(a)·x_t``, evaluated with the same operations as the CPU scan loop."""
    drive = (1.0 - a) * x_t if scale_input else x_t
    return torch.addcmul(drive, a, y)


def linear_recurrence_reference(
    x: Tensor, a: Tensor, y0: Optional[Tensor] = None, *, scale_input: bool = True
) -> Tensor:
    """Plain autograd version of :func:`linear_recurrence`: a Python loop over steps (tests only)."""
    y = torch.zeros_like(x[0]) if y0 is None else y0
    out = []
    for t in range(x.shape[0]):
        y = linear_step(y, x[t], a, scale_input=scale_input)
        out.append(y)
    return torch.stack(out)


class _LinearRecurrence(torch.autograd.Function):
    @staticmethod
    @full_precision
    def forward(ctx, x: Tensor, a: Tensor, y0: Tensor, scale_input: bool) -> Tensor:
        kernel = _kernel_for(x)
        if kernel is not None:
            channels = a.numel()
            y = kernel.scan_forward(x.reshape(x.shape[0], -1, channels), a.reshape(-1), y0.reshape(-1, channels), scale_input)
            y = y.reshape(x.shape)
        else:
            drive = (1.0 - a) * x if scale_input else x
            y = linear_scan(drive, a, y0)
        ctx.save_for_backward(x, a, y0)
        ctx.config = (scale_input, kernel)
        return y

    @staticmethod
    @full_precision
    def backward(ctx, grad_y: Tensor):
        x, a, y0 = ctx.saved_tensors
        scale_input, kernel = ctx.config
        if kernel is not None:
            channels = a.numel()
            grad_x, g_a, grad_y0 = kernel.scan_backward(
                grad_y.reshape(x.shape[0], -1, channels), x.reshape(x.shape[0], -1, channels), a.reshape(-1),
                y0.reshape(-1, channels), scale_input,
            )
            grad_a = g_a.sum(0).reshape(a.shape).to(a.dtype)
            return grad_x.reshape(x.shape), grad_a, grad_y0.reshape(y0.shape), None
        g = linear_scan(grad_y, a, reverse=True)  # dL/dy_t including all later steps
        grad_x = grad_a = grad_y0 = None
        if ctx.needs_input_grad[0]:
            grad_x = (1.0 - a) * g if scale_input else g
        if ctx.needs_input_grad[1]:
            drive = (1.0 - a) * x if scale_input else x
            y = linear_scan(drive, a, y0)
            y_prev = torch.cat([y0.unsqueeze(0), y[:-1]])
            term = y_prev - x if scale_input else y_prev
            grad_a = (g * term).reshape(-1, a.numel()).sum(0).reshape(a.shape)
        if ctx.needs_input_grad[2]:
            grad_y0 = a * g[0]
        return grad_x, grad_a, grad_y0, None


def _kernel_for(x: Tensor):
    if x.dtype not in (torch.float32, torch.float64):
        return None
    return select("linear_recurrence", x.device)


def linear_recurrence(
    x: Tensor, a: Tensor, y0: Optional[Tensor] = None, *, scale_input: bool = True
) -> Tensor:
    r"""Leaky linear recurrence :math:`y_t = a y_{t-1} + (1-a) x_t` (or ``+ x_t`` if not ``scale_input``).

    Args:
        x: ``[T, *batch, *features]``.
        a: ``[*features]`` factors in (0, 1); trailing dims of ``x`` (e.g. ``[N]`` or ``[N, D]``).
        y0: ``[*batch, *features]`` initial state (zeros if ``None``).

    Returns:
        ``y`` of the shape of ``x``; the final state is ``y[-1]``.
    """
    if a.shape != x.shape[x.dim() - a.dim():]:
        raise ValueError(
            f"factor shape {tuple(a.shape)} must equal the trailing dims of the input {tuple(x.shape)}"
        )
    if y0 is None:
        y0 = x.new_zeros(x.shape[1:])
    return _LinearRecurrence.apply(x, a, y0, scale_input)


def leaky_integrator(x: Tensor, beta: Tensor, m0: Optional[Tensor] = None) -> Tensor:
    r"""Non-spiking readout membrane :math:`m_t = \beta m_{t-1} + (1-\beta) x_t`; ``x`` is ``[T, B, K]``."""
    return linear_recurrence(x, beta, m0, scale_input=True)
