"""The spiking XOR tasks of DH-SNN (spec dh-snn §4), generated fresh per batch.

Common rules: each pattern lasts ``pattern_steps`` (10) steps of Bernoulli spikes at rate ``low`` (0.2,
index 0) or ``high`` (0.6, index 1) on all channels of its signal; Bernoulli(``noise`` = 0.01) background
spikes on every channel and step are OR-ed in; the label is 1 iff the two rates differ.

* :func:`delayed_xor` — 20 channels; pattern A in ``[0, 10)``, pattern B in ``[T-10, T)``, noise only in
  between; scored steps ``t > T - 10`` (the last 9).
* :func:`multiscale_xor` — 40 channels, ``T = 100``: signal 1 (channels 0–19) in ``[0, 10)``; signal 2
  (channels 20–39) in ``⌊(T-10)/15⌋ = 6`` cycles, cycle ``k`` spanning ``[10+15k, 25+15k)`` = 5 gap steps
  then a 10-step pattern with a fresh rate; the target of the whole cycle is XOR(signal 1, cycle k);
  scored steps ``t > 10`` and ``(t - 10) mod 15 > 5`` (9 per cycle, 54 in all).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

__all__ = ["XORBatch", "delayed_xor", "multiscale_xor", "XOR_TASKS"]


class XORBatch(NamedTuple):
    """``x [T, B, C]`` float spikes, ``labels [T, B]`` long targets, ``scored [T, B]`` bool steps that count."""

    x: Tensor
    labels: Tensor
    scored: Tensor


def _bernoulli(shape, rate, generator) -> Tensor:
    return torch.rand(shape, generator=generator) < rate


def _pattern(steps: int, rates: Tensor, channels: int, generator) -> Tensor:
    """``[steps, B, channels]`` spikes at per-sample ``rates [B]``."""
    return torch.rand((steps, rates.numel(), channels), generator=generator) < rates[None, :, None]


def _check(batch: int, **sizes: int) -> None:
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def delayed_xor(
    batch: int,
    *,
    steps: int = 150,
    channels: int = 20,
    pattern_steps: int = 10,
    low: float = 0.2,
    high: float = 0.6,
    noise: float = 0.01,
    generator: Optional[torch.Generator] = None,
) -> XORBatch:
    """Delayed spiking XOR: patterns at the start and the end, ``steps - 2·pattern_steps`` apart."""
    _check(batch, channels=channels, pattern_steps=pattern_steps)
    if steps < 2 * pattern_steps:
        raise ValueError(f"steps must be at least 2·pattern_steps = {2 * pattern_steps}, got {steps}")
    rate_table = torch.tensor([low, high])
    first = torch.randint(0, 2, (batch,), generator=generator)
    second = torch.randint(0, 2, (batch,), generator=generator)
    spikes = _bernoulli((steps, batch, channels), noise, generator)
    spikes[:pattern_steps] |= _pattern(pattern_steps, rate_table[first], channels, generator)
    spikes[steps - pattern_steps:] |= _pattern(pattern_steps, rate_table[second], channels, generator)
    labels = (first != second).long().expand(steps, batch).clone()
    scored = (torch.arange(steps) > steps - pattern_steps)[:, None].expand(steps, batch).clone()
    return XORBatch(spikes.float(), labels, scored)


def multiscale_xor(
    batch: int,
    *,
    steps: int = 100,
    channels: int = 40,
    pattern_steps: int = 10,
    gap: int = 5,
    low: float = 0.2,
    high: float = 0.6,
    noise: float = 0.01,
    generator: Optional[torch.Generator] = None,
) -> XORBatch:
    """Multi-timescale spiking XOR: one slow signal, ``(T - P) // (gap + P)`` fast cycles (see module doc)."""
    _check(batch, channels=channels, pattern_steps=pattern_steps, gap=gap)
    if channels % 2:
        raise ValueError(f"channels must be even (two signals of channels/2), got {channels}")
    cycle = gap + pattern_steps
    cycles = (steps - pattern_steps) // cycle
    if cycles < 1:
        raise ValueError(f"steps={steps} leaves no room for a signal-2 cycle of {cycle} steps after the first pattern")
    half = channels // 2
    rate_table = torch.tensor([low, high])
    slow = torch.randint(0, 2, (batch,), generator=generator)
    fast = torch.randint(0, 2, (cycles, batch), generator=generator)
    spikes = _bernoulli((steps, batch, channels), noise, generator)
    spikes[:pattern_steps, :, :half] |= _pattern(pattern_steps, rate_table[slow], half, generator)
    labels = torch.zeros(steps, batch, dtype=torch.long)
    for k in range(cycles):
        start = pattern_steps + k * cycle
        on = start + gap
        spikes[on:on + pattern_steps, :, half:] |= _pattern(pattern_steps, rate_table[fast[k]], half, generator)
        labels[start:start + cycle] = (slow != fast[k]).long()
    t = torch.arange(steps)
    offset = t - pattern_steps
    scored = (t > pattern_steps) & (offset % cycle > gap) & (t < pattern_steps + cycles * cycle)
    return XORBatch(spikes.float(), labels, scored[:, None].expand(steps, batch).clone())


XOR_TASKS = {"delayed_xor": delayed_xor, "multiscale_xor": multiscale_xor}
