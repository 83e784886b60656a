r"""Input encoders for real-valued time series ``x [T, C]`` and per-channel normalisation.

* **direct** (current injection): the values themselves drive the first layer, :math:`I_t = x_t`.
* **level crossing** (threshold / delta crossing): with levels :math:`k\delta` and
  :math:`L_t = \lfloor x_t/\delta \rfloor` (:math:`L_{-1} = L_0`, so nothing fires at the start), an
  "up" channel emits :math:`\max(L_t - L_{t-1}, 0)` spikes and a "down" channel
  :math:`\max(L_{t-1} - L_t, 0)`; the output is ``[T, 2C]`` (up channels first) or ``[T, C]`` (up only).
* **rate** (Bernoulli): :math:`s_t \sim \text{Bernoulli}(\text{clip}(g\,x_t, 0, 1))` per step and channel.

:class:`ChannelNormalizer` is fitted on the valid steps of the training split only, then applied to
every split: ``"standard"`` :math:`(x-\mu_c)/\sigma_c`, ``"minmax"`` :math:`(x-\min_c)/(\max_c-\min_c)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ENCODERS",
    "NORMALIZATIONS",
    "level_crossing",
    "rate_code",
    "sample_generator",
    "ChannelNormalizer",
    "SeriesEncoder",
]

ENCODERS = ("direct", "delta", "rate")
NORMALIZATIONS = ("standard", "minmax", "none")


def sample_generator(seed: int, index: int) -> torch.Generator:
    """A generator fixed by ``(seed, index)``: the same draws for a sample whatever the worker or order."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def level_crossing(x: Tensor, delta: float, polarity: str = "both") -> Tensor:
    """Spike counts of level crossings of ``x [T, C]`` (see module docstring): ``[T, 2C]`` or ``[T, C]``."""
    if not delta > 0:
        raise ValueError(f"level-crossing delta must be > 0, got {delta}")
    if polarity not in ("both", "up"):
        raise ValueError(f"polarity must be 'both' or 'up', got {polarity!r}")
    level = torch.floor(x / delta)
    change = torch.diff(level, dim=0, prepend=level[:1])
    up = change.clamp(min=0)
    return torch.cat([up, (-change).clamp(min=0)], dim=-1) if polarity == "both" else up


def rate_code(x: Tensor, gain: float = 1.0, generator: Optional[torch.Generator] = None) -> Tensor:
    """Bernoulli spikes with probability ``clip(gain·x, 0, 1)`` per step and channel (same shape as ``x``)."""
    p = (gain * x).clamp(0.0, 1.0)
    return (torch.rand(x.shape, generator=generator) < p).to(x.dtype)


@dataclass
class ChannelNormalizer:
    """Per-channel affine map ``(x - shift) / scale`` (channels with no spread keep scale 1)."""

    shift: Tensor
    scale: Tensor

    @classmethod
    def fit(cls, series: Iterable[Tensor], mode: str = "standard") -> "ChannelNormalizer":
        """Fit on the valid steps of ``series`` (``[T_i, C]`` each), e.g. the training split only."""
        if mode not in NORMALIZATIONS:
            raise ValueError(f"unknown normalisation {mode!r}; expected one of {NORMALIZATIONS}")
        steps = torch.cat([torch.as_tensor(s, dtype=torch.float64) for s in series])
        if steps.numel() == 0:
            raise ValueError("cannot fit a normalisation on an empty training split")
        channels = steps.shape[-1]
        if mode == "none":
            return cls(torch.zeros(channels), torch.ones(channels))
        if mode == "standard":
            shift, scale = steps.mean(0), steps.std(0, unbiased=False)
        else:
            shift = steps.min(0).values
            scale = steps.max(0).values - shift
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return cls(shift.float(), scale.float())

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale


@dataclass(frozen=True)
class SeriesEncoder:
    """Normalise then encode one sample: ``(x [T, C], index) → [T, C']``.

    ``encoder`` is ``"direct"``, ``"delta"`` (level crossing with ``delta``, ``polarity``) or ``"rate"``
    (Bernoulli with ``gain``; draws fixed per sample when ``seed`` is set, fresh otherwise).
    """

    normalizer: Optional[ChannelNormalizer] = None
    encoder: str = "direct"
    delta: float = 0.5
    polarity: str = "both"
    gain: float = 1.0
    seed: Optional[int] = None

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; expected one of {ENCODERS}")

    def out_channels(self, channels: int) -> int:
        return 2 * channels if (self.encoder == "delta" and self.polarity == "both") else channels

    def __call__(self, x: Tensor, index: int) -> Tensor:
        if self.normalizer is not None:
            x = self.normalizer(x)
        if self.encoder == "delta":
            return level_crossing(x, self.delta, self.polarity)
        if self.encoder == "rate":
            generator = sample_generator(self.seed, index) if self.seed is not None else None
            return rate_code(x, self.gain, generator)
        return x
