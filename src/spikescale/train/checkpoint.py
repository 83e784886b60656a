"""Checkpoints: written atomically (write, fsync, rename), loaded without executing code.

A checkpoint is a plain dict of tensors and basic Python values saved with :func:`torch.save`; loading
uses ``weights_only=True``, so a file can never run code. A half-written file is never visible under the
final name: the data go to a temporary file in the same folder, which is fsynced and renamed over the
target, then the folder itself is fsynced.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "atomic_write_bytes", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt or does not match the model."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Union[str, Path], write) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path`` and atomically rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(path: Union[str, Path], payload: dict[str, Any]) -> None:
    """Atomically save ``payload`` (tensors, numbers, strings, lists and dicts of them)."""
    atomic_write_bytes(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: Union[str, Path], map_location="cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (weights only, no code execution)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"cannot load checkpoint {path}: {type(err).__name__}: {err}") from None
