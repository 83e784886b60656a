"""Spiking layers: vanilla LIF (SFNN), DH-SFNN and DH-SRNN (spec dh-snn §2–3).

================  ===========================================================  =========================
layer             per step                                                      parameters
================  ===========================================================  =========================
``LIFDense``      ``I_t = W x_t + b`` → LIF soma                                ``MN + 2N``
``DHDense``       ``I_t = reshape((W ⊙ mask) x_t + b, [N, D])`` → DH-LIF          ``MN + (2D+1)N``
``DHRecurrent``   ``I_t = reshape((W ⊙ mask) [x_t; s_{t-1}] + b, [N, D])`` → DH-LIF ``MN + N² + (2D+1)N``
================  ===========================================================  =========================

The feed-forward projections of all steps are one product: dense, event-driven for sparse spike input
(chosen per batch from the measured density, ``input_path``/``event_density``), or block products for
grouped masks (:mod:`spikescale.nn.projection`). Masks are buffers applied inside ``forward``; off-mask
weights are stored as exact zeros and get zero gradient, so optimisers (AdamW weight decay included)
keep them at zero.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional.dh_lif import (
    DHLIFState,
    dh_lif_recurrent_sequence,
    dh_lif_recurrent_step,
    dh_lif_sequence,
    dh_lif_step,
)
from ..functional.events import SparseWeight, event_dendritic_sum, event_linear
from ..functional.lif import LIFState, lif_sequence, lif_step
from ..functional.sparse_backward import check_sparse_backward, linear_lif_sparse_grad
from .base import Soma, SpikingLayer
from .masks import MASK_KINDS, branch_mask, group_index, padded_width
from .projection import check_input_path, default_event_density, grouped_projection, input_events
from .timing import InitLike, TimingFactor

__all__ = ["LIFDense", "DHDense", "DHRecurrent", "PROJECTIONS", "grouped_projection"]

PROJECTIONS = ("auto", "dense", "grouped")


def _soma_kwargs(kwargs: dict) -> dict:
    allowed = {
        "beta_init", "learn_beta", "timing", "dt", "threshold", "learn_threshold", "reset",
        "detach_reset", "surrogate", "scale_input", "faithful",
    }
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}; soma options are {sorted(allowed)}")
    return kwargs


class LIFDense(SpikingLayer):
    """Vanilla spiking feed-forward layer: ``Linear(in, out)`` → LIF soma.

    Args:
        in_features, out_features: ``M`` and ``N``.
        bias: learn a bias per neuron.
        input_path: ``"auto"`` (event-driven projection when the batch's input density is at most
            ``event_density``), ``"dense"`` or ``"event"``; see :mod:`spikescale.nn.projection`.
        event_density: density threshold of ``"auto"`` (default: the measured crossover).
        sparse_backward: compute the weight and input gradients from near-threshold entries only
            (:mod:`spikescale.functional.sparse_backward`; exact). Needs a surrogate with bounded support,
            reset ``"soft"`` or ``"none"`` and one fixed β (``beta_init=0.9, learn_beta=False``).
        **soma: options of :class:`~spikescale.nn.base.Soma` (``beta_init``, ``threshold``, ``reset``, ...).
    """

    emits_spikes = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        input_path: str = "auto",
        event_density: Optional[float] = None,
        sparse_backward: bool = False,
        **soma,
    ) -> None:
        super().__init__()
        _check_sizes(in_features, out_features)
        check_input_path(input_path, event_density)
        self.in_features, self.out_features = in_features, out_features
        self.input_path = input_path
        self.event_density = default_event_density() if event_density is None else event_density
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.soma = Soma(out_features, **_soma_kwargs(soma))
        self.sparse_backward = bool(sparse_backward)
        if self.sparse_backward:
            if self.soma.beta.learnable:
                raise ValueError("sparse_backward=True needs a fixed shared beta: pass learn_beta=False and a constant beta_init")
            check_sparse_backward(self.soma.surrogate, self.soma.reset, self.soma.beta())

    def initial_state(self, batch, device=None, dtype=None):
        return self.soma.initial_state(batch, device, dtype)

    def project(self, x: Tensor) -> Tensor:
        """Synaptic currents ``[T, B, N]`` of ``x [T, B, M]`` (event-driven or dense, see ``input_path``)."""
        events = input_events(x, self.input_path, self.event_density)
        if events is None:
            return self.linear(x)
        return event_linear(x, self.linear.weight, self.linear.bias, events)

    def _sequence(self, x, state):
        soma = self.soma
        if self.sparse_backward:
            events = input_events(x, self.input_path, self.event_density)
            return linear_lif_sparse_grad(
                x, self.linear.weight, self.linear.bias, state, soma.beta(), soma.threshold, events=events,
                **soma.options(),
            )
        return lif_sequence(self.project(x), state, soma.beta(), soma.threshold, **soma.options())

    def _step(self, x, state):
        soma = self.soma
        return lif_step(self.linear(x), state, soma.beta(), soma.threshold, **soma.options())

    def input_fan_out(self) -> Tensor:
        return torch.full((self.in_features,), float(self.out_features))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.linear.bias is not None}, input_path={self.input_path!r}, "
            f"sparse_backward={self.sparse_backward}"
        )


def _check_sizes(in_features: int, out_features: int) -> None:
    if in_features < 1 or out_features < 1:
        raise ValueError(f"layer sizes must be >= 1, got in_features={in_features}, out_features={out_features}")


class _DendriticLayer(SpikingLayer):
    """Common part of DH-SFNN / DH-SRNN: masked branch weight, per-branch bias, α, soma."""

    emits_spikes = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        fan_in: int,
        *,
        branches: int,
        mask: str,
        group_size: int,
        sparsity: Optional[float],
        alpha_init: InitLike,
        learn_alpha: bool,
        bias: bool,
        weight_init: str,
        seed: Optional[int],
        input_path: str,
        event_density: Optional[float],
        soma: dict,
    ) -> None:
        super().__init__()
        _check_sizes(in_features, out_features)
        check_input_path(input_path, event_density)
        if not isinstance(branches, int) or branches < 1 or branches > fan_in:
            raise ValueError(f"branches must be an integer between 1 and the number of inputs ({fan_in}), got {branches!r}")
        if mask not in MASK_KINDS:
            raise ValueError(f"unknown mask {mask!r}; expected one of {MASK_KINDS}")
        if weight_init not in ("full", "branch"):
            raise ValueError(f"unknown weight_init {weight_init!r}; expected 'full' (official fan-in M_pad) or 'branch' (M_pad/D)")
        self.in_features, self.out_features, self.branches = in_features, out_features, branches
        self.mask_kind, self.group_size, self.sparsity = mask, group_size, sparsity
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.register_buffer(
            "mask",
            branch_mask(out_features, fan_in, branches, mask, group_size=group_size, sparsity=sparsity, generator=generator),
        )
        width = padded_width(fan_in, branches)
        bound = 1.0 / math.sqrt(width if weight_init == "full" else width / branches)
        weight = torch.empty(out_features, branches, fan_in).uniform_(-bound, bound) * self.mask
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.empty(out_features, branches).uniform_(-bound, bound)) if bias else None
        self.alpha = TimingFactor(
            (out_features, branches), alpha_init, param=soma.get("timing", "sigmoid"), dt=soma.get("dt", 1.0),
            learnable=learn_alpha,
        )
        self.soma = Soma(out_features, **_soma_kwargs(soma))
        self.input_path = input_path
        self.event_density = default_event_density() if event_density is None else event_density

    def initial_state(self, batch, device=None, dtype=None) -> DHLIFState:
        soma = self.soma.initial_state(batch, device, dtype)
        shape = (batch, self.out_features, self.branches)
        dtype = dtype or torch.get_default_dtype()
        # Official quirk: the generic 1-branch layer starts its dendrite at U(0, 1), all others at zero.
        random_dendrite = self.soma.faithful and self.branches == 1 and self.mask_kind != "contiguous"
        i0 = torch.rand(shape, device=device, dtype=dtype) if random_dendrite else torch.zeros(shape, device=device, dtype=dtype)
        return DHLIFState(i0, soma.u, soma.s)

    def _branch_bias(self) -> Optional[Tensor]:
        return None if self.bias is None else self.bias.reshape(-1)

    def parameter_count(self) -> int:
        masked_out = int(self.weight.numel() - self.mask.sum()) if self.weight.requires_grad else 0
        return super().parameter_count() - masked_out

    def extra_repr(self) -> str:
        extra = f", group_size={self.group_size}" if self.mask_kind == "grouped" else ""
        extra += f", sparsity={self.sparsity}" if self.sparsity is not None else ""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, branches={self.branches}, "
            f"mask={self.mask_kind!r}{extra}, bias={self.bias is not None}, input_path={self.input_path!r}"
        )


class DHDense(_DendriticLayer):
    """DH-SFNN layer: one masked linear map to ``N·D`` branch inputs → DH-LIF neurons.

    Args:
        in_features, out_features: ``M`` inputs and ``N`` neurons.
        branches: dendritic branches per neuron ``D`` (1 ≤ D ≤ M).
        mask: ``"random"`` (official), ``"grouped"`` (``group_size`` neurons share wiring; computed with
            block products) or ``"contiguous"`` (XOR wiring); ``sparsity`` for overlapping/partial windows.
        alpha_init, learn_alpha: dendritic timing factors ``[N, D]`` (default ``"large"`` as SHD/XOR).
        bias: one bias per branch.
        weight_init: ``"full"`` (official, bound ``1/√M_pad``) or ``"branch"`` (true fan-in ``M_pad/D``).
        projection: method of the dense-input product: ``"dense"`` (masked ``N·D × M`` product), ``"grouped"``
            (block products, needs a grouped mask with ``N`` a multiple of ``group_size``) or ``"auto"``.
        input_path, event_density: event-driven projection for sparse spike input (as :class:`LIFDense`;
            the event path visits only the connected (input, branch) pairs and is fused with the
            dendritic sum, so the ``[T, B, N, D]`` branch inputs are never stored).
        seed: seeds the mask (the global RNG otherwise).
        **soma: :class:`~spikescale.nn.base.Soma` options (``beta_init``, ``threshold``, ``reset``, ``faithful``, ...).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        branches: int = 4,
        mask: str = "random",
        group_size: int = 32,
        sparsity: Optional[float] = None,
        alpha_init: InitLike = "large",
        learn_alpha: bool = True,
        bias: bool = True,
        weight_init: str = "full",
        projection: str = "auto",
        input_path: str = "auto",
        event_density: Optional[float] = None,
        seed: Optional[int] = None,
        **soma,
    ) -> None:
        super().__init__(
            in_features, out_features, in_features, branches=branches, mask=mask, group_size=group_size,
            sparsity=sparsity, alpha_init=alpha_init, learn_alpha=learn_alpha, bias=bias,
            weight_init=weight_init, seed=seed, input_path=input_path, event_density=event_density, soma=soma,
        )
        if projection not in PROJECTIONS:
            raise ValueError(f"unknown projection {projection!r}; expected one of {PROJECTIONS}")
        self.projection = projection
        self.register_buffer("group_index", self._group_index(), persistent=False)
        self._sparse_weight: Optional[SparseWeight] = None  # built from the mask on first event-path use
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh_mask_structures())
        if event_density is None:
            self.event_density = default_event_density(block_products=self._uses_block_products())
        if projection == "grouped" and self.group_index is None:
            raise ValueError(
                "projection='grouped' needs mask='grouped' with out_features a multiple of group_size "
                f"(got mask={mask!r}, out_features={out_features}, group_size={group_size})"
            )

    def _group_index(self) -> Optional[Tensor]:
        if self.mask_kind != "grouped" or self.sparsity is not None:
            return None
        return group_index(self.mask, self.group_size)

    def _refresh_mask_structures(self) -> None:
        """Rebuild what is derived from the mask (after it is loaded from a state dict)."""
        index = self._group_index()
        self.group_index = None if index is None else index.to(self.mask.device)
        self._sparse_weight = None

    def _uses_block_products(self) -> bool:
        return self.group_index is not None and self.projection in ("auto", "grouped")

    def project(self, x: Tensor) -> Tensor:
        """Branch inputs ``[..., N, D]`` for inputs ``x [..., M]`` (dense-input methods, see ``projection``)."""
        if self._uses_block_products():
            out = grouped_projection(x.reshape(-1, self.in_features), self.weight, self.group_index)
            out = out.reshape(*x.shape[:-1], self.out_features, self.branches)
            return out if self.bias is None else out + self.bias
        flat = F.linear(x, (self.weight * self.mask).reshape(-1, self.in_features), self._branch_bias())
        return flat.reshape(*x.shape[:-1], self.out_features, self.branches)

    def _sequence(self, x, state):
        soma = self.soma
        events = input_events(x, self.input_path, self.event_density)
        if events is None:
            return dh_lif_sequence(self.project(x), state, self.alpha(), soma.beta(), soma.threshold, **soma.options())
        if self._sparse_weight is None:
            self._sparse_weight = SparseWeight(self.mask)
        total, i_last = event_dendritic_sum(
            x, self.weight, self.bias, self.alpha(), state.i, events, self._sparse_weight
        )
        spikes, final = lif_sequence(total, LIFState(state.u, state.s), soma.beta(), soma.threshold, **soma.options())
        return spikes, DHLIFState(i_last, final.u, final.s)

    def _step(self, x, state):
        return dh_lif_step(
            self.project(x), state, self.alpha(), self.soma.beta(), self.soma.threshold, **self.soma.options()
        )

    def input_fan_out(self) -> Tensor:
        return self.mask.sum((0, 1)).float()


