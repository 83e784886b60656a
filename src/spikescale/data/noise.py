r"""Poisson input noise for the robustness experiments (DH-SNN Fig. 6c).

Every step and channel of a sample independently receives a noise spike with probability
:math:`p = r\,\Delta t` (a Poisson process of rate :math:`r` sampled per bin), added to the input:
``"or"`` keeps 0/1 frames binary (:math:`\max(x, n)`), ``"add"`` adds it to counts or currents.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .encoders import sample_generator

__all__ = ["NOISE_MODES", "noise_probability", "SpikeNoise"]

NOISE_MODES = ("or", "add")


def noise_probability(rate_hz: float, dt_ms: float) -> float:
    """Per-bin spike probability ``rate·dt`` of a Poisson noise rate (must stay ≤ 1)."""
    p = rate_hz * dt_ms / 1000.0
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"noise rate {rate_hz} Hz at dt={dt_ms} ms gives p={p}; expected a probability in [0, 1]")
    return p


class SpikeNoise(Dataset):
    """Wrap a dataset of ``(x [T, C], label)`` and add Bernoulli(``p``) spikes to every ``x``.

    With ``seed`` the noise of each sample is fixed (same draws for sample ``i`` in every epoch and
    worker, so test results are reproducible); with ``seed=None`` it is redrawn at every access.
    """

    def __init__(self, dataset: Dataset, p: float, *, mode: str = "or", seed: Optional[int] = 0):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"noise probability must lie in [0, 1], got {p}")
        if mode not in NOISE_MODES:
            raise ValueError(f"unknown noise mode {mode!r}; expected one of {NOISE_MODES}")
        self.dataset, self.p, self.mode, self.seed = dataset, float(p), mode, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x, label = self.dataset[index]
        generator = sample_generator(self.seed, index) if self.seed is not None else None
        noise = (torch.rand(x.shape, generator=generator) < self.p).to(x.dtype)
        return (torch.maximum(x, noise) if self.mode == "or" else x + noise), label
