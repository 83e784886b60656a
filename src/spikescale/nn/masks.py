"""Branch masks: which input reaches which dendritic branch of which neuron (spec dh-snn §3).

A mask is a boolean tensor ``[N, D, M]``: ``mask[n, d, m]`` is true when input ``m`` feeds branch ``d``
of neuron ``n``. Inputs are padded to ``M_pad = M + pad`` with ``pad = (D - M mod D) mod D`` zero
entries before partitioning, as in the official code; padding slots are dropped from the mask.

Kinds:

* ``"random"`` — for each neuron an independent random permutation of the padded inputs; branch ``d``
  takes slots ``[d·M_pad/D, (d+1)·M_pad/D)``. Every input reaches every neuron exactly once (the official
  default).
* ``"grouped"`` — the same, but ``group_size`` consecutive neurons share one permutation (the
  neuromorphic-hardware variant); a layer computes it with block products. When ``N`` is not a
  multiple of the group size the last, smaller group gets its own permutation (the official code leaves
  those neurons without inputs; we do not).
* ``"contiguous"`` — branch ``d`` of every neuron takes the block ``[d·M_pad/D, (d+1)·M_pad/D)`` (the
  XOR wiring: with 40 inputs and D = 2, branch 0 sees channels 0–19 and branch 1 channels 20–39).
* ``sparsity=s`` (with ``"random"`` or ``"grouped"``) — branch ``d`` takes the circular window of
  ``round(s·M_pad)`` slots starting at ``d·M_pad/D``: ``s > 1/D`` overlaps branches, ``s < 1/D`` leaves
  inputs unconnected.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["MASK_KINDS", "branch_mask", "padded_width", "group_index"]

MASK_KINDS = ("random", "grouped", "contiguous")


def padded_width(inputs: int, branches: int) -> int:
    """``M_pad``: the input width rounded up to a multiple of the branch count."""
    return inputs + (branches - inputs % branches) % branches


def _windows(order: Tensor, branches: int, sparsity: Optional[float]) -> list[Tensor]:
    """Slots of each branch within one permutation ``order`` of the padded inputs."""
    width = order.numel()
    block = width // branches
    if sparsity is None:
        return [order[d * block:(d + 1) * block] for d in range(branches)]
    span = int(round(sparsity * width))
    starts = torch.arange(branches) * block
    return [order[(start + torch.arange(span)) % width] for start in starts.tolist()]


def branch_mask(
    neurons: int,
    inputs: int,
    branches: int,
    kind: str = "random",
    *,
    group_size: int = 32,
    sparsity: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Build a boolean branch mask ``[neurons, branches, inputs]`` (see module docstring)."""
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask {kind!r}; expected one of {MASK_KINDS}")
    if branches < 1 or branches > inputs:
        raise ValueError(f"branches must be between 1 and the number of inputs ({inputs}), got {branches}")
    if neurons < 1:
        raise ValueError(f"neurons must be >= 1, got {neurons}")
    if sparsity is not None and not 0.0 < sparsity <= 1.0:
        raise ValueError(f"sparsity must lie in (0, 1], got {sparsity}")
    if kind == "contiguous" and sparsity is not None:
        raise ValueError("sparsity applies to 'random' or 'grouped' masks, not 'contiguous'")
    if kind == "grouped" and group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    width = padded_width(inputs, branches)
    mask = torch.zeros(neurons, branches, width, dtype=torch.bool)
    share = {"random": 1, "grouped": group_size, "contiguous": neurons}[kind]
    for first in range(0, neurons, share):
        if kind == "contiguous":
            order = torch.arange(width)
        else:
            order = torch.randperm(width, generator=generator)
        for d, slots in enumerate(_windows(order, branches, sparsity)):
            mask[first:first + share, d, slots] = True
    return mask[..., :inputs].contiguous()


def group_index(mask: Tensor, group_size: int) -> Optional[Tensor]:
    """Input indices of each (group, branch) for block products, or ``None`` if ``mask`` is not grouped.

    Returns ``[N/G, D, K]`` long indices, with ``M`` (one past the last input) marking padding, such that
    every neuron of group ``g`` connects branch ``d`` exactly to ``index[g, d]``. ``None`` when ``N`` is not
    a multiple of ``G`` or the neurons of a group do not share their wiring.
    """
    neurons, branches, inputs = mask.shape
    if group_size < 1 or neurons % group_size:
        return None
    groups = mask.view(neurons // group_size, group_size, branches, inputs)
    if not torch.equal(groups, groups[:, :1].expand_as(groups)):
        return None
    leaders = groups[:, 0]  # [G', D, M]
    counts = leaders.sum(-1)
    width = int(counts.max())
    index = torch.full((leaders.shape[0], branches, width), inputs, dtype=torch.long)
    for g in range(leaders.shape[0]):
        for d in range(branches):
            members = leaders[g, d].nonzero().flatten()
            index[g, d, : members.numel()] = members
    return index
