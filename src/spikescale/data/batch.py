"""The batch contract shared by every dataset, objective and the trainer.

Datasets yield ``(x [T, C] float tensor, label)`` per sample (label: int class, or ``[T]`` per-step
labels). :func:`collate` pads samples to a time-major batch ``x [T_max, B, C]`` and records the true
``lengths [B]``. Static-input methods (TTFS) use ``x [B, C]`` instead; the trainer only moves tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["Batch", "collate"]


@dataclass
class Batch:
    """One batch.

    Attributes:
        x: ``[T, B, C]`` time-major inputs (``[B, C]`` for static inputs).
        y: ``[B]`` class labels, or ``[T, B]`` per-step labels.
        lengths: ``[B]`` valid steps per sample (``None``: all ``T`` valid).
        scored: ``[T, B]`` bool, steps that enter loss and accuracy (``None``: decided by the objective).
    """

    x: Tensor
    y: Tensor
    lengths: Optional[Tensor] = None
    scored: Optional[Tensor] = None

    def to(self, device, non_blocking: bool = False) -> "Batch":
        moved = {
            f.name: (getattr(self, f.name).to(device, non_blocking=non_blocking) if getattr(self, f.name) is not None else None)
            for f in fields(self)
        }
        return replace(self, **moved)

    def take(self, samples: slice) -> "Batch":
        """The samples selected by ``samples`` (a slice over the batch dimension)."""
        x = self.x[:, samples] if self.x.dim() == 3 else self.x[samples]
        return Batch(
            x,
            self.y[..., samples],
            None if self.lengths is None else self.lengths[samples],
            None if self.scored is None else self.scored[:, samples],
        )

    def head(self, n: int) -> "Batch":
        """The first ``n`` samples of the batch."""
        return self.take(slice(0, n))

    @property
    def size(self) -> int:
        """Number of samples."""
        return self.y.shape[-1]


def collate(samples: Sequence[tuple[Tensor, object]]) -> Batch:
    """Pad ``[(x [T_i, C], label), ...]`` to ``Batch(x [T_max, B, C], y [B], lengths [B])`` (zeros after ``T_i``)."""
    if not samples:
        raise ValueError("collate: empty list of samples")
    xs = [torch.as_tensor(x) for x, _ in samples]
    width = xs[0].shape[-1]
    for k, x in enumerate(xs):
        if x.dim() != 2 or x.shape[-1] != width:
            raise ValueError(f"collate: sample {k} has shape {tuple(x.shape)}; expected [T, {width}]")
    lengths = torch.tensor([x.shape[0] for x in xs])
    padded = xs[0].new_zeros(int(lengths.max()), len(xs), width)
    for k, x in enumerate(xs):
        padded[: x.shape[0], k] = x
    labels = torch.as_tensor([int(label) for _, label in samples], dtype=torch.long)
    return Batch(padded, labels, lengths)
