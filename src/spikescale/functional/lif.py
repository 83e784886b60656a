r"""Leaky integrate-and-fire soma: one step, a whole sequence with hand-written BPTT, and a reference.

Discrete update (one step, per neuron), with drive :math:`c\,I_t` where :math:`c = 1-\beta`
(``scale_input=True``, DH-SNN) or :math:`c = 1` (DCLS / SpikingJelly ``decay_input=False``):

.. math::
    \text{soft:}\quad u_t &= \beta u_{t-1} + c I_t - \vartheta s_{t-1} \\
    \text{hard:}\quad u_t &= \beta u_{t-1} (1 - s_{t-1}) + c I_t \\
    \text{none:}\quad u_t &= \beta u_{t-1} + c I_t \\
    s_t &= H(u_t - \vartheta)

The reset uses the previous step's spike and is applied after the decay (the subtracted amount is not
decayed), as in the official DH-SNN code and snnTorch's ``subtract`` reset. With ``detach_reset`` the
reset term carries no gradient to :math:`s_{t-1}`.

Backward (reverse-time loop, :math:`\sigma'_t = g(u_t - \vartheta)` the surrogate):

.. math::
    \hat g^s_t &= \bar g^s_t - \vartheta\, g^u_{t+1}\ \text{(soft)}\quad\text{or}\quad
                 \bar g^s_t - \beta u_t\, g^u_{t+1}\ \text{(hard)} \\
    g^u_t &= \hat g^s_t\, \sigma'_t + \beta\, g^u_{t+1}\ \text{(soft, none)}\quad\text{or}\quad
             \hat g^s_t\, \sigma'_t + \beta (1 - s_t)\, g^u_{t+1}\ \text{(hard)}

from which :math:`\partial L/\partial I_t = c\, g^u_t`, and the gradients for :math:`\beta` and
:math:`\vartheta` are single vectorised reductions after the loop. Only the membrane trace ``u`` (float),
the output spikes (as ``uint8`` for the Heaviside forward) and the input are kept for the backward pass.

The forward and reverse loops run on the backend chosen in :mod:`spikescale.kernels` (compiled loops on
CPU when available); the PyTorch loops below are the reference and the fallback. Surrogates that
override ``spike`` always run on the PyTorch loops.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor

from ..kernels import select
from .surrogate import Surrogate, SurrogateLike, get_surrogate, heaviside
from .precision import full_precision

__all__ = [
    "RESETS",
    "LIFState",
    "lif_step",
    "lif_sequence",
    "lif_sequence_reference",
    "soma_update",
    "check_reset",
]

RESETS = ("soft", "hard", "none")

ThresholdLike = Union[float, Tensor]


class LIFState(NamedTuple):
    """Soma state between steps: membrane ``u`` and previous spike ``s``, each ``[B, N]``.

    ``s`` may be real-valued (the official DH-SNN code starts from ``s_0 ~ U(0, 1)``).
    """

    u: Tensor
    s: Tensor


def check_reset(reset: str) -> str:
    if reset not in RESETS:
        raise ValueError(f"unknown reset {reset!r}; expected one of {RESETS}")
    return reset


def soma_update(
    u: Tensor,
    s: Tensor,
    drive: Tensor,
    beta: Tensor,
    threshold: ThresholdLike,
    reset: str,
    out: Optional[Tensor] = None,
) -> Tensor:
    """One membrane update ``u_t`` from ``(u_{t-1}, s_{t-1})`` and the scaled drive ``c·I_t``.

    This is the single definition of the soma equation; the sequence Functions (which pass ``out`` to
    write into their trace buffer), the references and the single-step modes all call it, so their
    forward values agree bit for bit.
    """
    if reset == "hard":
        u = u * (1.0 - s)
    new = torch.addcmul(drive, beta, u) if out is None else torch.addcmul(drive, beta, u, out=out)
    if reset == "soft":
        new = new - threshold * s if out is None else new.sub_(threshold * s)
    return new


def _drive(current: Tensor, beta: Tensor, scale_input: bool) -> Tensor:
    return (1.0 - beta) * current if scale_input else current


def lif_step(
    current: Tensor,
    state: LIFState,
    beta: Tensor,
    threshold: ThresholdLike = 1.0,
    *,
    surrogate: SurrogateLike = "mg",
    reset: str = "soft",
    detach_reset: bool = False,
    scale_input: bool = True,
) -> tuple[Tensor, LIFState]:
    """One LIF step with ordinary autograd: ``current [B, N]`` → ``(s_t [B, N], LIFState)``."""
    s_reset = state.s.detach() if detach_reset else state.s
    u = soma_update(state.u, s_reset, _drive(current, beta, scale_input), beta, threshold, reset)
    s = heaviside(u - threshold, surrogate)
    return s, LIFState(u, s)


def lif_sequence_reference(
    current: Tensor,
    state: LIFState,
    beta: Tensor,
    threshold: ThresholdLike = 1.0,
    **kwargs,
) -> tuple[Tensor, LIFState]:
    """Reference: :func:`lif_step` in a Python loop under autograd (tests and gradient analyses)."""
    spikes = []
    for t in range(current.shape[0]):
        s, state = lif_step(current[t], state, beta, threshold, **kwargs)
        spikes.append(s)
    return torch.stack(spikes), state


def soma_backward_step(
    grad_s: Tensor,
    sg: Tensor,
    gu_next: Tensor,
    u: Tensor,
    s: Tensor,
    beta: Tensor,
    threshold: Tensor,
    reset: str,
    detach_reset: bool,
) -> Tensor:
    """``g^u_t`` from the external spike gradient ``grad_s`` and ``g^u_{t+1}`` (see module docstring)."""
    if not detach_reset:
        if reset == "soft":
            grad_s = grad_s - threshold * gu_next
        elif reset == "hard":
            grad_s = grad_s - beta * u * gu_next
    carried = beta * (1.0 - s) * gu_next if reset == "hard" else beta * gu_next
    return torch.addcmul(carried, grad_s, sg)


def soma_parameter_grads(
    needs: tuple[bool, bool],
    gu: Tensor,
    u: Tensor,
    spikes: Tensor,
    u0: Tensor,
    s0: Tensor,
    current: Tensor,
    beta: Tensor,
    threshold: Tensor,
    reset: str,
    scale_input: bool,
    grad_u_last: Optional[Tensor],
) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """Vectorised ``(dL/dβ, dL/dθ)`` from the stored ``g^u`` trace ``[T, B, N]``.

    ``current`` is the unscaled input :math:`I_t` (only used when ``scale_input``); ``grad_u_last`` is
    the gradient of the final membrane state, which ``g^u_T`` includes but the spike path does not.
    """
    need_beta, need_theta = needs
    u_prev = torch.cat([u0.unsqueeze(0), u[:-1]])
    s_prev = torch.cat([s0.unsqueeze(0), spikes[:-1]])
    grad_beta = grad_theta = None
    if need_beta:
        term = u_prev * (1.0 - s_prev) if reset == "hard" else u_prev
        if scale_input:
            term = term - current
        grad_beta = _reduce_to(gu * term, beta)
    if need_theta:
        # ds_t/dθ = -σ'_t; the soft reset also subtracts θ s_{t-1}.
        gu_next = torch.cat([gu[1:], gu.new_zeros(1, *gu.shape[1:])])
        carried = beta * (1.0 - spikes) * gu_next if reset == "hard" else beta * gu_next
        gs_sg = gu - carried  # = ĝ^s_t σ'_t
        if grad_u_last is not None:
            gs_sg[-1] -= grad_u_last
        total = -gs_sg
        if reset == "soft":
            total = total - gu * s_prev
        grad_theta = _reduce_to(total, threshold)
    return grad_beta, grad_theta


def _reduce_to(x: Tensor, like: Tensor) -> Tensor:
    """Sum ``x [..., N]`` down to the shape (and dtype) of ``like`` (``[N]`` or scalar)."""
    if like.dim() == 0:
        return x.sum().to(like.dtype)
    return x.reshape(-1, like.numel()).sum(0).reshape(like.shape).to(like.dtype)


def kernel_for(op: str, tensor: Tensor, surrogate: Optional[Surrogate] = None):
    """Backend module that runs ``op`` on ``tensor`` (``None``: the PyTorch loops of this package)."""
    if tensor.dtype not in (torch.float32, torch.float64):
        return None
    if surrogate is not None and type(surrogate).spike is not Surrogate.spike:
        return None
    return select(op, tensor.device)


def pack_spikes(spikes: Tensor, surrogate: Surrogate) -> Tensor:
    """Spikes as kept for a backward pass: ``uint8`` for the 0/1 Heaviside forward, else as they are."""
    return spikes.to(torch.uint8) if type(surrogate).spike is Surrogate.spike else spikes


class SomaGrads(NamedTuple):
    """Gradients produced by :func:`soma_backward` (``None`` where not asked for)."""

    current: Tensor  # dL/dI_t, [T, B, N]
    u0: Tensor
    s0: Tensor
    beta: Optional[Tensor]
    threshold: Optional[Tensor]
    direct: Optional[Tensor]  # c·(ĝ^s_t σ'_t) plus c·dL/du_T at the last step: zero where σ' = 0


def soma_forward(current, beta, threshold, u0, s0, surrogate, reset, scale_input):
    """Forward loop of the soma: ``(spikes, u trace, spikes as kept for the backward, backend or None)``."""
    kernel = kernel_for("lif_sequence", current, surrogate)
    if kernel is not None:
        spikes, u_all, kept, _ = kernel.lif_forward(current, beta, threshold, u0, s0, reset, scale_input)
        return spikes, u_all, kept, kernel
    drive = _drive(current, beta, scale_input)
    u_all = torch.empty_like(current)
    spikes = torch.empty_like(current)
    u, s = u0, s0
    for t in range(current.shape[0]):
        u = soma_update(u, s, drive[t], beta, threshold, reset, out=u_all[t])
        s = surrogate.spike(u, threshold, out=spikes[t])
    return spikes, u_all, pack_spikes(spikes, surrogate), None


def soma_backward(
    grad_spikes, grad_u_last, current, beta, threshold, u0, s0, u_all, kept, surrogate, reset, detach_reset,
    scale_input, kernel, needs: tuple[bool, bool], want_direct: bool = False,
) -> SomaGrads:
    r"""Reverse loop of the soma (on ``kernel`` or the PyTorch loop); ``needs`` = (β, θ) gradients.

    ``current`` may be ``None`` when dL/dβ is not needed or the input is not scaled (see :func:`kept_current`).

    ``want_direct`` also returns the per-step injections :math:`c\,\hat g^s_t \sigma'_t` (the sparse
    part of :math:`\partial L/\partial I`, see :mod:`spikescale.functional.sparse_backward`).
    """
    direct = None
    if kernel is not None:
        grad_current, gu_first, g_beta, g_theta, direct = kernel.lif_backward(
            grad_spikes, grad_u_last, u_all, kept, u_all if current is None else current, u0, s0, beta, threshold,
            surrogate, reset, detach_reset, scale_input, want_direct, needs,
        )
        grad_beta = _reduce_to(g_beta, beta) if needs[0] else None
        grad_theta = _reduce_to(g_theta, threshold) if needs[1] else None
    else:
        spikes = kept.to(u_all.dtype)
        sg = surrogate.grad(u_all - threshold)
        gu_all = _soma_reverse_loop(grad_spikes, grad_u_last, sg, u_all, spikes, beta, threshold, reset, detach_reset)
        grad_current = _drive(gu_all, beta, scale_input)
        grad_beta, grad_theta = soma_parameter_grads(
            needs, gu_all, u_all, spikes, u0, s0, current, beta, threshold, reset, scale_input, grad_u_last,
        )
        gu_first = gu_all[0]
        if want_direct:
            gu_next = torch.cat([gu_all[1:], torch.zeros_like(gu_all[:1])])
            grad_s = grad_spikes
            if not detach_reset and reset == "soft":
                grad_s = grad_s - threshold * gu_next
            elif not detach_reset and reset == "hard":
                grad_s = grad_s - beta * u_all * gu_next
            injected = grad_s * sg
            injected[-1] += grad_u_last
            direct = _drive(injected, beta, scale_input)
    grad_u0, grad_s0 = _initial_state_grads(gu_first, u0, s0, beta, threshold, reset, detach_reset)
    return SomaGrads(grad_current, grad_u0, grad_s0, grad_beta, grad_theta, direct)


def kept_current(current: Tensor, need_beta: bool, scale_input: bool) -> Optional[Tensor]:
    """The input current if the backward pass needs it (only for dL/dβ with a scaled input), else ``None``."""
    return current if scale_input and need_beta else None


class _LIFSequence(torch.autograd.Function):
    @staticmethod
    @full_precision
    def forward(ctx, current, beta, threshold, u0, s0, surrogate, reset, detach_reset, scale_input):
        spikes, u_all, kept, kernel = soma_forward(current, beta, threshold, u0, s0, surrogate, reset, scale_input)
        ctx.save_for_backward(kept_current(current, ctx.needs_input_grad[1], scale_input), beta, threshold, u0, s0, u_all, kept)
        ctx.config = (surrogate, reset, detach_reset, scale_input, kernel)
        return spikes, u_all[-1].clone()

    @staticmethod
    @full_precision
    def backward(ctx, grad_spikes, grad_u_last):
        grads = soma_backward(
            grad_spikes, grad_u_last, *ctx.saved_tensors, *ctx.config,
            needs=(ctx.needs_input_grad[1], ctx.needs_input_grad[2]),
        )
        grad_current = grads.current if ctx.needs_input_grad[0] else None
        return grad_current, grads.beta, grads.threshold, grads.u0, grads.s0, None, None, None, None


def _soma_reverse_loop(grad_spikes, grad_u_last, sg, u_all, spikes, beta, threshold, reset, detach_reset):
    """``g^u_t`` for all steps; ``grad_spikes`` already includes any gradient of the final spike state."""
    steps = u_all.shape[0]
    gu_all = torch.empty_like(u_all)
    gu = torch.zeros_like(u_all[0])
    for t in range(steps - 1, -1, -1):
        gu = soma_backward_step(grad_spikes[t], sg[t], gu, u_all[t], spikes[t], beta, threshold, reset, detach_reset)
        if t == steps - 1 and grad_u_last is not None:
            gu = gu + grad_u_last
        gu_all[t] = gu
    return gu_all


def _initial_state_grads(gu_first, u0, s0, beta, threshold, reset, detach_reset):
    """Gradients for ``(u_0, s_0)`` from ``g^u`` at the first step."""
    if reset == "hard":
        grad_u0 = beta * (1.0 - s0) * gu_first
        grad_s0 = torch.zeros_like(s0) if detach_reset else -beta * u0 * gu_first
    else:
        grad_u0 = beta * gu_first
        grad_s0 = -threshold * gu_first if (reset == "soft" and not detach_reset) else torch.zeros_like(s0)
    return grad_u0, grad_s0


def _as_threshold(threshold: ThresholdLike, like: Tensor) -> Tensor:
    return threshold if isinstance(threshold, Tensor) else like.new_tensor(float(threshold))


def lif_sequence(
    current: Tensor,
    state: LIFState,
    beta: Tensor,
    threshold: ThresholdLike = 1.0,
    *,
    surrogate: SurrogateLike = "mg",
    reset: str = "soft",
    detach_reset: bool = False,
    scale_input: bool = True,
) -> tuple[Tensor, LIFState]:
    """Multi-step LIF with hand-written BPTT.

    Args:
        current: ``[T, B, N]`` synaptic current :math:`I_t`.
        state: initial :class:`LIFState` (``[B, N]`` each).
        beta: ``[N]`` membrane factor in (0, 1) (gradients flow to it).
        threshold: float, or a ``[]``/``[N]`` tensor (gets a gradient when it requires one).
        surrogate: pseudo-derivative used in the backward pass.
        reset: ``"soft"``, ``"hard"`` or ``"none"``; ``detach_reset`` cuts the reset's gradient.
        scale_input: multiply the current by ``1 - β`` (DH-SNN) or not (DCLS).

    Returns:
        ``(spikes [T, B, N], final LIFState)``; spikes are 0/1 in the dtype of ``current``.
    """
    check_reset(reset)
    surrogate = get_surrogate(surrogate)
    theta = _as_threshold(threshold, current)
    inputs = (current, beta, theta, state.u, state.s)
    kernel = kernel_for("lif_sequence", current, surrogate)
    if kernel is not None and not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        # No gradient will be asked for: the kernel writes only the spikes and the final state.
        spikes, _, _, u_last = kernel.lif_forward(current, beta, theta, state.u, state.s, reset, scale_input, keep=False)
    else:
        spikes, u_last = _LIFSequence.apply(*inputs, surrogate, reset, detach_reset, scale_input)
    return spikes, LIFState(u_last, spikes[-1].clone())  # a copy: the state does not keep all spikes alive
