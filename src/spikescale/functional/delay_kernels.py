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
of float32; the batch is zero-padded to a multiple of 16). A delay is then a shift by whole 64-byte rows,
and the kernel computes a tile of 8 steps × 16 samples of one destination channel in eight vector
registers, adding ``value × row`` (one broadcast, eight fused multiply-adds with memory operands) for each
entry in turn. Entries are taken in groups of 16 source channels so that the rows a tile reads stay in the
L1 cache. The tile is emitted as LLVM vector code (:func:`_tile_intrinsic`); LLVM maps it to the host's
vector width. Packing and unpacking are parallel numba loops.

numba is optional: :func:`available` says whether it can be imported; without it
:mod:`spikescale.functional.delays` computes the same values through a dense kernel and the Fourier path.
Checked against :func:`spikescale.functional.delays.delay_conv_reference` (values, gradients, gradcheck).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from .delay_vector_ir import LANES, MAX_CORRELATE_TAPS, ROWS, SINGLE_TAP_ROWS, intrinsics
from .precision import full_precision

__all__ = ["available", "sparse_tap_conv"]

GROUP = 16  # source channels per pass: the rows their entries read stay in the L1 cache
BLOCK = 8  # destination channels per task of the value gradient


def available() -> bool:
    """Whether numba can be imported (the kernels compile on first use)."""
    return importlib.util.find_spec("numba") is not None


@lru_cache(maxsize=None)
def _kernels():
    """Compile the kernels: pack, pack_bits, unpack, gather_accumulate, correlate (numba, parallel)."""
    import numpy as np
    from numba import njit, prange

    tile, single_tap_tile, correlate_entry, transpose = intrinsics()
    options = dict(parallel=True, fastmath=True, boundscheck=False, nogil=True)

    @njit(**options)
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

    @njit(**options)
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

    @njit(nogil=True, fastmath=True, boundscheck=False)
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

    @njit(**options)
    def gather_accumulate(src, offsets, values, out):  # pragma: no cover - compiled
        # out[t, 16n + l, c] = Σ_{e,j} values[c, e, j] · src[n] (flat)[offsets[c, e] + u (t − j) (+ l)], rows
        # of u = 16 elements (float source [B/16, C, R, 16]) or of one 16-bit mask (spike source [B/16, C, R]).
        # Each task computes all channels of one tile of rows and samples, then transposes it into out.
        steps, batch, channels = out.shape
        unit = LANES if src.ndim == 4 else 1
        panel = src.shape[1] * src.shape[2] * unit
        entries, taps = values.shape[1], values.shape[2]
        block = GROUP * (entries // src.shape[1])  # the entries of GROUP source channels
        flat_src = src.reshape(-1)
        height = SINGLE_TAP_ROWS if taps == 1 else ROWS
        tiles = -(-steps // height)
        for task in prange(src.shape[0] * tiles):  # sample-group-major: neighbouring tiles share source rows
            n = task // tiles
            t0 = (task - n * tiles) * height
            base = n * panel + t0 * unit
            tile_rows = np.empty((channels, height, LANES), values.dtype)
            flat_tile = tile_rows.reshape(-1)
            for first in range(0, entries, block):
                last = min(entries, first + block)
                for c in range(channels):
                    at = c * height * LANES
                    if taps == 1:
                        single_tap_tile(flat_src, base, offsets, values, taps, first, last, c, flat_tile, at, first == 0)
                    else:
                        tile(flat_src, base, offsets, values, taps, first, last, c, flat_tile, at, first == 0)
            store_tile(tile_rows, t0, n, out)

    @njit(**options)
    def correlate(grad, shift, rows, src, offsets, out):  # pragma: no cover - compiled
        # out[c, e, j] = Σ_n Σ_{t<rows, l} grad[n, c, shift + t, l] · src[n] (flat)[offsets[c, e] + 16 (t − j) + l]
        groups, channels, grad_rows, _ = grad.shape
        entries, taps = out.shape[1], out.shape[2]
        panel = src.shape[1] * src.shape[2] * LANES
        block = GROUP * (entries // src.shape[1])
        flat_grad, flat_src, flat_out = grad.reshape(-1), src.reshape(-1), out.reshape(-1)
        blocks = -(-channels // BLOCK)
        for task in prange(blocks):  # BLOCK destination channels share the source rows of each group
            for first in range(0, entries, block):
                for c in range(task * BLOCK, min(channels, task * BLOCK + BLOCK)):
                    grad_base = (c * grad_rows + shift) * LANES
                    for e in range(first, min(entries, first + block)):
                        for j0 in range(0, taps, MAX_CORRELATE_TAPS):
                            correlate_entry(flat_grad, grad_base, channels * grad_rows * LANES,
                                            flat_src, offsets[c, e] - j0 * LANES, panel, groups, rows // ROWS,
                                            min(MAX_CORRELATE_TAPS, taps - j0), flat_out, (c * entries + e) * taps + j0)

    return SimpleNamespace(pack=pack, pack_bits=pack_bits, gather_accumulate=gather_accumulate,
                           correlate=correlate)


def _use_torch_threads() -> None:
    """Run the kernels on as many threads as torch uses (numba keeps its own pool)."""
    import numba

    numba.set_num_threads(min(numba.config.NUMBA_NUM_THREADS, max(1, torch.get_num_threads())))


def _round_up(steps: int) -> int:
    """Rows of a packed output: whole tiles of either height."""
    return -(-steps // SINGLE_TAP_ROWS) * SINGLE_TAP_ROWS


def _packed(x: Tensor, before: int, rows: int) -> Tensor:
    """``x [L, B, C]`` → ``[⌈B/16⌉, C, rows, 16]`` with row ``before + t`` holding step ``t`` (zeros elsewhere)."""
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
            _kernels().correlate(grad.numpy(), lead, out_rows, source.numpy(), offsets.numpy(), grad_values.numpy())
            grad_values = grad_values.view(values.shape)
        if ctx.needs_input_grad[0]:
            # Taps reversed so that tap j' = W − 1 − j reads one row back from tap j' − 1, as in the forward pass.
            transposed = values.detach().permute(1, 0, 2, 3).flip(-1).reshape(inputs, outputs * count, taps)
            offsets_x = _entries(start.permute(1, 0, 2), grad.shape[2], taps - 1, 1)
            grad_x = grad.new_empty(steps, batch, inputs)
            _kernels().gather_accumulate(grad.numpy(), offsets_x.numpy(), transposed.contiguous().numpy(), grad_x.numpy())
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
    if not (torch.is_grad_enabled() and (x_ext.requires_grad or values.requires_grad)):
        spikes = _packed_spikes(x_ext, span - lead, _round_up(out_steps) + span)
        if spikes is not None:
            return _spike_tap_conv(spikes, values, start, out_steps, span, x_ext.shape[1])
    return _SparseTapConv.apply(x_ext, values, start.contiguous(), lead, out_steps, span)


def _spike_tap_conv(spikes: Tensor, values: Tensor, start: Tensor, out_steps: int, span: int, batch: int) -> Tensor:
    """The forward pass of :class:`_SparseTapConv` on a spike source packed by :func:`_packed_spikes`."""
    outputs, inputs, count, taps = values.shape
    offsets = _entries(start, spikes.shape[2], span, -1, unit=1)
    flat_values = values.reshape(outputs, inputs * count, taps).contiguous()
    out = values.new_empty(out_steps, batch, outputs)
    _kernels().gather_accumulate(spikes.numpy().view(np.uint16), offsets.numpy(), flat_values.numpy(), out.numpy())
    return out
