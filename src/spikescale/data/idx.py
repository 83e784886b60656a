"""IDX files (the MNIST format) and the Fashion-MNIST / MNIST image sets.

IDX layout: a 4-byte magic ``0x00 0x00 <dtype> <ndim>``, ``ndim`` big-endian uint32 sizes, then the data
in big-endian order. Files may be gzip-compressed (``.gz``). Fashion-MNIST comes from Debian's
``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``); MNIST files with the same names
work the same way when a user has them.
"""

from __future__ import annotations

import gzip
import math
import os
import sys
import zlib
from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["read_idx", "load_image_set", "FASHION_MNIST_ROOT", "IDXError"]

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")

_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IDXError(ValueError):
    """A file is not a valid IDX file (the message names the file and the field)."""


def read_idx(path: Union[str, Path]) -> np.ndarray:
    """Read an IDX file (optionally ``.gz``) into a native-endian numpy array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as err:  # gzip: bad header (OSError), cut (EOFError), damaged (zlib.error)
        raise IDXError(f"{path}: cannot read ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IDXError(f"{path}: bad magic number (expected 0x0000 followed by type and rank)")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise IDXError(f"{path}: unknown data type code 0x{code:02x} (expected one of {[hex(c) for c in _DTYPES]})")
    if ndim == 0:
        raise IDXError(f"{path}: rank 0 in the header (expected at least one dimension)")
    if len(raw) < 4 + 4 * ndim:
        raise IDXError(f"{path}: header truncated (rank {ndim} needs {4 + 4 * ndim} header bytes, the file has {len(raw)})")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = _DTYPES[code]
    if math.prod(max(size, 1) for size in shape) * dtype.itemsize > sys.maxsize:
        raise IDXError(f"{path}: the header's shape {shape} is too large for an array")
    expected = math.prod(shape) * dtype.itemsize
    body = len(raw) - 4 - 4 * ndim
    if body != expected:
        raise IDXError(f"{path}: data has {body} bytes but the header's shape {shape} needs {expected}")
    data = np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"{root / stem}[.gz] not found. Fashion-MNIST: `apt-get install dataset-fashion-mnist` puts the files in "
        f"{FASHION_MNIST_ROOT}; or pass the folder holding the four IDX files."
    )


def _whole_numbers(path: Path, values: np.ndarray, high: int, what: str) -> None:
    """IDXError unless every value is an integer in ``[0, high]`` (checked before any cast could wrap it)."""
    if values.size and not (values.min() >= 0 and values.max() <= high and np.all(values == np.floor(values))):
        raise IDXError(f"{path}: {what} must be integers in [0, {high}], found values in [{values.min()}, {values.max()}]")


def load_image_set(root: Optional[Union[str, Path]] = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, H, W]`` and labels ``int64 [N]`` of an MNIST-format set (default: Fashion-MNIST).

    ``root`` defaults to ``$SPIKESCALE_FMNIST`` or ``/usr/share/datasets/fashion-mnist``. Pixels must be
    integers in 0…255 and labels non-negative integers (any IDX type holding such values is accepted);
    an empty set or images without pixels is an error naming the file.
    """
    if split not in _FILES:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    root = Path(root or os.environ.get("SPIKESCALE_FMNIST", FASHION_MNIST_ROOT))
    image_stem, label_stem = _FILES[split]
    image_path, label_path = _find(root, image_stem), _find(root, label_stem)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise IDXError(
            f"{root}: images {images.shape} and labels {labels.shape} do not form an image set (expected [N, H, W] and [N])"
        )
    if images.size == 0:
        raise IDXError(f"{image_path}: holds no pixels (shape {images.shape}); expected [N, H, W] with N, H, W >= 1")
    with np.errstate(invalid="ignore"):
        _whole_numbers(image_path, images, 255, "pixels")
        _whole_numbers(label_path, labels, 2**31 - 1, "labels")
    return images.astype(np.uint8), labels.astype(np.int64)
