r"""DH-LIF: LIF soma driven by D leaky dendritic branches (Zheng et al., Nat. Commun. 2024).

Per neuron :math:`n` and branch :math:`d`, with branch input :math:`I_t[n, d]` (spec dh-snn §2.2):

.. math::
    i_t[n,d] &= \alpha[n,d]\, i_{t-1}[n,d] + (1 - \alpha[n,d])\, I_t[n,d]
        \qquad\text{(dendritic current, never reset)} \\
    J_t[n] &= \textstyle\sum_d i_t[n,d] \\
    u_t[n] &= \text{LIF soma of } J_t \text{ (see :mod:`spikescale.functional.lif`)}

Feed-forward layers (DH-SFNN) get :math:`I` for all steps from one projection, so
:func:`dh_lif_sequence` is the dendritic sum :func:`dendritic_sum` (linear, never reset: it returns
:math:`J` without materialising the ``[T, B, N, D]`` branch currents) followed by the soma Function. Recurrent layers
(DH-SRNN) add :math:`W_{rec}\, s_{t-1}` to the branch input at every step; :func:`dh_lif_recurrent_sequence`
is one autograd Function whose backward is a hand-written reverse-time loop:

.. math::
    \bar g^s_t &= \partial L/\partial s_t + W_{rec}^\top g^I_{t+1} \\
    g^u_t &= \text{soma backward step} \\
    g^i_t &= \alpha\, g^i_{t+1} + c\, g^u_t, \qquad g^I_t = (1 - \alpha)\, g^i_t

and :math:`\partial L/\partial W_{rec} = \sum_t g^I_t s_{t-1}^\top`,
:math:`\partial L/\partial \alpha = \sum_t g^i_t (i_{t-1} - I_t)` computed after the loop.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .lif import (
    LIFState,
    ThresholdLike,
    _as_threshold,
    _drive,
    _initial_state_grads,
    _reduce_to,
    check_reset,
    kernel_for,
    lif_sequence,
    pack_spikes,
    lif_step,
    soma_backward_step,
    soma_parameter_grads,
    soma_update,
)
from .scan import linear_scan, linear_step
from .surrogate import SurrogateLike, get_surrogate
from .precision import full_precision

__all__ = [
    "DHLIFState",
    "dh_lif_step",
    "dh_lif_sequence",
    "dh_lif_sequence_reference",
    "dh_lif_recurrent_step",
    "dh_lif_recurrent_sequence",
    "dh_lif_recurrent_sequence_reference",
    "dendritic_sum",
]


class DHLIFState(NamedTuple):
    """DH-LIF state: dendritic currents ``i [B, N, D]``, membrane ``u [B, N]``, previous spike ``s [B, N]``."""

    i: Tensor
    u: Tensor
    s: Tensor


def dh_lif_step(
    current: Tensor,
    state: DHLIFState,
    alpha: Tensor,
    beta: Tensor,
    threshold: ThresholdLike = 1.0,
    **soma_kwargs,
) -> tuple[Tensor, DHLIFState]:
    """One DH-LIF step with autograd: branch input ``current [B, N, D]`` → ``(s_t [B, N], state)``.

    ``soma_kwargs`` are those of :func:`~spikescale.functional.lif.lif_step` (surrogate, reset, ...).
    """
    i = linear_step(state.i, current, alpha)
    s, soma = lif_step(i.sum(-1), LIFState(state.u, state.s), beta, threshold, **soma_kwargs)
    return s, DHLIFState(i, soma.u, soma.s)


def dh_lif_sequence_reference(current, state, alpha, beta, threshold=1.0, **soma_kwargs):
    """Reference: :func:`dh_lif_step` in a Python loop under autograd."""
    spikes = []
    for t in range(current.shape[0]):
        s, state = dh_lif_step(current[t], state, alpha, beta, threshold, **soma_kwargs)
        spikes.append(s)
    return torch.stack(spikes), state


class _DendriticSum(torch.autograd.Function):
    """``J_t = Σ_d i_t[·, d]`` with ``i_t = α i_{t-1} + (1-α) I_t``; keeps only ``I`` for the backward."""

    @staticmethod
    @full_precision
    def forward(ctx, current, alpha, i0):
        kernel = kernel_for("dendritic_sum", current)
        if kernel is not None:
            total, i_last = kernel.dendrite_forward(current, alpha, i0)
        else:
            total = current.new_empty(current.shape[:-1])
            i = i0
            for t in range(current.shape[0]):
                i = linear_step(i, current[t], alpha)
                torch.sum(i, -1, out=total[t])
            i_last = i.clone()
        ctx.save_for_backward(current, alpha, i0)
        ctx.kernel = kernel
        return total, i_last

    @staticmethod
    @full_precision
    def backward(ctx, grad_total, grad_i_last):
        current, alpha, i0 = ctx.saved_tensors
        if ctx.kernel is not None:
            grad_current, g_alpha, grad_i0 = ctx.kernel.dendrite_backward(grad_total, grad_i_last, current, alpha, i0)
            return grad_current, g_alpha.sum(0).to(alpha.dtype), grad_i0
        # Recompute the branch currents into the buffer that then receives dL/dI, step by step backwards:
        # at step t, i_{t-1} (slot t-1) is still intact while slot t is overwritten with dL/dI_t.
        buffer = linear_scan((1.0 - alpha) * current, alpha, i0)
        one_minus_alpha = 1.0 - alpha
        last = current.shape[0] - 1
        g = grad_i_last + grad_total[last].unsqueeze(-1)  # dL/di_T: final state and J_T
        grad_alpha = torch.zeros_like(current[0])
        for t in range(last, -1, -1):
            if t < last:
                g = torch.addcmul(grad_total[t].unsqueeze(-1), alpha, g)
            i_prev = buffer[t - 1] if t > 0 else i0
            grad_alpha.addcmul_(g, i_prev - current[t])
            torch.mul(one_minus_alpha, g, out=buffer[t])
        return buffer, grad_alpha.sum(0), alpha * g


def dendritic_sum(current: Tensor, alpha: Tensor, i0: Tensor) -> tuple[Tensor, Tensor]:
    """Sum over branches of the dendritic currents: ``current [T, B, N, D]`` → ``(J [T, B, N], i_T [B, N, D])``."""
    return _DendriticSum.apply(current, alpha, i0)


def dh_lif_sequence(
    current: Tensor,
    state: DHLIFState,
    alpha: Tensor,
    beta: Tensor,
    threshold: ThresholdLike = 1.0,
    **soma_kwargs,
) -> tuple[Tensor, DHLIFState]:
    """Multi-step feed-forward DH-LIF.

    Args:
        current: ``[T, B, N, D]`` branch inputs.
        state: initial :class:`DHLIFState`.
        alpha: ``[N, D]`` dendritic factors; beta: ``[N]`` soma factors (both in (0, 1)).
        threshold, soma_kwargs: as :func:`~spikescale.functional.lif.lif_sequence`.

    Returns:
        ``(spikes [T, B, N], final DHLIFState)``.
    """
    total, i_last = dendritic_sum(current, alpha, state.i)
    spikes, soma = lif_sequence(total, LIFState(state.u, state.s), beta, threshold, **soma_kwargs)
    return spikes, DHLIFState(i_last, soma.u, soma.s)


def _recurrent_input(feedforward_t: Tensor, s: Tensor, w_rec: Tensor) -> Tensor:
    """Branch input ``I_t = I^ff_t + W_rec s_{t-1}`` as ``[B, N, D]``."""
    batch, neurons, branches = feedforward_t.shape
    flat = torch.addmm(feedforward_t.reshape(batch, neurons * branches), s, w_rec.t())
    return flat.view(batch, neurons, branches)


def dh_lif_recurrent_step(feedforward_t, state, w_rec, alpha, beta, threshold=1.0, **soma_kwargs):
    """One DH-SRNN step with autograd; ``feedforward_t [B, N, D]``, ``w_rec [N·D, N]``."""
    return dh_lif_step(_recurrent_input(feedforward_t, state.s, w_rec), state, alpha, beta, threshold, **soma_kwargs)


def dh_lif_recurrent_sequence_reference(feedforward, state, w_rec, alpha, beta, threshold=1.0, **soma_kwargs):
    """Reference: :func:`dh_lif_recurrent_step` in a Python loop under autograd."""
    spikes = []
    for t in range(feedforward.shape[0]):
        s, state = dh_lif_recurrent_step(feedforward[t], state, w_rec, alpha, beta, threshold, **soma_kwargs)
        spikes.append(s)
    return torch.stack(spikes), state


class _DHLIFRecurrent(torch.autograd.Function):
    @staticmethod
    @full_precision
    def forward(ctx, feedforward, w_rec, alpha, beta, threshold, i0, u0, s0, surrogate, reset, detach_reset, scale_input):
        kernel = kernel_for("dh_lif_recurrent_sequence", feedforward, surrogate)
        if kernel is not None:
            spikes, u_all, kept, i_last = kernel.dh_recurrent_forward(
                feedforward, w_rec, alpha, beta, threshold, i0, u0, s0, reset, scale_input
            )
            saved = feedforward  # the kernel recomputes the branch input in the backward pass
        else:
            steps = feedforward.shape[0]
            saved = torch.empty_like(feedforward)  # full branch input I_t, kept for the backward pass
            u_all = torch.empty_like(feedforward[..., 0])
            spikes = torch.empty_like(u_all)
            i, u, s = i0, u0, s0
            for t in range(steps):
                current = _recurrent_input(feedforward[t], s, w_rec)
                saved[t] = current
                i = linear_step(i, current, alpha)
                u = soma_update(u, s, _drive(i.sum(-1), beta, scale_input), beta, threshold, reset, out=u_all[t])
                s = surrogate.spike(u, threshold, out=spikes[t])
            kept = pack_spikes(spikes, surrogate)
            i_last = i.clone()
        ctx.save_for_backward(saved, w_rec, alpha, beta, threshold, i0, u0, s0, u_all, kept)
        ctx.config = (surrogate, reset, detach_reset, scale_input, kernel)
        return spikes, i_last, u_all[-1].clone()

    @staticmethod
    @full_precision
    def backward(ctx, grad_spikes, grad_i_last, grad_u_last):
        saved, w_rec, alpha, beta, threshold, i0, u0, s0, u_all, kept = ctx.saved_tensors
        surrogate, reset, detach_reset, scale_input, kernel = ctx.config
        spikes = kept.to(u_all.dtype)
        batch = u_all.shape[1]
        grads = [None] * 12
        if kernel is not None:
            g_current, gu_first, gi_first, g_alpha, g_beta, g_theta = kernel.dh_recurrent_backward(
                grad_spikes, grad_i_last, grad_u_last, saved, w_rec, alpha, beta, threshold, i0, u0, s0, u_all,
                kept, surrogate, reset, detach_reset, scale_input,
            )
            grads[2] = g_alpha.sum(0).to(alpha.dtype)
            grads[3] = _reduce_to(g_beta, beta) if ctx.needs_input_grad[3] else None
            grads[4] = _reduce_to(g_theta, threshold) if ctx.needs_input_grad[4] else None
        else:
            g_current, gu_first, gi_first, grads[2], grads[3], grads[4] = _dh_recurrent_reverse_loop(
                ctx.needs_input_grad, grad_spikes, grad_i_last, grad_u_last, saved, w_rec, alpha, beta, threshold,
                i0, u0, s0, u_all, spikes, surrogate, reset, detach_reset, scale_input,
            )
        grads[0] = g_current
        if ctx.needs_input_grad[1]:
            s_prev = torch.cat([s0.unsqueeze(0), spikes[:-1]])
            steps = u_all.shape[0]
            grads[1] = g_current.reshape(steps * batch, -1).t() @ s_prev.reshape(steps * batch, -1)
        grads[5] = gi_first
        grads[6], grad_s0 = _initial_state_grads(gu_first, u0, s0, beta, threshold, reset, detach_reset)
        grads[7] = grad_s0 + g_current[0].reshape(batch, -1) @ w_rec
        return tuple(grads)


def _dh_recurrent_reverse_loop(
    needs, grad_spikes, grad_i_last, grad_u_last, currents, w_rec, alpha, beta, threshold, i0, u0, s0, u_all,
    spikes, surrogate, reset, detach_reset, scale_input,
):
    """PyTorch reverse loop of the DH-SRNN: ``(dL/dI, g^u_0, dL/di_0, dL/dα, dL/dβ, dL/dθ)``."""
    steps, batch, neurons, branches = currents.shape
    sg = surrogate.grad(u_all - threshold)
    gu_all = torch.empty_like(u_all)
    gi_all = torch.empty_like(currents)
    gu = torch.zeros_like(u_all[0])
    gi = torch.zeros_like(currents[0])
    one_minus_alpha = 1.0 - alpha
    for t in range(steps - 1, -1, -1):
        g_s = grad_spikes[t]
        if t < steps - 1:
            g_s = g_s + (one_minus_alpha * gi).reshape(batch, -1) @ w_rec
        gu = soma_backward_step(g_s, sg[t], gu, u_all[t], spikes[t], beta, threshold, reset, detach_reset)
        if t == steps - 1:
            gu = gu + grad_u_last
        gi = torch.addcmul(_drive(gu, beta, scale_input).unsqueeze(-1), alpha, gi)
        if t == steps - 1:
            gi = gi + grad_i_last
        gu_all[t] = gu
        gi_all[t] = gi
    g_current = one_minus_alpha * gi_all  # dL/dI_t
    dendrites = linear_scan(one_minus_alpha * currents, alpha, i0)
    grad_alpha = None
    if needs[2]:
        i_prev = torch.cat([i0.unsqueeze(0), dendrites[:-1]])
        grad_alpha = (gi_all * (i_prev - currents)).reshape(-1, alpha.numel()).sum(0).reshape(alpha.shape)
    grad_beta, grad_theta = soma_parameter_grads(
        (needs[3], needs[4]), gu_all, u_all, spikes, u0, s0, dendrites.sum(-1), beta, threshold, reset,
        scale_input, grad_u_last,
    )
    return g_current, gu_all[0], alpha * gi_all[0], grad_alpha, grad_beta, grad_theta


def dh_lif_recurrent_sequence(
    feedforward: Tensor,
    state: DHLIFState,
    w_rec: Tensor,
    alpha: Tensor,
    beta: Tensor,
    threshold: ThresholdLike = 1.0,
    *,
    surrogate: SurrogateLike = "mg",
    reset: str = "soft",
    detach_reset: bool = False,
    scale_input: bool = True,
) -> tuple[Tensor, DHLIFState]:
    """Multi-step recurrent DH-LIF (DH-SRNN) with hand-written BPTT.

    Args:
        feedforward: ``[T, B, N, D]`` feed-forward branch input (projection of ``x_t`` plus bias).
        state: initial :class:`DHLIFState`; ``state.s`` is also the first recurrent input.
        w_rec: ``[N·D, N]`` effective (already masked) recurrent weight; row ``n·D + d`` feeds branch
            ``d`` of neuron ``n``.
        alpha, beta, threshold, surrogate, reset, detach_reset, scale_input: as :func:`dh_lif_sequence`.

    Returns:
        ``(spikes [T, B, N], final DHLIFState)``.
    """
    check_reset(reset)
    theta = _as_threshold(threshold, feedforward)
    spikes, i_last, u_last = _DHLIFRecurrent.apply(
        feedforward, w_rec, alpha, beta, theta, state.i, state.u, state.s,
        get_surrogate(surrogate), reset, detach_reset, scale_input,
    )
    return spikes, DHLIFState(i_last, u_last, spikes[-1].clone())
