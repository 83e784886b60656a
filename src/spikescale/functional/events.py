r"""Event-driven input projections: the dense products of the layers, computed from the input's events.

Spike inputs are mostly zeros (speech spike data is 1–5 % dense), so the projection
:math:`I_t = W x_t + b` costs far less as a sum over the non-zero entries :math:`(t, b, m, v)`:

.. math:: I_t[b] = b + \sum_{m:\, x_t[b, m] = v \ne 0} v\, W_{:, m}, \qquad
          \frac{\partial L}{\partial W_{:, m}} = \sum_{(t, b):\, x_t[b, m] = v \ne 0} v\,
          \frac{\partial L}{\partial I_t[b]}

(the weight gradient visits the rows in order, accumulating per thread). The results equal the dense path
up to floating-point rounding; the input gradient, when the input needs one, is the dense product
:math:`\partial L/\partial x = (\partial L/\partial I) W`.

* :func:`event_linear` — a weight ``[O, M]`` (``LIFDense``; ``DHRecurrent``'s feed-forward input with
  its masked ``[N·D, M]`` weight).
* :func:`event_dendritic_sum` — ``DHDense``: the masked branch projection fused with the dendritic sum of
  :func:`~spikescale.functional.dh_lif.dendritic_sum`; the ``[T, B, N, D]`` branch inputs are never
  stored (the backward pass recomputes them from the events, chunk by chunk).

An event adds a whole weight column, zeros of the mask included: a contiguous multiply-add that
compiles to vector instructions. Visiting only the connected (input, branch) pairs does D times fewer
operations but one scattered update at a time, and measured about 3 times slower on a 2-core AVX-512
CPU for D = 8 (224 k events: 24 ms against 8.4 ms, one thread).

These run on a backend that provides ``"event_projection"`` (see :mod:`spikescale.kernels`); their
references are the dense operations (``F.linear`` and :func:`dendritic_sum`), with which the tests compare
values and gradients.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..kernels import select
from .precision import full_precision

__all__ = [
    "SparseWeight",
    "find_events",
    "event_linear",
    "event_dendritic_sum",
    "events_available",
]


class SparseWeight:
    """Connected entries of a masked weight, grouped by input (the CSC pattern of the ``[N·D, M]`` matrix).

    Built once from a mask ``[N, D, M]`` (boolean). For entry ``q`` of input ``m`` (``q`` in
    ``colptr[m]:colptr[m+1]``): ``rows[q] = n·D + d`` is the branch input it feeds (``rows_branch_major[q]
    = d·N + n`` in the ``[D, N]`` order of the fused kernels) and ``source[q]`` its flat index in the
    weight ``[N, D, M]``, so ``weight.reshape(-1)[source]`` lists the connected values.
    """

    def __init__(self, mask: Tensor) -> None:
        neurons, branches, inputs = mask.shape
        width = inputs
        m, n, d = mask.cpu().permute(2, 0, 1).nonzero(as_tuple=True)  # sorted by input, then neuron, branch
        self.inputs, self.outputs = inputs, neurons * branches
        self.colptr = np.zeros(inputs + 1, np.int64)
        np.cumsum(np.bincount(m.numpy(), minlength=inputs), out=self.colptr[1:])
        self.rows = (n * branches + d).to(torch.int32).numpy()
        self.rows_branch_major = (d * neurons + n).to(torch.int32).numpy()  # the same entries, [D, N] order
        self.source = n * branches * width + d * width + m

    def dense(self, w_values: Tensor) -> Tensor:
        """The masked weight as a dense ``[N·D, M]`` matrix (for input gradients)."""
        dense = w_values.new_zeros(self.outputs, self.inputs)
        dense.view(-1)[self.rows.astype(np.int64) * self.inputs + _input_of(self.colptr)] = w_values
        return dense


def _input_of(colptr: np.ndarray) -> np.ndarray:
    """Input index of every entry of a CSC pattern."""
    return np.repeat(np.arange(colptr.size - 1), np.diff(colptr))


def events_available(x: Tensor) -> bool:
    """Whether an event-driven path can run for ``x`` (a backend providing it, a float dtype)."""
    return x.dtype in (torch.float32, torch.float64) and select("event_projection", x.device) is not None


def find_events(x: Tensor, max_density: float = 1.0):
    """Events of ``x [..., M]`` (rows = all leading dims), or ``None`` if denser than ``max_density``.

    Counting the non-zero entries is one pass over ``x``; they are gathered only when the event path
    will be taken.
    """
    kernel = select("event_projection", x.device)
    if kernel is None:
        raise ValueError(f"no event-driven backend for {x.device.type} tensors; see spikescale.kernels")
    with torch.no_grad():
        return kernel.events_from_dense(x.reshape(-1, x.shape[-1]), max_density)


class _EventLinear(torch.autograd.Function):
    @staticmethod
    @full_precision
    def forward(ctx, x, weight, bias, events):
        kernel = select("event_projection", x.device)
        out = kernel.event_linear_forward(events, weight, bias)
        ctx.save_for_backward(weight)
        ctx.events, ctx.kernel, ctx.x_shape = events, kernel, x.shape
        return out.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @full_precision
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        grad = grad_out.reshape(-1, weight.shape[0])
        grad_x = (grad @ weight).reshape(ctx.x_shape) if ctx.needs_input_grad[0] else None
        grad_w = ctx.kernel.event_linear_weight_grad(ctx.events, grad) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


def event_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], events) -> Tensor:
    """``F.linear(x, weight, bias)`` from ``events = find_events(x)``; ``x [..., M]``, ``weight [O, M]``."""
    return _EventLinear.apply(x, weight, bias, events)


class _EventDendriticSum(torch.autograd.Function):
    @staticmethod
    @full_precision
    def forward(ctx, x, w_values, bias, alpha, i0, events, structure):
        kernel = select("event_projection", x.device)
        total, i_last, checkpoints = kernel.event_dendrite_forward(
            events, x.shape[0], structure, w_values, bias, alpha, i0
        )
        ctx.save_for_backward(w_values, bias, alpha, checkpoints)
        ctx.events, ctx.structure, ctx.kernel, ctx.x_shape = events, structure, kernel, x.shape
        return total, i_last

    @staticmethod
    @full_precision
    def backward(ctx, grad_total, grad_i_last):
        w_values, bias, alpha, checkpoints = ctx.saved_tensors
        structure = ctx.structure
        grad_w, grad_b, grad_alpha, grad_i0, grad_current = ctx.kernel.event_dendrite_backward(
            ctx.events, structure, w_values, bias, alpha, checkpoints, grad_total, grad_i_last,
            need_grad_current=ctx.needs_input_grad[0],
        )
        grad_x = None
        if ctx.needs_input_grad[0]:
            steps, batch = ctx.x_shape[:2]
            grad_x = (grad_current.reshape(steps * batch, -1) @ structure.dense(w_values)).reshape(ctx.x_shape)
        grad_b = grad_b.reshape(bias.shape) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, grad_alpha.reshape(alpha.shape), grad_i0, None, None


def event_dendritic_sum(
    x: Tensor, weight: Tensor, bias: Optional[Tensor], alpha: Tensor, i0: Tensor, events, structure
) -> tuple[Tensor, Tensor]:
    """DH-SFNN input stage from events: ``(J [T, B, N], i_T [B, N, D])``.

    Equals ``dendritic_sum(F.linear(x, (weight * mask).reshape(-1, M), bias).reshape(T, B, N, D), alpha, i0)``
    for ``x [T, B, M]``, ``weight [N, D, M]``, ``bias [N, D]`` (or ``None``), ``alpha [N, D]``,
    ``i0 [B, N, D]``, with ``structure`` the :class:`SparseWeight` of the mask.
    """
    w_values = weight.reshape(-1)[structure.source]
    if bias is None:
        bias = w_values.new_zeros(alpha.shape)
    return _EventDendriticSum.apply(x, w_values, bias, alpha, i0, events, structure)
