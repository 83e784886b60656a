r"""Sparse-firing regularisers for TTFS networks: M-SSR, F-SSR and baselines (spec ``ttfs-ssr.md`` §5).

**Reconstructions.** The exact equations of Sakemi et al., *Sci. Rep.* 13:22897 (2023) were not
available; the closed forms below were derived from the published description of the method (M-SSR
is "an extreme form of the loss function of the membrane potential value", F-SSR "a regularization
function obtained from the firing conditions", both "only require information about the firing timing
and associated weights"). Alternative readings are kept under their own names for ablations.

Notation per layer: window end ``T``, threshold ``ϑ``, causal set ``C_i`` of neuron ``i``,
``S_i = Σ_{j∈C_i} w_ij``, ``P_i = Σ_{j∈C_i} w_ij t_j``, un-reset potential
``ṽ_i(t) = Σ_j w_ij [t − t_j]_+`` and penalty ``ρ(u) = [u]_+`` (``"linear"``) or ``½[u]_+²``
(``"squared"``). Key identity: for a firing neuron :math:`S_i T - P_i - ϑ = S_i (T - t_i) \ge 0`.

========================  ======================================================  ====================
name                      per-neuron penalty                                      neurons
========================  ======================================================  ====================
``m_ssr``                 ``ρ(S_i T − P_i − ϑ) = ρ(S_i (T − t_i))``                firing
``f_ssr``                 ``ρ(Σ_{j∈C_i} [w_ij]_+ (T − t_j) − ϑ)``                  firing
``f_ssr_all_inputs``      ``ρ(Σ_{j fired} [w_ij]_+ [T − t_j]_+ − ϑ)``              all
``f_ssr_time_only``       ``ρ(T − t_i)``                                            firing
``mp_ref``                ``ρ(ṽ_i(T) − v̂)``                                         all
``mp_integral``           ``∫_0^T [ṽ_i(t) − v̂]_+ dt``                               all
``l2``                    ``½ Σ_ij w_ij²`` (per layer, not per neuron)              —
========================  ======================================================  ====================

Derivations:

* ``mp_ref``: penalise the end-of-window potential above a reference voltage ``v̂ ≤ ϑ``.
* ``m_ssr`` is its extreme form ``v̂ → ϑ``: silent neurons drop out (``ṽ_i(T) < ϑ``) and for a
  firing neuron the potential is taken over its causal inputs, ``ṽ^C_i(T) − ϑ = S_i (T − t_i)``.
  Gradients (linear ρ): ``∂/∂w_ij = T − t_j``, ``∂/∂t_j = −w_ij`` (``j ∈ C_i``), ``∂/∂ϑ = −1``;
  bounded (no ``1/S``), zero once the neuron stops firing. They come out exactly because the penalty
  is computed from the differentiable causal sums ``S, P`` of the layer.
* ``f_ssr``: the neuron can never fire in ``[0, T]`` if the upper limit of its un-reset potential,
  ``U_i = Σ_j [w_ij]_+ [T − t_j]_+``, stays below ``ϑ``; F-SSR penalises the violation of this
  non-firing condition, using the causal inputs (``f_ssr``) or every fired input
  (``f_ssr_all_inputs``, which also acts on silent neurons close to firing). Gradients (linear ρ):
  ``∂/∂w_ij = (T − t_j)·1[w_ij > 0]``, ``∂/∂t_j = −[w_ij]_+`` while ``U_i > ϑ``. ``offset=False``
  penalises ``ρ(U_i)`` itself ("the upper limit" read literally; same gradients above the hinge).
* ``f_ssr_time_only``: the firing condition read as "the spike lies inside the window"; times only,
  its weight gradient ``(t_i − t_j)/S_i`` diverges as ``S_i → 0``.
* ``mp_integral``: the time-integrated excess potential (piecewise-linear closed form per segment).

Reductions: over the neurons of a layer ``"sum"`` or ``"mean"`` (``reduction``), over the batch
``"sum"`` or ``"mean"`` (``batch_reduction``); per-layer strengths ``γ_l`` (``gamma``: one value or
one per layer); ``exclude_output`` leaves the output layer out. Record all of them with every result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..functional.ttfs import LayerTrace, causal_sums, free_potential, sorted_window

__all__ = [
    "REGULARISERS",
    "RHOS",
    "REDUCTIONS",
    "Regulariser",
    "RegulariserValue",
    "penalty",
    "m_ssr",
    "f_ssr",
    "f_ssr_all_inputs",
    "f_ssr_time_only",
    "mp_ref",
    "mp_integral",
    "l2",
    "integral_excess",
]

RHOS = ("linear", "squared")
REDUCTIONS = ("sum", "mean")


def penalty(u: Tensor, rho: str) -> Tensor:
    """``ρ(u) = [u]_+`` (``"linear"``) or ``½[u]_+²`` (``"squared"``)."""
    if rho == "linear":
        return F.relu(u)
    if rho == "squared":
        return 0.5 * F.relu(u) ** 2
    raise ValueError(f"unknown penalty {rho!r}; expected one of {RHOS}")


def _on_fired(trace: LayerTrace, u: Tensor) -> Tensor:
    return torch.where(trace.output.fired, u, torch.zeros_like(u))


def m_ssr(trace: LayerTrace, rho: str = "linear") -> Tensor:
    """M-SSR ``[B, M]``: ``ρ(S_i T − P_i − ϑ)`` on firing neurons (reconstruction, module doc)."""
    out = trace.output
    return penalty(_on_fired(trace, out.slope * trace.t_end - out.offset - trace.threshold), rho)


def f_ssr(trace: LayerTrace, rho: str = "linear", offset: bool = True) -> Tensor:
    """F-SSR ``[B, M]``: ``ρ(Σ_{j∈C_i} [w_ij]_+ (T − t_j) − ϑ)`` on firing neurons (reconstruction)."""
    s_pos, p_pos = causal_sums(trace.inputs, F.relu(trace.weight), trace.output.causal, backend=trace.backend)
    upper = s_pos * trace.t_end - p_pos
    return penalty(_on_fired(trace, upper - trace.threshold if offset else upper), rho)


def f_ssr_all_inputs(trace: LayerTrace, rho: str = "linear", offset: bool = True) -> Tensor:
    """F-SSR variant ``[B, M]``: ``ρ(Σ_{j fired} [w_ij]_+ [T − t_j]_+ − ϑ)`` on every neuron."""
    upper = free_potential(trace.inputs, F.relu(trace.weight), trace.t_end)
    return penalty(upper - trace.threshold if offset else upper, rho)


def f_ssr_time_only(trace: LayerTrace, rho: str = "linear") -> Tensor:
    """F-SSR variant ``[B, M]``: ``ρ(T − t_i)`` on firing neurons (times only)."""
    times = torch.where(trace.output.fired, trace.output.times, torch.full_like(trace.output.times, trace.t_end))
    return penalty(trace.t_end - times, rho)


def mp_ref(trace: LayerTrace, rho: str = "linear", v_ref: Optional[float] = None) -> Tensor:
    """Membrane-potential regulariser ``[B, M]``: ``ρ(ṽ_i(T) − v̂)`` on every neuron (``v̂``: ``ϑ`` if None)."""
    v_hat = trace.threshold if v_ref is None else v_ref
    return penalty(free_potential(trace.inputs, trace.weight, trace.t_end) - v_hat, rho)


def mp_integral(trace: LayerTrace, v_ref: Optional[float] = None) -> Tensor:
    """Integral regulariser ``[B, M]``: ``∫_0^T [ṽ_i(t) − v̂]_+ dt`` (``v̂``: ``ϑ`` if None)."""
    v_hat = trace.threshold if v_ref is None else torch.as_tensor(v_ref, dtype=trace.weight.dtype)
    return integral_excess(trace.inputs, trace.weight, v_hat, trace.t_end)


def l2(trace: LayerTrace) -> Tensor:
    """Weight decay ``½ Σ w²`` of the layer (a scalar)."""
    return 0.5 * (trace.weight ** 2).sum()


def _segment_area(length: Tensor, e_a: Tensor, e_b: Tensor) -> Tensor:
    """``∫ [e(t)]_+ dt`` over a segment of ``length`` on which ``e`` runs linearly from ``e_a`` to ``e_b``."""
    both = (e_a >= 0) & (e_b >= 0)
    one = (e_a >= 0) ^ (e_b >= 0)
    gap = torch.where(one, (e_b - e_a).abs(), torch.ones_like(e_a))  # sanitised before dividing
    triangle = length * torch.maximum(e_a, e_b) ** 2 / (2 * gap)
    trapezoid = length * (e_a + e_b) / 2
    return torch.where(both, trapezoid, torch.where(one, triangle, torch.zeros_like(e_a)))


def _integral_chunk(ts0: Tensor, right: Tensor, in_window: Tensor, order: Tensor, weight: Tensor, v_hat: Tensor) -> Tensor:
    ws = weight.t()[order] * in_window[..., None]  # [B, n, mc]
    s = ws.cumsum(1)
    p = (ws * ts0[..., None]).cumsum(1)
    e_a = s * ts0[..., None] - p - v_hat
    e_b = s * right[..., None] - p - v_hat
    length = ((right - ts0) * in_window)[..., None]
    return _segment_area(length, e_a, e_b).sum(1)


def integral_excess(t_in: Tensor, weight: Tensor, v_hat: Union[float, Tensor], t_end: float, chunk: int = 64) -> Tensor:
    r"""``[B, M]``: :math:`\int_0^{T} [\tilde v_i(t) - \hat v]_+\,dt` for ``v̂ ≥ 0``, exact for the
    piecewise-linear un-reset potential (all inputs of the window, sorted).

    Per segment ``[a, b]`` between consecutive inputs with excesses ``e_a, e_b`` at its ends: both
    ``≥ 0`` → ``(b − a)(e_a + e_b)/2``; one ``≥ 0`` → ``(b − a)·max(e_a, e_b)²/(2|e_b − e_a|)``; else 0.
    Before the first input ``ṽ = 0 ≤ v̂``. Memory ``O(B·N·chunk)``: chunks of output neurons are
    recomputed in the backward pass (activation checkpointing).
    """
    v_hat = torch.as_tensor(v_hat, dtype=weight.dtype, device=weight.device)
    if bool((v_hat < 0).any()):
        raise ValueError("integral_excess: the reference potential v̂ must be >= 0")
    ts, order, in_window, count, _ = sorted_window(t_in, t_end)
    ts0 = ts.masked_fill(~in_window, 0.0)
    nxt = torch.cat([ts0[:, 1:], ts0.new_full((ts0.shape[0], 1), t_end)], 1)
    has_next = torch.arange(ts0.shape[1], device=ts0.device) + 1 < count[:, None]
    right = torch.where(has_next, nxt, torch.full_like(nxt, t_end))
    neurons = weight.shape[0]
    v_hat = v_hat.expand(neurons)
    parts = []
    for m0 in range(0, neurons, chunk):
        m1 = min(neurons, m0 + chunk)
        parts.append(
            checkpoint(_integral_chunk, ts0, right, in_window, order, weight[m0:m1], v_hat[m0:m1], use_reentrant=False)
        )
    return torch.cat(parts, 1) if parts else t_in.new_zeros(t_in.shape[0], 0)


REGULARISERS: dict[str, Callable] = {
    "m_ssr": m_ssr,
    "f_ssr": f_ssr,
    "f_ssr_all_inputs": f_ssr_all_inputs,
    "f_ssr_time_only": f_ssr_time_only,
    "mp_ref": mp_ref,
    "mp_integral": mp_integral,
    "l2": l2,
}
_USES_RHO = {"m_ssr", "f_ssr", "f_ssr_all_inputs", "f_ssr_time_only", "mp_ref"}
_USES_V_REF = {"mp_ref", "mp_integral"}
_USES_OFFSET = {"f_ssr", "f_ssr_all_inputs"}


class RegulariserValue(NamedTuple):
    """``loss``: the γ-weighted, reduced term to add to the loss; ``batch_sum``: the unweighted
    penalty summed over regularised layers and neurons and over the batch's samples (for metrics)."""

    loss: Tensor
    batch_sum: Tensor


