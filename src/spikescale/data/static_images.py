"""Static image sets (Fashion-MNIST, MNIST) as flat intensity vectors for TTFS networks.

Samples are ``(x [C] float in [0, 1], label)`` with ``C = H·W`` (pixel / 255). ``"train"`` and
``"valid"`` are a seeded stratified split of the official training file (default 10 % validation), so
the official test set is never used for model selection; ``"test"`` is the official test file.
:func:`collate_static` stacks samples into ``Batch(x [B, C], y [B])``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .batch import Batch
from .idx import load_image_set
from .splits import stratified_split

__all__ = ["StaticImageSet", "collate_static", "STATIC_SPLITS"]

STATIC_SPLITS = ("train", "valid", "test")


class StaticImageSet(Dataset):
    """One split of an MNIST-format image set.

    Args:
        split: ``"train"``, ``"valid"`` or ``"test"``.
        root: folder of the four IDX files (default: ``$SPIKESCALE_FMNIST`` or Debian's
            ``/usr/share/datasets/fashion-mnist``; MNIST files with the same names work the same).
        valid_fraction: share of each class of the training file held out as ``"valid"``.
        seed: seed of the split.

    Attributes ``images [N, C]`` (float32 in ``[0, 1]``) and ``labels [N]`` (int64) hold the whole
    split, for fast batching without a per-sample loop.
    """

    def __init__(
        self,
        split: str = "train",
        root: Optional[Union[str, Path]] = None,
        *,
        valid_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        if split not in STATIC_SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {STATIC_SPLITS}")
        images, labels = load_image_set(root, "test" if split == "test" else "train")
        if split != "test":
            train, valid = stratified_split(labels, valid_fraction, seed=seed)
            keep = train if split == "train" else valid
            images, labels = images[keep], labels[keep]
        self.split = split
        self.shape = tuple(images.shape[1:])
        self.images = torch.from_numpy(images.reshape(len(images), -1)).float().div_(255.0)
        self.labels = torch.from_numpy(labels)

    @property
    def features(self) -> int:
        return self.images.shape[1]

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


def collate_static(samples: Sequence[tuple[Tensor, int]]) -> Batch:
    """Stack ``[(x [C], label), ...]`` into ``Batch(x [B, C], y [B])``."""
    if not samples:
        raise ValueError("collate_static: empty list of samples")
    xs = [torch.as_tensor(x) for x, _ in samples]
    width = xs[0].shape[-1] if xs[0].dim() else 0
    for k, x in enumerate(xs):
        if x.dim() != 1 or x.shape[0] != width:
            raise ValueError(f"collate_static: sample {k} has shape {tuple(x.shape)}; expected [C] with C = {width}")
    return Batch(torch.stack(xs), torch.as_tensor([int(label) for _, label in samples], dtype=torch.long))
