r"""Compiled CPU kernels (numba) for delay convolutions with a few taps per synapse.

One operation, forward and backward, serves the few-tap path of learnable delays (W taps around each
bump) and integer delays (W = 1):

.. math:: y_o[t] = \sum_{i,q} \sum_{j<W} v_{oiqj}\; x_i[t - s_{oiq} - j]

with :math:`s_{oiq}` the first delay of synapse (o, i, q). Backward:

.. math:: \frac{\partial L}{\partial x_i[\tau]} = \sum_{o,q,j} v_{oiqj}\, \bar y_o[\tau + s_{oiq} + j],
          \qquad \frac{\partial L}{\partial v_{oiqj}} = \sum_{t,b} \bar y_o[t]\; x_i[t - s_{oiq} - j].

All three are ``O·I·Q·W`` multiply-adds per step and sample, W/K of the dense-kernel convolution's
work. Signals are laid out channel-major with time and batch flattened (``[C, T·B]``), so a delay is a
shift of the flat index by a multiple of B and every inner loop is a long contiguous vector loop. The
kernels work on chunks of the flat axis so that accumulators and source windows stay in the caches.

numba is optional: :func:`available` says whether it can be imported; without it
:mod:`spikescale.functional.delays` computes the same values through a dense kernel and the Fourier path.
Checked against :func:`spikescale.functional.delays.delay_conv_reference` (values, gradients, gradcheck).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from .precision import full_precision

__all__ = ["available", "sparse_tap_conv"]

_BLOCK = 8  # destination channels per task of the correlation
_CHUNK = 512  # flat (time × batch) positions per task


def available() -> bool:
    """Whether numba can be imported (the kernels compile on first use)."""
    return importlib.util.find_spec("numba") is not None


@lru_cache(maxsize=None)
def _kernels():
    """Compile (or load from numba's cache) the two kernels."""
    import numba
    import numpy as np
    from numba import njit, prange

    options = dict(parallel=True, fastmath=True, boundscheck=False, nogil=True, cache=True)

    @njit(**options)
    def gather_accumulate(src, vals, off, step, out):  # pragma: no cover - compiled
        # out[c, n] = Σ_{c', q, j} vals[c, c', q, j] · src[c', n + off[c, c', q] + j·step]
        channels, sources, count, taps = vals.shape
        positions = out.shape[1]
        chunks = (positions + _CHUNK - 1) // _CHUNK
        for task in prange(chunks * channels):  # chunk-major: consecutive tasks reuse the source window
            chunk = task // channels
            c = task - chunk * channels
            n0 = chunk * _CHUNK
            width = min(_CHUNK, positions - n0)
            acc = out[c, n0: n0 + width]
            acc[:] = 0.0
            for q in range(count):
                for j in range(taps):
                    shift = j * step + n0
                    s = 0
                    while s + 4 <= sources:  # four sources per pass over the accumulator
                        a0, a1 = vals[c, s, q, j], vals[c, s + 1, q, j]
                        a2, a3 = vals[c, s + 2, q, j], vals[c, s + 3, q, j]
                        x0 = src[s, off[c, s, q] + shift:]
                        x1 = src[s + 1, off[c, s + 1, q] + shift:]
                        x2 = src[s + 2, off[c, s + 2, q] + shift:]
                        x3 = src[s + 3, off[c, s + 3, q] + shift:]
                        for n in range(width):
                            acc[n] += a0 * x0[n] + a1 * x1[n] + a2 * x2[n] + a3 * x3[n]
                        s += 4
                    while s < sources:
                        a0 = vals[c, s, q, j]
                        x0 = src[s, off[c, s, q] + shift:]
                        for n in range(width):
                            acc[n] += a0 * x0[n]
                        s += 1

    @njit(**options)
    def correlate(grad, src, off, step, out):  # pragma: no cover - compiled
        # out[c, c', q, j] = Σ_n grad[c, n] · src[c', n + off[c, c', q] + j·step]
        channels, sources, count, taps = out.shape
        positions = grad.shape[1]
        blocks = (channels + _BLOCK - 1) // _BLOCK
        chunks = (positions + _CHUNK - 1) // _CHUNK
        for block in prange(blocks):
            c0 = block * _BLOCK
            c1 = min(channels, c0 + _BLOCK)
            for chunk in range(chunks):
                n0 = chunk * _CHUNK
                width = min(_CHUNK, positions - n0)
                for source in range(sources):
                    row = src[source]
                    for c in range(c0, c1):
                        g = grad[c, n0: n0 + width]
                        for q in range(count):
                            base = off[c, source, q] + n0
                            for j in range(taps):
                                segment = row[base + j * step: base + j * step + width]
                                total = 0.0
                                for n in range(width):
                                    total += g[n] * segment[n]
                                out[c, source, q, j] += total

    return gather_accumulate, correlate


def _use_torch_threads() -> None:
    """Run the kernels on as many threads as torch uses (numba keeps its own pool)."""
    import numba

    numba.set_num_threads(min(numba.config.NUMBA_NUM_THREADS, max(1, torch.get_num_threads())))


def _flat(x: Tensor) -> Tensor:
    """``[T, B, C]`` → contiguous ``[C, T·B]``."""
    return x.permute(2, 0, 1).reshape(x.shape[2], -1).contiguous()


def _padded_source(x: Tensor, before: int, total: int) -> Tensor:
    """``[T, B, C]`` → ``[C, total·B]``: ``before`` zero steps, then ``x``, then zeros (``total`` steps in all)."""
    if before < 0:  # history older than the longest delay is never read
        x, before = x[-before:], 0
    steps, batch, channels = x.shape
    kept = max(0, min(steps, total - before))
    out = x.new_zeros(channels, total, batch)
    out[:, before: before + kept] = x[:kept].permute(2, 0, 1)
    return out.reshape(channels, total * batch)


class _SparseTapConv(torch.autograd.Function):
    @staticmethod
    @full_precision
    def forward(ctx, x_ext, values, start, lead, out_steps, span):
        gather_accumulate, _ = _kernels()
        batch = x_ext.shape[1]
        # Source time index u ↔ input time u - span; the output at t reads u = t + span - s - j.
        source = _padded_source(x_ext, span - lead, out_steps + span)
        offsets = ((span - start) * batch).contiguous()
        out = values.new_empty(values.shape[0], out_steps * batch)
        gather_accumulate(source.numpy(), values.detach().contiguous().numpy(), offsets.numpy(), -batch, out.numpy())
        ctx.save_for_backward(source, values, start)
        ctx.shape = (x_ext.shape[0], batch, lead, out_steps, span)
        return out.view(-1, out_steps, batch).permute(1, 2, 0).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        gather_accumulate, correlate = _kernels()
        source, values, start = ctx.saved_tensors
        steps, batch, lead, out_steps, span = ctx.shape
        grad_x = grad_values = None
        if ctx.needs_input_grad[1]:
            grad_flat = _flat(grad_y)
            grad_values = torch.zeros_like(values)
            offsets = ((span - start) * batch).contiguous()
            correlate(grad_flat.numpy(), source.numpy(), offsets.numpy(), -batch, grad_values.numpy())
        if ctx.needs_input_grad[0]:
            # dL/dx_ext[r] = Σ v · ḡ[r - lead + s + j]: gather from the output gradient shifted by +s + j.
            grad_source = _padded_source(grad_y, lead, steps + span)
            transposed = values.detach().permute(1, 0, 2, 3).contiguous()
            offsets = (start.permute(1, 0, 2) * batch).contiguous()
            flat = values.new_empty(values.shape[1], steps * batch)
            gather_accumulate(grad_source.numpy(), transposed.numpy(), offsets.numpy(), batch, flat.numpy())
            grad_x = flat.view(-1, steps, batch).permute(1, 2, 0)
        return grad_x, grad_values, None, None, None, None


def sparse_tap_conv(x_ext: Tensor, values: Tensor, start: Tensor, lead: int, out_steps: int) -> Tensor:
    r"""``y [T_out, B, O]`` with :math:`y_o[t] = \sum v_{oiqj}\, x_i[t - s_{oiq} - j]` (module doc).

    Args:
        x_ext: ``[L, B, I]`` CPU input whose row ``r`` is time ``r − lead`` (zeros outside).
        values: ``[O, I, Q, W]`` tap values (gradients flow to them and to ``x_ext``).
        start: ``[O, I, Q]`` int64 first delay of each window, ``0 ≤ start``, ``start + W ≤ K``.
        lead: rows of history before time 0 in ``x_ext``.
        out_steps: outputs ``t = 0 … out_steps − 1``.
    """
    if x_ext.device.type != "cpu":
        raise ValueError(f"the compiled sparse-tap kernels run on CPU tensors, got device {x_ext.device}")
    _use_torch_threads()
    taps = values.shape[-1]
    span = int(start.max().item()) + taps - 1 if start.numel() else taps - 1
    values = values.to(x_ext.dtype)
    return _SparseTapConv.apply(x_ext, values, start.contiguous(), lead, out_steps, span)