@dataclass
class Regulariser:
    """One regulariser with its strengths and reductions.

    Args:
        name: one of :data:`REGULARISERS`.
        gamma: strength ``γ``, or one ``γ_l`` per layer (hidden layers first, output last).
        rho: ``"linear"`` or ``"squared"`` (not for ``mp_integral``, ``l2``).
        reduction: over a layer's neurons, ``"sum"`` or ``"mean"``.
        batch_reduction: over the batch, ``"sum"`` or ``"mean"``.
        exclude_output: leave the output layer out.
        v_ref: reference voltage ``v̂`` of ``mp_ref`` / ``mp_integral`` (``None``: the threshold).
        offset: F-SSR penalises ``U − ϑ`` (True) or ``U`` (False).
    """

    name: str
    gamma: Union[float, Sequence[float]] = 0.0
    rho: str = "linear"
    reduction: str = "sum"
    batch_reduction: str = "mean"
    exclude_output: bool = True
    v_ref: Optional[float] = None
    offset: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.name not in REGULARISERS:
            raise ValueError(f"unknown regulariser {self.name!r}; expected one of {sorted(REGULARISERS)}")
        gammas = [self.gamma] if isinstance(self.gamma, (int, float)) else list(self.gamma)
        if any(not isinstance(g, (int, float)) or g < 0 for g in gammas):
            problems.append(f"gamma must be >= 0 (one value or one per layer), got {self.gamma!r}")
        if self.rho not in RHOS:
            problems.append(f"rho must be one of {RHOS}, got {self.rho!r}")
        elif self.rho != "linear" and self.name not in _USES_RHO:
            problems.append(f"rho does not apply to {self.name}")
        for key, value in (("reduction", self.reduction), ("batch_reduction", self.batch_reduction)):
            if value not in REDUCTIONS:
                problems.append(f"{key} must be one of {REDUCTIONS}, got {value!r}")
        if self.v_ref is not None and self.name not in _USES_V_REF:
            problems.append(f"v_ref applies to {sorted(_USES_V_REF)} only, not {self.name}")
        if self.v_ref is not None and self.name == "mp_integral" and self.v_ref < 0:
            problems.append(f"mp_integral needs v_ref >= 0, got {self.v_ref}")
        if self.offset is not True and self.name not in _USES_OFFSET:
            problems.append(f"offset applies to {sorted(_USES_OFFSET)} only, not {self.name}")
        if problems:
            raise ValueError(f"regulariser {self.name}: " + "; ".join(problems))

    def strengths(self, layers: int) -> list[float]:
        """``γ_l`` for each of ``layers`` layers (0 for an excluded output layer)."""
        if isinstance(self.gamma, (int, float)):
            gammas = [float(self.gamma)] * layers
        else:
            gammas = [float(g) for g in self.gamma]
            if len(gammas) != layers:
                raise ValueError(f"regulariser {self.name}: gamma has {len(gammas)} values but the network has {layers} layers")
        if self.exclude_output:
            gammas[-1] = 0.0
        return gammas

    def _per_neuron(self, trace: LayerTrace) -> Tensor:
        kwargs = {}
        if self.name in _USES_RHO:
            kwargs["rho"] = self.rho
        if self.name in _USES_V_REF:
            kwargs["v_ref"] = self.v_ref
        if self.name in _USES_OFFSET:
            kwargs["offset"] = self.offset
        return REGULARISERS[self.name](trace, **kwargs)

    def __call__(self, traces: Sequence[LayerTrace]) -> RegulariserValue:
        gammas = self.strengths(len(traces))
        batch = traces[0].inputs.shape[0]
        loss = traces[0].weight.new_zeros(())
        per_sample = traces[0].weight.new_zeros(batch)
        for index, (gamma, trace) in enumerate(zip(gammas, traces)):
            if self.exclude_output and index == len(traces) - 1:
                continue
            if self.name == "l2":
                value = l2(trace)
                loss = loss + gamma * value
                per_sample = per_sample + value.detach()
                continue
            values = self._per_neuron(trace)  # [B, M]
            sample = values.sum(1) if self.reduction == "sum" else values.mean(1)
            total = sample.sum() if self.batch_reduction == "sum" else sample.mean()
            loss = loss + gamma * total
            per_sample = per_sample + sample.detach()
        return RegulariserValue(loss, per_sample.sum())