class DHRecurrent(_DendriticLayer):
    """DH-SRNN layer: ``[x_t ; s_{t-1}]`` through one masked map to ``N·D`` branch inputs → DH-LIF.

    The recurrent spikes join the inputs before the per-neuron partition, so feed-forward and recurrent
    synapses mix across branches (spec §3.2). Arguments as :class:`DHDense` (default ``alpha_init``
    ``"medium"``); the mask covers ``M + N`` inputs. ``input_path`` applies to the feed-forward input.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        branches: int = 4,
        mask: str = "random",
        group_size: int = 32,
        sparsity: Optional[float] = None,
        alpha_init: InitLike = "medium",
        learn_alpha: bool = True,
        bias: bool = True,
        weight_init: str = "full",
        input_path: str = "auto",
        event_density: Optional[float] = None,
        seed: Optional[int] = None,
        **soma,
    ) -> None:
        super().__init__(
            in_features, out_features, in_features + out_features, branches=branches, mask=mask,
            group_size=group_size, sparsity=sparsity, alpha_init=alpha_init, learn_alpha=learn_alpha,
            bias=bias, weight_init=weight_init, seed=seed, input_path=input_path, event_density=event_density,
            soma=soma,
        )

    def _weights(self) -> tuple[Tensor, Tensor]:
        """Effective feed-forward ``[N·D, M]`` and recurrent ``[N·D, N]`` weights."""
        masked = (self.weight * self.mask).reshape(-1, self.in_features + self.out_features)
        return masked[:, : self.in_features], masked[:, self.in_features:]

    def _feedforward(self, x: Tensor, w_in: Tensor) -> Tensor:
        return F.linear(x, w_in, self._branch_bias()).reshape(*x.shape[:-1], self.out_features, self.branches)

    def _sequence(self, x, state):
        w_in, w_rec = self._weights()
        events = input_events(x, self.input_path, self.event_density)
        if events is None:
            feedforward = self._feedforward(x, w_in)
        else:
            flat = event_linear(x, w_in, self._branch_bias(), events)
            feedforward = flat.reshape(*x.shape[:-1], self.out_features, self.branches)
        return dh_lif_recurrent_sequence(
            feedforward, state, w_rec, self.alpha(), self.soma.beta(), self.soma.threshold, **self.soma.options(),
        )

    def _step(self, x, state):
        w_in, w_rec = self._weights()
        return dh_lif_recurrent_step(
            self._feedforward(x, w_in), state, w_rec, self.alpha(), self.soma.beta(), self.soma.threshold,
            **self.soma.options(),
        )

    def input_fan_out(self) -> Tensor:
        return self.mask[..., : self.in_features].sum((0, 1)).float()

    def synaptic_operations(self, x: Tensor, spikes: Tensor) -> Tensor:
        recurrent_fan_out = self.mask[..., self.in_features:].sum((0, 1)).to(torch.float64)
        recurrent_events = (spikes[:-1] != 0).sum((0, 1)).to(torch.float64)
        return super().synaptic_operations(x, spikes) + recurrent_events @ recurrent_fan_out
