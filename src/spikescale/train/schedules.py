r"""Per-epoch learning-rate schedules as multipliers of a group's base learning rate.

=============  ==========================================================================================
name           factor at epoch :math:`e` of :math:`E`
=============  ==========================================================================================
``none``       1
``step``       :math:`\gamma^{\lfloor e / s \rfloor}` (StepLR)
``cosine``     :math:`\tfrac12 (1 + \cos(\pi e / E))` (cosine annealing to 0, no restarts)
``onecycle``   from :math:`1/d` up to 1 over the first ``pct`` of the epochs, then cosine down to
               :math:`1/(d\,f)` (one-cycle; :math:`d = 25`, :math:`f = 10^4`, ``pct`` = 0.3)
=============  ==========================================================================================

Every parameter group may use its own schedule (e.g. one-cycle for weights and cosine for delay
positions, as the DCLS code does); all are stepped once per epoch.
"""

from __future__ import annotations

import math
from typing import Callable

__all__ = ["SCHEDULES", "schedule_factor"]

SCHEDULES = ("none", "step", "cosine", "onecycle")


def _cosine(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))


def schedule_factor(
    name: str,
    epochs: int,
    *,
    step_size: int = 1,
    gamma: float = 0.1,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Callable[[int], float]:
    """A function ``epoch -> learning-rate multiplier`` for :class:`torch.optim.lr_scheduler.LambdaLR`."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if name == "none":
        return lambda epoch: 1.0
    if name == "step":
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        return lambda epoch: gamma ** (epoch // step_size)
    if name == "cosine":
        return lambda epoch: _cosine(1.0, 0.0, epoch / epochs)
    rise = max(1, int(round(pct_start * epochs)))
    low, final = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

    def onecycle(epoch: int) -> float:
        if epoch < rise:
            return _cosine(low, 1.0, epoch / rise)
        return _cosine(1.0, final, (epoch - rise) / max(epochs - 1 - rise, 1))

    return onecycle
