"""Parameter counting and optimiser parameter groups."""

from __future__ import annotations

from torch import nn

from .base import SpikingLayer
from .delays import DelayedDense
from .timing import TimingFactor

__all__ = ["GROUP_NAMES", "count_parameters", "param_groups"]


def count_parameters(model: nn.Module) -> int:
    """Effective trainable parameters: masked-out weights of DH layers are not counted.

    For a DH-SFNN layer this is ``MN + (2D+1)N``, for a DH-SRNN layer ``MN + N² + (2D+1)N`` (spec §3.1).
    """
    counted = set()
    total = 0
    for module in model.modules():
        if isinstance(module, SpikingLayer):
            total += module.parameter_count()
            counted.update(id(p) for p in module.parameters())
    total += sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in counted)
    return total


GROUP_NAMES = ("weights", "timing", "positions")  # every group param_groups can return


def param_groups(
    model: nn.Module,
    lr: float,
    *,
    timing_lr_scale: float = 1.0,
    weight_decay: float = 0.0,
    position_lr_scale: float = 1.0,
) -> list[dict]:
    """Optimiser groups: ``"weights"`` (everything else, with ``weight_decay``), ``"timing"`` (the
    parameters of every :class:`TimingFactor`, at ``lr × timing_lr_scale``) and ``"positions"`` (the delay
    positions of every :class:`DelayedDense`, at ``lr × position_lr_scale``; DCLS uses 100×). The last two
    have no weight decay.

    Groups carry a ``"name"`` key; empty groups are left out.
    """
    timing_ids = {
        id(p) for module in model.modules() if isinstance(module, TimingFactor) for p in module.parameters()
    }
    position_ids = {
        id(module.positions)
        for module in model.modules()
        if isinstance(module, DelayedDense) and module.positions is not None
    }
    special = timing_ids | position_ids
    trainable = [p for p in model.parameters() if p.requires_grad]

    def group(name: str, params: list, scale: float, decay: float) -> dict:
        return {"name": name, "params": params, "lr": lr * scale, "weight_decay": decay}

    groups = [
        group("weights", [p for p in trainable if id(p) not in special], 1.0, weight_decay),
        group("timing", [p for p in trainable if id(p) in timing_ids], timing_lr_scale, 0.0),
        group("positions", [p for p in trainable if id(p) in position_ids], position_lr_scale, 0.0),
    ]
    return [g for g in groups if g["params"]]
