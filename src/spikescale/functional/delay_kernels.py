r"""Compiled CPU kernels (numba) for delay convolutions with a few taps per synapse.

One operation, forward and backward, serves the few-tap path of learnable delays (W taps around each
bump) and integer delays (W = 1):

.. math:: y_o[t] = \sum_{i,q} \sum_{j<W} v_{oiqj}\; x_i[t - s_{oiq} - j]

with :math:`s_{oiq}` the first delay of synapse (o, i, q). Backward:

.. math:: \frac{\partial L}{\partial x_i[\tau]} = \sum_{o,q,j} v_{oiqj}\, \bar y_o[\tau + s_{oiq} + j],
          \qquad \frac{\partial L}{\partial v_{oiqj}} = \sum_{t,b} \bar y_o[t]\; x_i[t - s_{oiq} - j].

All three are ``O·I·Q·W`` multiply-adds per step and sample, W/K of the dense-kernel convolution's
work. Each is a list of *entries* per destination channel ``c`` — a source channel shifted by a number of
steps, and a value — so the forward pass and the input gradient run one kernel with different entry
lists, and the value gradient is one dot product per entry.

Layout: signals are *packed* as ``[B/16, C, R, 16]`` (16 batch elements innermost, one AVX-512 register
of float32; the batch is zero-padded to a multiple of 16), or as 16-bit spike masks ``[B/16, C, R]`` when
the input holds only 0 and 1 and no gradient is needed. A delay is then a shift by whole rows. The register
tiles (:mod:`spikescale.functional.delay_vector_ir`) compute 8 steps × 16 samples of one destination
channel (16 steps for one tap), sliding the tap window through registers; the parallel loops around them
(:mod:`spikescale.functional.delay_loops`) take entries in groups of 16 source channels so that the rows a
tile reads stay in the L1 cache, and transpose between ``[T, B, C]`` and the packed layout in registers.
This module holds the layout helpers and the autograd Functions: the convolution above, and
:func:`gauss_window`, which forms the W tap values of every synapse (normalised over all K gauss taps) in
one compiled pass instead of building the ``[O, I, Q, K]`` taps and gathering the window.

numba is optional: :func:`available` says whether it can be imported; without it
:mod:`spikescale.functional.delays` computes the same values through a dense kernel and the Fourier path.
Checked against :func:`spikescale.functional.delays.delay_conv_reference` (values, gradients, gradcheck).
"""

from __future__ import annotations

import importlib.util
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from .precision import full_precision

__all__ = ["available", "sparse_tap_conv", "spike_tap_lif", "gauss_window"]

LANES = 16  # batch elements per vector (one AVX-512 register of float32)
ROWS = 8  # rows (time steps) per register tile
SINGLE_TAP_ROWS = 16  # rows per tile of entries with one tap (integer delays)
MAX_CORRELATE_TAPS = 32  # taps per call of the value-gradient tile (its accumulators live on the stack)
GROUP = 16  # source channels per pass: the rows their entries read stay in the L1 cache
BLOCK = 8  # destination channels per task of the value gradient


def available() -> bool:
    """Whether numba can be imported (the kernels compile on first use)."""
    return importlib.util.find_spec("numba") is not None


def _kernels():
    """The compiled loops (:mod:`spikescale.functional.delay_loops`; numba compiles them on first use)."""
    from . import delay_loops

    return delay_loops


def _use_threads(work: int) -> None:
    """Set the threads of the next kernels from PyTorch's count (:mod:`spikescale.kernels.threads`; numba is
    optional, so it is imported here, with the kernels)."""
    from ..kernels.threads import use_threads

    use_threads(work)


