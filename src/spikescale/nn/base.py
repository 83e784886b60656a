"""Shared pieces of the spiking layers: input checks, the LIF soma settings, the layer protocol.

Every layer processes a whole sequence per call, ``forward(x [T, B, C], state=None) -> (out, state)``,
and one step at a time, ``step(x_t [B, C], state=None) -> (out_t, state)``, with explicit state that
is never kept on the module. Both modes give identical results.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, NamedTuple, Optional

import torch
from torch import Tensor, nn

from ..functional.lif import LIFState, check_reset
from ..functional.surrogate import SurrogateLike, get_surrogate
from .timing import InitLike, TimingFactor

__all__ = ["check_sequence", "check_step", "Soma", "SpikingLayer"]


def _check_finite(x: Tensor, who: str) -> None:
    # A sum is ~10x cheaper than isnan().any() and propagates NaN/Inf; confirm before raising because a
    # sum of large finite values can overflow.
    if x.is_floating_point() and not torch.isfinite(x.sum()):
        bad = (~torch.isfinite(x)).nonzero()
        if bad.numel():
            where = tuple(int(v) for v in bad[0])
            kind = "NaN" if torch.isnan(x[where]) else "Inf"
            raise ValueError(f"{who}: input contains {kind} (first at index {where}); inputs must be finite")


# Set while a Network runs its layers: the network has checked its input for NaN/Inf once, and the layers'
# own inputs are the previous layers' spikes, so they skip the (memory-bound) finiteness pass.
_INPUT_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("spikescale_input_checked", default=False)


@contextlib.contextmanager
def checked_input() -> Iterator[None]:
    """Within this block, :func:`check_sequence` checks shapes only (the caller checked finiteness)."""
    token = _INPUT_CHECKED.set(True)
    try:
        yield
    finally:
        _INPUT_CHECKED.reset(token)


def check_sequence(x: Tensor, features: int, who: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite time-major ``[T, B, features]`` tensor."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{who}: expected a tensor [T, B, {features}], got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != features:
        raise ValueError(
            f"{who}: expected input of shape [T, B, {features}] (time-major), got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{who}: the input has no time steps (shape {tuple(x.shape)})")
    if not _INPUT_CHECKED.get():
        _check_finite(x, who)


def check_step(x: Tensor, features: int, who: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite ``[B, features]`` tensor (one time step)."""
    if x.dim() != 2 or x.shape[-1] != features:
        raise ValueError(f"{who}.step: expected one time step of shape [B, {features}], got {tuple(x.shape)}")
    _check_finite(x, f"{who}.step")


class Soma(nn.Module):
    """LIF soma of a layer: its factor β (a :class:`TimingFactor`), threshold and reset settings.

    Args:
        neurons: number of neurons ``N``.
        beta_init, learn_beta, timing, dt: the β :class:`TimingFactor` (``timing`` = parameterisation).
        threshold: firing threshold θ; ``learn_threshold`` makes it a per-neuron parameter.
        reset: ``"soft"`` (subtract θ), ``"hard"`` (to zero) or ``"none"``; ``detach_reset`` cuts its gradient.
        surrogate: pseudo-derivative for the backward pass (name, mapping or instance).
        scale_input: drive the membrane with ``(1-β)·I`` (DH-SNN) instead of ``I``.
        faithful: start from the official DH-SNN random state ``u_0, s_0 ~ U(0, 1)`` instead of zeros.
    """

    def __init__(
        self,
        neurons: int,
        *,
        beta_init: InitLike = "medium",
        learn_beta: bool = True,
        timing: str = "sigmoid",
        dt: float = 1.0,
        threshold: float = 1.0,
        learn_threshold: bool = False,
        reset: str = "soft",
        detach_reset: bool = False,
        surrogate: SurrogateLike = "mg",
        scale_input: bool = True,
        faithful: bool = False,
    ) -> None:
        super().__init__()
        self.neurons = neurons
        self.beta = TimingFactor((neurons,), beta_init, param=timing, dt=dt, learnable=learn_beta)
        theta = torch.full((neurons,), float(threshold)) if learn_threshold else torch.tensor(float(threshold))
        if learn_threshold:
            self.threshold = nn.Parameter(theta)
        else:
            self.register_buffer("threshold", theta)
        self.reset = check_reset(reset)
        self.detach_reset = bool(detach_reset)
        self.surrogate = get_surrogate(surrogate)
        self.scale_input = bool(scale_input)
        self.faithful = bool(faithful)

    def options(self) -> dict[str, Any]:
        """Keyword arguments shared by the functional LIF / DH-LIF calls."""
        return {
            "surrogate": self.surrogate,
            "reset": self.reset,
            "detach_reset": self.detach_reset,
            "scale_input": self.scale_input,
        }

    def initial_state(self, batch: int, device=None, dtype=None) -> LIFState:
        shape = (batch, self.neurons)
        dtype = dtype or torch.get_default_dtype()
        if self.faithful:
            return LIFState(torch.rand(shape, device=device, dtype=dtype), torch.rand(shape, device=device, dtype=dtype))
        zeros = torch.zeros(shape, device=device, dtype=dtype)
        return LIFState(zeros, zeros)

    def extra_repr(self) -> str:
        return (
            f"neurons={self.neurons}, threshold={self.threshold.flatten()[0].item():g}, reset={self.reset!r}, "
            f"detach_reset={self.detach_reset}, surrogate={self.surrogate.spec()}, "
            f"scale_input={self.scale_input}, faithful={self.faithful}"
        )


class SpikingLayer(nn.Module):
    """Protocol of every layer: sequence and step modes, explicit state, synaptic-operation counts."""

    in_features: int
    out_features: int

    def initial_state(self, batch: int, device=None, dtype=None) -> NamedTuple:  # pragma: no cover
        raise NotImplementedError

    def _sequence(self, x: Tensor, state) -> tuple[Tensor, Any]:  # pragma: no cover
        raise NotImplementedError

    def _step(self, x: Tensor, state) -> tuple[Tensor, Any]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: Tensor, state: Optional[NamedTuple] = None) -> tuple[Tensor, Any]:
        """Process ``x [T, B, in_features]``; returns ``(out [T, B, out_features], final state)``."""
        check_sequence(x, self.in_features, type(self).__name__)
        if state is None:
            state = self.initial_state(x.shape[1], device=x.device, dtype=x.dtype)
        return self._sequence(x, state)

    def step(self, x: Tensor, state: Optional[NamedTuple] = None) -> tuple[Tensor, Any]:
        """Process one step ``x [B, in_features]``; returns ``(out [B, out_features], new state)``."""
        check_step(x, self.in_features, type(self).__name__)
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        return self._step(x, state)

    def input_fan_out(self) -> Tensor:
        """Synaptic targets of each input channel ``[in_features]`` (one per connected branch)."""
        raise NotImplementedError  # pragma: no cover

    def synaptic_operations(self, x: Tensor, spikes: Tensor) -> Tensor:
        """Accumulate operations of one call: non-zero input entries × their fan-out (summed over T, B)."""
        events = (x != 0).sum((0, 1)).to(torch.float64)
        return events @ self.input_fan_out().to(events)

    def parameter_count(self) -> int:
        """Effective trainable parameters (masked-out weights are not parameters)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
