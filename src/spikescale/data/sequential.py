r"""Sequential images: S-MNIST / S-FMNIST (one pixel per step) and the permuted PS- variants.

Image :math:`n` becomes the sequence :math:`x_t = (p_{\pi(t)} / 255 - \mu) / \sigma`,
:math:`t = 0 … HW-1`, one input channel (``[784, 1]`` for 28×28), where :math:`p` are the pixels in
row-major order, :math:`\mu, \sigma` the pixel mean and standard deviation of the *training* images
(DH-SNN uses the MNIST constants 0.1307 / 0.3081; Fashion-MNIST's are 0.2860 / 0.3530) and
:math:`\pi` is the identity (S-) or one fixed permutation drawn from a seeded generator (PS-; DH-SNN
draws ``randperm`` after seed 0, which :func:`pixel_permutation` with ``seed=0`` reproduces).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["SequentialImages", "pixel_permutation", "pixel_statistics"]


def pixel_permutation(size: int, seed: int = 0) -> Tensor:
    """The fixed pixel order of a PS- task: ``torch.randperm(size)`` from a generator seeded with ``seed``."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(int(seed)))


def pixel_statistics(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the ``uint8`` pixels of ``images`` scaled to [0, 1]."""
    counts = np.bincount(np.asarray(images, dtype=np.uint8).ravel(), minlength=256)  # exact, no float copy
    values = np.arange(256) / 255.0
    mean = float(counts @ values) / counts.sum()
    return mean, float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))


class SequentialImages(Dataset):
    """Images ``uint8 [N, H, W]`` as sequences ``(x [H·W, 1] float32, label)``.

    Args:
        images, labels: the image set (e.g. from :func:`spikescale.data.idx.load_image_set`).
        mean, std: normalisation (pass the training split's :func:`pixel_statistics` to every split).
        permutation: ``[H·W]`` pixel order (``None``: row-major, the S- task).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        mean: float = 0.0,
        std: float = 1.0,
        permutation: Optional[Tensor] = None,
    ):
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[0] != len(labels):
            raise ValueError(f"expected images [N, H, W] and labels [N], got {images.shape} and {np.shape(labels)}")
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).flatten(1)
        self.labels = np.asarray(labels, dtype=np.int64)
        if permutation is not None:
            permutation = torch.as_tensor(permutation, dtype=torch.long)
            if sorted(permutation.tolist()) != list(range(self.images.shape[1])):
                raise ValueError(f"permutation must reorder all {self.images.shape[1]} pixels exactly once")
        self.permutation = permutation
        self.mean, self.std = float(mean), float(std)
        self.channels = 1

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        pixels = self.images[index]
        if self.permutation is not None:
            pixels = pixels[self.permutation]
        x = (pixels.float() / 255.0 - self.mean) / self.std
        return x[:, None], int(self.labels[index])