def _round_up(steps: int) -> int:
    """Rows of a packed output: whole tiles of either height."""
    return -(-steps // SINGLE_TAP_ROWS) * SINGLE_TAP_ROWS


def _packed(x: Tensor, before: int, rows: int) -> Tensor:
    """``x [L, B, C]`` → ``[⌈B/16⌉, C, rows, 16]``, row ``before + t`` holding step ``t`` (zeros elsewhere)."""
    steps, batch, channels = x.shape
    out = x.new_empty(-(-batch // LANES), channels, rows, LANES)
    _kernels().pack(x.detach().contiguous().numpy(), before, out.numpy())
    return out


def _packed_spikes(x: Tensor, before: int, rows: int) -> Optional[Tensor]:
    """``x [L, B, C]`` as 16-bit masks ``[⌈B/16⌉, C, rows]`` (layout of :func:`_packed`), or ``None`` if a value
    of ``x`` is neither 0 nor 1."""
    steps, batch, channels = x.shape
    out = torch.zeros(-(-batch // LANES), channels, rows, dtype=torch.int16)
    others = _kernels().pack_bits(x.detach().contiguous().numpy(), before, out.numpy().view(np.uint16))
    return out if others == 0 else None


def _entries(first: Tensor, rows: int, origin: int, sign: int, unit: int = LANES) -> Tensor:
    """Offsets ``[C_dst, C_src·Q]`` of packed row ``c_src·rows + origin + sign·first[c_dst, c_src, q]``, in
    elements (``unit`` per row)."""
    channel = torch.arange(first.shape[1], device=first.device).view(1, -1, 1) * rows
    return ((channel + origin + sign * first) * unit).reshape(first.shape[0], -1).contiguous()


class _SparseTapConv(torch.autograd.Function):
    @staticmethod
    @full_precision
    def forward(ctx, x_ext, values, start, lead, out_steps, span):
        steps, batch, _ = x_ext.shape
        outputs, inputs, count, taps = values.shape
        out_rows = _round_up(out_steps)
        # Source row u ↔ input time u − span; the output at t reads row t + span − s − j.
        source = _packed(x_ext, span - lead, out_rows + span)
        offsets = _entries(start, source.shape[2], span, -1)
        flat_values = values.detach().reshape(outputs, inputs * count, taps).contiguous()
        out = x_ext.new_empty(out_steps, batch, outputs)
        _kernels().gather_accumulate(source.numpy(), offsets.numpy(), flat_values.numpy(), out.numpy())
        ctx.save_for_backward(source, values, start, offsets)
        ctx.shape = (steps, batch, lead, out_steps, span)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        source, values, start, offsets = ctx.saved_tensors
        steps, batch, lead, out_steps, span = ctx.shape
        outputs, inputs, count, taps = values.shape
        in_rows, out_rows = _round_up(steps), _round_up(out_steps)
        # Row r of the packed gradient ↔ output step r − lead; dL/dx_ext[r] reads rows r + s + j.
        grad = _packed(grad_y, lead, max(in_rows + span, lead + out_rows))
        grad_x = grad_values = None
        if ctx.needs_input_grad[1]:
            grad_values = values.new_empty(outputs, inputs * count, taps)
            summed_rows = -(-out_steps // ROWS) * ROWS  # the value gradient's tiles: no whole tile of zeros
            _kernels().correlate_values(grad.numpy(), lead, summed_rows, source.numpy(), offsets.numpy(),
                                        grad_values.numpy())
            grad_values = grad_values.view(values.shape)
        if ctx.needs_input_grad[0]:
            # Taps reversed so that tap j' = W − 1 − j reads one row back from tap j' − 1, as in the forward pass.
            transposed = values.detach().permute(1, 0, 2, 3).flip(-1).reshape(inputs, outputs * count, taps)
            offsets_x = _entries(start.permute(1, 0, 2), grad.shape[2], taps - 1, 1)
            grad_x = grad.new_empty(steps, batch, inputs)
            _kernels().gather_accumulate(grad.numpy(), offsets_x.numpy(), transposed.contiguous().numpy(),
                                         grad_x.numpy())
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
    _use_threads(x_ext.numel() * values.shape[0])
    span = _span(start, values.shape[-1])
    values = values.to(x_ext.dtype)
    if not (torch.is_grad_enabled() and (x_ext.requires_grad or values.requires_grad)):
        spikes = _packed_spikes(x_ext, span - lead, _round_up(out_steps) + span)
        if spikes is not None:
            return _spike_tap_conv(spikes, values, start, out_steps, span, x_ext.shape[1])
    return _SparseTapConv.apply(x_ext, values, start.contiguous(), lead, out_steps, span)


def _span(start: Tensor, taps: int) -> int:
    """Rows of history the windows reach back: the largest first delay plus ``W − 1``."""
    return (int(start.max().item()) if start.numel() else 0) + taps - 1


def _spike_tap_conv(spikes: Tensor, values: Tensor, start: Tensor, out_steps: int, span: int, batch: int,
                    soma: Optional[tuple] = None) -> Tensor:
    """The forward pass of :class:`_SparseTapConv` on a spike source packed by :func:`_packed_spikes`; with
    ``soma = (gain, bias, coefficients, u, s)`` each tile then runs through the soma (:func:`spike_tap_lif`;
    ``u`` and ``s`` are updated in place) and the result is its spikes."""
    outputs, inputs, count, taps = values.shape
    offsets = _entries(start, spikes.shape[2], span, -1, unit=1)
    flat_values = values.reshape(outputs, inputs * count, taps).contiguous()
    out = values.new_empty(out_steps, batch, outputs)
    operands = (spikes.numpy().view(np.uint16), offsets.numpy(), flat_values.numpy())
    if soma is None:
        _kernels().gather_accumulate(*operands, out.numpy())
    else:
        gain, bias, (beta, scale, theta, soft, consts), u, s = soma
        _kernels().gather_lif(*operands, gain.numpy(), bias.numpy(), scale, beta, theta, soft, consts, u.numpy(),
                              s.numpy(), out.numpy())
    return out


def spike_tap_lif(x_ext: Tensor, weight: Tensor, start: Tensor, lead: int, out_steps: int, gain: Tensor, bias: Tensor,
                  soma: tuple, u0: Tensor, s0: Tensor) -> Optional[tuple[Tensor, Tensor, Tensor]]:
    r"""Integer delays (:func:`sparse_tap_conv` with one tap, no gradients) and a LIF soma in one compiled pass.

    Per tile of 16 steps the gather's sums :math:`y` stay in the cache while the soma runs over them on
    :math:`I = \mathrm{gain} \odot y + \mathrm{bias}`. ``soma`` holds the per-channel coefficients of
    :func:`spikescale.kernels.numba_cpu.soma_coefficients`; ``u0``, ``s0`` ``[B, O]`` the soma state before the
    first output step. Returns ``(spikes [T_out, B, O], u, s)`` after the last step, or ``None`` if a value of
    ``x_ext`` is neither 0 nor 1 (the vector path then applies).
    """
    _use_threads(x_ext.numel() * weight.shape[0])
    span = _span(start, 1)
    spikes = _packed_spikes(x_ext, span - lead, _round_up(out_steps) + span)
    if spikes is None:
        return None
    u, s = (t.detach().to(x_ext.dtype).contiguous().clone() for t in (u0, s0))
    values = weight.detach().to(x_ext.dtype).unsqueeze(-1)
    out = _spike_tap_conv(spikes, values, start, out_steps, span, x_ext.shape[1], (gain, bias, soma, u, s))
    return out, u, s


class _GaussWindow(torch.autograd.Function):
    @staticmethod
    @full_precision
    def forward(ctx, weight, positions, start, taps, width, max_delay, floor, eps):
        # one value per synapse: δ = ⌊K/2⌋ − p, the window's first delay, w
        per_synapse = ((max_delay // 2) - positions, start, weight)
        centres, start, weight_1d = (t.detach().contiguous().view(-1) for t in per_synapse)
        gauss = weight.new_empty(weight.numel(), taps)
        values = torch.empty_like(gauss)
        moment = torch.empty_like(weight_1d)
        _kernels().gauss_window(centres.numpy(), start.numpy(), weight_1d.numpy(), width, floor, max_delay, eps,
                                gauss.numpy(), values.numpy(), moment.numpy())
        ctx.save_for_backward(weight_1d, centres, start, gauss, moment)
        ctx.width = width
        return values.view(*weight.shape, taps)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values):
        weight_1d, centres, start, gauss, moment = ctx.saved_tensors
        grad_weight, grad_positions = torch.empty_like(weight_1d), torch.empty_like(weight_1d)
        _kernels().gauss_window_backward(
            grad_values.contiguous().view(gauss.shape).numpy(), gauss.numpy(), start.numpy(), centres.numpy(),
            weight_1d.numpy(), moment.numpy(), ctx.width, grad_weight.numpy(), grad_positions.numpy(),
        )
        shape = grad_values.shape[:-1]
        return grad_weight.view(shape), grad_positions.view(shape), None, None, None, None, None, None


def gauss_window(weight: Tensor, positions: Tensor, start: Tensor, taps: int, width: float, max_delay: int,
                 eps: float, floor: float) -> Tensor:
    r"""Tap values ``[O, I, Q, W]`` of synapses ``[O, I, Q]``: :math:`w\,\hat g_d` for the W delays
    ``d = start … start + W − 1``, with :math:`\hat g_d = e_d / (\sum_{d'<K} e_{d'} + \epsilon)`,
    :math:`e_d = \exp(-(d - \delta)^2 / 2 s^2)`, :math:`\delta = \lfloor K/2 \rfloor - p`, ``s = width`` and
    :math:`e_d = 0` where the exponent is at most ``floor`` (as :func:`spikescale.functional.delays.interpolation_taps`
    followed by a gather of the window), in one pass per synapse. Gradients flow to ``weight`` and
    ``positions``, with :math:`\partial \hat g_d / \partial \delta = \hat g_d (u_d - \sum_{d'} \hat g_{d'} u_{d'})`,
    :math:`u_d = (d - \delta)/s^2`::

        dL/dw = Σ_j ḡ_j ĝ_j,   dL/dp = −(w / s²) (Σ_j ḡ_j ĝ_j (d_j − δ) − dL/dw · Σ_d ĝ_d (d − δ))
    """
    _use_threads(weight.numel() * max_delay)
    return _GaussWindow.apply(weight, positions, start, taps, width, max_delay, floor, eps)
