r"""Readout layers turning hidden spikes into per-step class scores ``[T, B, K]``.

* ``"integrator"`` — non-spiking leaky integrator :math:`m_t = \beta_o m_{t-1} + (1-\beta_o)(W s_t + b)`
  with learnable :math:`\beta_o` (DH-SNN SHD/SSC/delayed-XOR readout).
* ``"linear"`` — :math:`W s_t + b` at every step (multi-timescale XOR, NeuroVPR).
* ``"spike_count"`` — a spiking LIF layer whose output spikes are counted (S-/PS-MNIST, θ = 0.5 there).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..functional.lif import lif_sequence, lif_step
from ..functional.scan import leaky_integrator, linear_step
from .base import Soma, SpikingLayer
from .layers import _check_sizes, _soma_kwargs
from .timing import InitLike, TimingFactor

__all__ = ["Readout", "READOUT_MODES"]

READOUT_MODES = ("integrator", "linear", "spike_count")


class Readout(SpikingLayer):
    """Readout of ``out_features`` units.

    Args:
        in_features, out_features: inputs (hidden neurons) and classes.
        mode: ``"integrator"``, ``"linear"`` or ``"spike_count"``.
        beta_init, learn_beta: factor of the integrator (and of the spiking readout's soma).
        init: ``"default"`` (PyTorch Linear) or ``"xavier"`` (Xavier-normal weights, zero bias; official SHD/SSC).
        bias: learn a bias per unit.
        faithful: integrator starts at ``m_0 ~ U(0, 1)`` (official code) instead of zero.
        **soma: for ``"spike_count"``: :class:`~spikescale.nn.base.Soma` options (e.g. ``threshold=0.5``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        mode: str = "integrator",
        beta_init: InitLike = "medium",
        learn_beta: bool = True,
        init: str = "default",
        bias: bool = True,
        faithful: bool = False,
        timing: str = "sigmoid",
        dt: float = 1.0,
        **soma,
    ) -> None:
        super().__init__()
        _check_sizes(in_features, out_features)
        if mode not in READOUT_MODES:
            raise ValueError(f"unknown readout mode {mode!r}; expected one of {READOUT_MODES}")
        if init not in ("default", "xavier"):
            raise ValueError(f"unknown readout init {init!r}; expected 'default' or 'xavier'")
        if soma and mode != "spike_count":
            raise TypeError(f"soma options {sorted(soma)} only apply to mode='spike_count'")
        self.in_features, self.out_features, self.mode = in_features, out_features, mode
        self.emits_spikes = mode == "spike_count"
        self.faithful = faithful
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        if init == "xavier":
            nn.init.xavier_normal_(self.linear.weight)
            if bias:
                nn.init.zeros_(self.linear.bias)
        self.beta: Optional[TimingFactor] = None
        self.soma: Optional[Soma] = None
        if mode == "integrator":
            self.beta = TimingFactor((out_features,), beta_init, param=timing, dt=dt, learnable=learn_beta)
        elif mode == "spike_count":
            self.soma = Soma(
                out_features, beta_init=beta_init, learn_beta=learn_beta, timing=timing, dt=dt, faithful=faithful,
                **_soma_kwargs(soma),
            )

    def initial_state(self, batch, device=None, dtype=None):
        if self.mode == "spike_count":
            return self.soma.initial_state(batch, device, dtype)
        shape = (batch, self.out_features)
        dtype = dtype or torch.get_default_dtype()
        if self.mode == "integrator" and self.faithful:
            return (torch.rand(shape, device=device, dtype=dtype),)
        return (torch.zeros(shape, device=device, dtype=dtype),)

    def _sequence(self, x, state):
        z = self.linear(x)
        if self.mode == "linear":
            return z, state
        if self.mode == "integrator":
            m = leaky_integrator(z, self.beta(), state[0])
            return m, (m[-1],)
        return lif_sequence(z, state, self.soma.beta(), self.soma.threshold, **self.soma.options())

    def _step(self, x, state):
        z = self.linear(x)
        if self.mode == "linear":
            return z, state
        if self.mode == "integrator":
            m = linear_step(state[0], z, self.beta())
            return m, (m,)
        return lif_step(z, state, self.soma.beta(), self.soma.threshold, **self.soma.options())

    def input_fan_out(self) -> Tensor:
        return torch.full((self.in_features,), float(self.out_features))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode!r}"
