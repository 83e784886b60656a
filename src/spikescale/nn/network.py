"""A stack of spiking layers and a readout, with whole-sequence and single-step modes."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from .base import SpikingLayer, check_sequence, check_step, checked_input
from .readout import Readout

__all__ = ["Network"]


class Network(nn.Module):
    """``layers[0] → … → layers[-1] → readout`` on time-major input.

    ``forward(x [T, B, C], state=None) -> (out [T, B, K], states)`` where ``states`` is a list with one
    entry per layer (readout last); ``step(x_t [B, C], state)`` is the streaming equivalent.
    """

    def __init__(self, layers: Sequence[SpikingLayer], readout: Readout) -> None:
        super().__init__()
        if not layers:
            raise ValueError("a Network needs at least one hidden layer")
        chain = list(layers) + [readout]
        for a, b in zip(chain[:-1], chain[1:]):
            if a.out_features != b.in_features:
                raise ValueError(
                    f"layer widths do not chain: {type(a).__name__} gives {a.out_features} features "
                    f"but {type(b).__name__} expects {b.in_features}"
                )
        self.layers = nn.ModuleList(layers)
        self.readout = readout

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self.readout.out_features

    def _modules_in_order(self) -> list[SpikingLayer]:
        return [*self.layers, self.readout]

    def initial_state(self, batch: int, device=None, dtype=None) -> list[Any]:
        return [m.initial_state(batch, device, dtype) for m in self._modules_in_order()]

    def forward(self, x: Tensor, state: Optional[list] = None) -> tuple[Tensor, list]:
        check_sequence(x, self.in_features, "Network")
        if state is None:
            state = self.initial_state(x.shape[1], x.device, x.dtype)
        new_state = []
        with checked_input():
            for module, s in zip(self._modules_in_order(), state):
                x, s = module(x, s)  # through __call__, so forward hooks (SpikeMonitor) see every layer
                new_state.append(s)
        return x, new_state

    def step(self, x: Tensor, state: Optional[list] = None) -> tuple[Tensor, list]:
        check_step(x, self.in_features, "Network")
        if state is None:
            state = self.initial_state(x.shape[0], x.device, x.dtype)
        new_state = []
        for module, s in zip(self._modules_in_order(), state):
            x, s = module.step(x, s)
            new_state.append(s)
        return x, new_state

    def hidden_spikes(self, x: Tensor) -> list[Tensor]:
        """Spike trains ``[T, B, N]`` of every hidden layer for input ``x`` (no gradients)."""
        check_sequence(x, self.in_features, "Network")
        spikes = []
        with torch.no_grad():
            state = self.initial_state(x.shape[1], x.device, x.dtype)
            for module, s in zip(self.layers, state):
                x, _ = module(x, s)
                spikes.append(x)
        return spikes
