r"""Sparse backward pass of a LIF layer: gradients from near-threshold entries only, exactly.

The idea is that of sparse spiking gradient descent (Perez-Nieves & Goodman, NeurIPS 2021): with a
surrogate of bounded support (``"rect"``, or ``"mg"`` with ``truncate``), a neuron whose membrane is
not near threshold at step :math:`t` injects no gradient there. Here it is applied without
approximation. For the layer :math:`I_t = W x_t + b` followed by the LIF soma with a shared factor
:math:`\beta` and a soft (or no) reset, BPTT gives

.. math::
    g^u_t = \delta_t + \beta\, g^u_{t+1}, \qquad
    \delta_t = \hat g^s_t\, \sigma'(u_t - \vartheta) \;(+\, \partial L/\partial u_T \text{ at } t = T),

where :math:`\delta_t` is zero wherever :math:`|u_t - \vartheta|` is outside the surrogate's support.
Unrolling the recurrence, with :math:`\Delta_t = c\,\delta_t` (:math:`c = 1-\beta` or 1):

.. math::
    \frac{\partial L}{\partial W} = c \sum_t g^u_t x_t^\top = \sum_k \Delta_k\, \hat x_k^\top,
    \quad \hat x_k = \sum_{t \le k} \beta^{k-t} x_t, \qquad
    \frac{\partial L}{\partial x_t} = y_t, \quad y_t = W^\top \Delta_t + \beta\, y_{t+1},

so the two large products visit only the active entries of :math:`\Delta` (plus one scan over the
input for :math:`\hat x` and one reverse scan for :math:`y`). Bias, :math:`\beta`, :math:`\vartheta`
and initial-state gradients come from the dense :math:`g^u` of the soma loop, which is cheap. The
result equals the dense backward with the same surrogate (tested); only the cost changes, and it falls
with the fraction of active entries. When the input is event-sparse and that is cheaper, the weight
gradient is taken from the input's events instead (also exact).

Limits (each raises ``ValueError``): one shared :math:`\beta` (the traces use a single decay), reset
``"soft"`` or ``"none"`` (a hard reset's carry :math:`\beta(1 - s_t)` differs per neuron), a surrogate
with finite ``support``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..kernels import select
from .lif import LIFState, ThresholdLike, _as_threshold, check_reset, kept_current, soma_backward, soma_forward
from .scan import linear_scan
from .surrogate import SurrogateLike, get_surrogate
from .precision import full_precision

__all__ = ["linear_lif_sparse_grad", "check_sparse_backward"]


def check_sparse_backward(surrogate, reset: str, beta: Optional[Tensor] = None) -> None:
    """Raise ``ValueError`` unless the sparse backward pass applies (see the module docstring)."""
    if not math.isfinite(surrogate.support):
        raise ValueError(
            f"the sparse backward pass needs a surrogate with bounded support, got {surrogate.spec()}; "
            "use 'rect' or {'name': 'mg', 'truncate': 1.0}"
        )
    if check_reset(reset) == "hard":
        raise ValueError("the sparse backward pass needs reset 'soft' or 'none', got 'hard'")
    if beta is not None and beta.numel() > 1 and not bool((beta == beta.reshape(-1)[0]).all()):
        raise ValueError(
            "the sparse backward pass needs one shared beta (e.g. beta_init=0.9, learn_beta=False); "
            f"got beta from {beta.min().item():.4g} to {beta.max().item():.4g}"
        )


class _LinearLIFSparseGrad(torch.autograd.Function):
    @staticmethod
    @full_precision
    def forward(ctx, x, weight, bias, beta, threshold, u0, s0, events, surrogate, reset, detach_reset, scale_input):
        events_kernel = select("event_projection", x.device) if events is not None else None
        if events_kernel is not None:
            current = events_kernel.event_linear_forward(events, weight, bias).reshape(*x.shape[:-1], -1)
        else:
            current = F.linear(x, weight, bias)
        spikes, u_all, kept, kernel = soma_forward(current, beta, threshold, u0, s0, surrogate, reset, scale_input)
        kept_input = kept_current(current, ctx.needs_input_grad[3], scale_input)
        ctx.save_for_backward(x, weight, kept_input, beta, threshold, u0, s0, u_all, kept)
        ctx.config = (surrogate, reset, detach_reset, scale_input, kernel)
        ctx.events, ctx.has_bias = (events if events_kernel is not None else None), bias is not None
        return spikes, u_all[-1].clone()

    @staticmethod
    @full_precision
    def backward(ctx, grad_spikes, grad_u_last):
        x, weight, current, beta, threshold, u0, s0, u_all, kept = ctx.saved_tensors
        grads = soma_backward(
            grad_spikes, grad_u_last, current, beta, threshold, u0, s0, u_all, kept, *ctx.config,
            needs=(ctx.needs_input_grad[3], ctx.needs_input_grad[4]), want_direct=True,
        )
        decay = beta.reshape(-1)[0].to(x.dtype)
        kernel = select("sparse_backward", x.device) if x.dtype in (torch.float32, torch.float64) else None
        if kernel is not None:
            grad_x, grad_w = _sparse_products(kernel, grads, x, weight, decay, ctx.events, ctx.needs_input_grad)
        else:
            grad_x, grad_w = _dense_products(grads, x, weight, decay, ctx.needs_input_grad)
        grad_b = grads.current.reshape(-1, weight.shape[0]).sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return (grad_x, grad_w, grad_b, grads.beta, grads.threshold, grads.u0, grads.s0) + (None,) * 5


def _sparse_products(kernel, grads, x, weight, decay, events, needs):
    """``(dL/dx, dL/dW)`` from the active entries of Δ (compiled event kernels)."""
    steps, batch, inputs = x.shape
    neurons = weight.shape[0]
    rows = steps * batch
    active = kernel.events_from_dense(grads.direct.reshape(rows, neurons), 1.0)
    grad_x = grad_w = None
    if needs[1]:
        if events is not None and events.count * neurons <= active.count * inputs + rows * inputs:
            grad_w = kernel.event_linear_weight_grad(events, grads.current.reshape(rows, neurons))
        else:
            zeros = x.new_zeros(batch, inputs)
            trace = kernel.scan_forward(x.detach(), decay.expand(inputs), zeros, False)
            grad_w = kernel.event_linear_weight_grad(active, trace.reshape(rows, inputs)).t()
    if needs[0]:
        injected = kernel.event_linear_forward(active, weight.t(), None).reshape(steps, batch, inputs)
        grad_x = kernel.scan_forward(injected, decay.expand(inputs), x.new_zeros(batch, inputs), False, reverse=True)
    return grad_x, grad_w


def _dense_products(grads, x, weight, decay, needs):
    """The same products with dense PyTorch ops (backends without sparse kernels; same result)."""
    steps, batch, inputs = x.shape
    delta = grads.direct.reshape(steps * batch, -1)
    decays = decay.expand(inputs)
    grad_x = grad_w = None
    if needs[1]:
        trace = linear_scan(x.detach(), decays)
        grad_w = delta.t() @ trace.reshape(steps * batch, inputs)
    if needs[0]:
        grad_x = linear_scan((delta @ weight).reshape(steps, batch, inputs), decays, reverse=True)
    return grad_x, grad_w


def linear_lif_sparse_grad(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    state: LIFState,
    beta: Tensor,
    threshold: ThresholdLike = 1.0,
    *,
    events=None,
    surrogate: SurrogateLike = "rect",
    reset: str = "soft",
    detach_reset: bool = False,
    scale_input: bool = True,
) -> tuple[Tensor, LIFState]:
    """``lif_sequence(F.linear(x, weight, bias), state, beta, ...)`` with the sparse backward pass.

    Args:
        x: ``[T, B, M]`` input; ``weight [N, M]``; ``bias [N]`` or ``None``.
        state, beta, threshold, surrogate, reset, detach_reset, scale_input: as
            :func:`~spikescale.functional.lif.lif_sequence`; ``beta`` must hold one shared value.
        events: the input's events (:func:`~spikescale.functional.events.find_events`) for an
            event-driven forward projection, or ``None`` for the dense product.

    Returns:
        ``(spikes [T, B, N], final LIFState)``.
    """
    surrogate = get_surrogate(surrogate)
    check_sparse_backward(surrogate, reset, beta)
    theta = _as_threshold(threshold, x)
    spikes, u_last = _LinearLIFSparseGrad.apply(
        x, weight, bias, beta, theta, state.u, state.s, events, surrogate, reset, detach_reset, scale_input
    )
    return spikes, LIFState(u_last, spikes[-1].clone())
