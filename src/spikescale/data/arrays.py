"""Bring your own data: time series arrays, event lists, and ``.npz`` files.

* :class:`ArrayDataset`: numpy/torch arrays ``[N, C, T]`` (``layout="NCT"``) or ``[N, T, C]``
  (``"NTC"``) with integer labels and optional ``lengths``. Without lengths, variable-length series
  may be padded at the end with NaN: a sample's length is its last step holding any finite value,
  and the padding becomes zeros (masked by :func:`~spikescale.data.batch.collate` lengths). NaN or
  Inf inside the valid part is an error naming the sample and step.
* :class:`EventDataset`: per-sample event lists ``(times_s, units)`` binned like SHD.
* :func:`load_npz`: an ``.npz`` holding ``X_train``, ``y_train``, ``X_test``, ``y_test`` and optionally
  ``len_train``, ``len_test``; a damaged or unreadable archive, arrays of the wrong type or shape, or an
  empty training set are errors naming the file and the array.
* :func:`resample_series`: linear interpolation of each series to a new number of steps.
"""

from __future__ import annotations

import copy
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .events import EventBinning, bin_events, concat_events

__all__ = ["LAYOUTS", "ArrayDataset", "EventDataset", "load_npz", "resample_series"]

LAYOUTS = ("NCT", "NTC")

Transform = Callable[[Tensor, int], Tensor]


_MAX_LABEL = 2**31 - 1


def _real_numbers(values: np.ndarray, who: str, what: str) -> None:
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{who}: {what} must be real numbers, got dtype {values.dtype}")


def _labels(labels, count: int, who: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (count,):
        raise ValueError(f"{who}: labels have shape {labels.shape}; expected [{count}] (one per sample)")
    _real_numbers(labels, who, "labels")
    with np.errstate(invalid="ignore"):
        whole = np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))
    if labels.size and not (whole and labels.min() >= 0 and labels.max() <= _MAX_LABEL):
        raise ValueError(f"{who}: labels must be non-negative integers up to {_MAX_LABEL} (class indices)")
    return labels.astype(np.int64)


def _valid_lengths(x: np.ndarray, who: str) -> np.ndarray:
    """Lengths of NaN-padded ``x [N, T, C]``: one past the last step with a finite value."""
    finite_step = np.isfinite(x).any(axis=2)
    has_any = finite_step.any(axis=1)
    if not has_any.all():
        raise ValueError(f"{who}: sample {int(np.flatnonzero(~has_any)[0])} has no finite value")
    return x.shape[1] - np.argmax(finite_step[:, ::-1], axis=1)


class ArrayDataset(Dataset):
    """In-memory labelled time series; item ``i`` → ``(x [T_i, C'] float32, label)``.

    Args:
        x: ``[N, C, T]`` or ``[N, T, C]`` numbers (see ``layout``); NaN marks end padding.
        labels: ``[N]`` class indices.
        layout: ``"NCT"`` (default) or ``"NTC"``.
        lengths: ``[N]`` valid steps per sample (default: from the NaN padding, else all ``T``).
        transform: ``f(x [T_i, C], index) -> [T_i, C']`` applied per item (normalise, encode).
        name: used in error messages.
    """

    def __init__(
        self,
        x,
        labels,
        *,
        layout: str = "NCT",
        lengths: Optional[Sequence[int]] = None,
        transform: Optional[Transform] = None,
        name: str = "arrays",
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"{name}: unknown layout {layout!r}; expected one of {LAYOUTS}")
        x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x)
        _real_numbers(x, name, "the series")
        if x.ndim != 3:
            raise ValueError(f"{name}: expected a 3-D array [N, C, T] or [N, T, C], got shape {x.shape}")
        with np.errstate(over="ignore"):  # values beyond the float32 range become inf and are reported below
            x = x.astype(np.float32)
        if layout == "NCT":
            x = np.ascontiguousarray(x.transpose(0, 2, 1))
        count, steps, channels = x.shape
        if not (steps and channels):
            raise ValueError(f"{name}: series need at least one step and one channel, got {steps} steps × {channels} "
                             f"channels (layout={layout!r})")
        self.labels = _labels(labels, count, name)
        if lengths is None:
            lengths = _valid_lengths(x, name) if count else np.zeros(0, dtype=np.int64)
        lengths = np.asarray(lengths)
        _real_numbers(lengths, name, "lengths")
        if lengths.shape != (count,) or np.any(lengths != np.round(lengths)) or np.any((lengths < 1) | (lengths > steps)):
            raise ValueError(f"{name}: lengths must be [{count}] integers in [1, {steps}], got {lengths!r}")
        self.lengths = lengths.astype(np.int64)
        valid = np.arange(steps)[None, :] < self.lengths[:, None]
        bad = valid[:, :, None] & ~np.isfinite(x)
        if bad.any():
            sample, step, channel = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"{name}: sample {sample} has {x[sample, step, channel]} at step {step}, channel {channel}, inside "
                f"its valid length {self.lengths[sample]}; only trailing NaN padding is accepted (and values beyond "
                f"the float32 range, ±3.4e38, become inf)"
            )
        x[~valid] = 0.0
        self.x = torch.from_numpy(x)
        self.transform = transform
        self.channels = x.shape[2]
        self.name = name

    def with_transform(self, transform: Optional[Transform]) -> "ArrayDataset":
        """A view of the same arrays with another per-item transform."""
        view = copy.copy(self)
        view.transform = transform
        return view

    def __len__(self) -> int:
        return self.x.shape[0]

    def series(self, index: int) -> Tensor:
        """The valid part ``[T_i, C]`` of sample ``index`` before the transform."""
        return self.x[index, : int(self.lengths[index])]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x = self.series(index)
        if self.transform is not None:
            x = self.transform(x, index)
        return x, int(self.labels[index])


class EventDataset(Dataset):
    """Labelled event lists binned into frames: item ``i`` → ``(x [T_i, C] float32, label)``.

    ``events[i]`` is ``(times_s, units)`` (two arrays) or an ``[n, 2]`` array of ``(time_s, unit)`` rows.
    Float times keep their dtype (faithful binning compares them with the step edges in that dtype, as
    the official code does with SHD's float32 times); other times become float64.
    """

    def __init__(self, events: Sequence, labels, binning: EventBinning):
        pairs = []
        for i, sample in enumerate(events):
            if isinstance(sample, (tuple, list)) and len(sample) == 2:
                times, units = sample
            else:
                rows = np.asarray(sample)
                if rows.ndim != 2 or rows.shape[1] != 2:
                    raise ValueError(f"events[{i}]: expected (times, units) or an [n, 2] array, got shape {rows.shape}")
                times, units = rows[:, 0], rows[:, 1]
            units = np.asarray(units)
            if units.size and np.any(units != np.round(units)):
                raise ValueError(f"events[{i}]: units must be integer channel indices")
            times = np.asarray(times)
            if times.dtype.kind != "f":  # float times keep their type: faithful binning compares in it
                times = times.astype(np.float64)
            pairs.append((times, units.astype(np.int64)))
        self.labels = _labels(labels, len(pairs), "events")
        self.frames = bin_events(*concat_events(pairs), binning)
        self.channels = binning.out_channels

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.frames.dense(index), int(self.labels[index])


def resample_series(
    x: np.ndarray, lengths: np.ndarray, *, steps: Optional[int] = None, factor: Optional[float] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate the valid part of each series of ``x [N, T, C]``.

    ``steps``: every series gets exactly this many steps; ``factor``: series ``i`` gets
    ``max(1, round(factor·T_i))`` steps. Returns ``(x [N, T', C] zero-padded, lengths')``.
    """
    if (steps is None) == (factor is None):
        raise ValueError("resample: give exactly one of steps= or factor=")
    if steps is not None and steps < 1 or factor is not None and not factor > 0:
        raise ValueError(f"resample: steps must be >= 1 and factor > 0, got steps={steps}, factor={factor}")
    new_lengths = (
        np.full(len(lengths), int(steps)) if steps is not None else np.maximum(1, np.round(factor * lengths)).astype(np.int64)
    )
    out = np.zeros((x.shape[0], int(new_lengths.max(initial=1)), x.shape[2]), dtype=np.float32)
    for i, (old, new) in enumerate(zip(lengths, new_lengths)):
        series = torch.from_numpy(np.ascontiguousarray(x[i, :old].T))[None]  # [1, C, T_i]
        if old == 1:
            out[i, :new] = series[0, :, 0].numpy()
        else:
            out[i, :new] = F.interpolate(series, size=int(new), mode="linear", align_corners=True)[0].T.numpy()
    return out, new_lengths


_NPZ_KEYS = ("X_train", "y_train", "X_test", "y_test")
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip file's first entry, or an empty archive
# What numpy and zipfile raise on a damaged archive or member (bad zip structure, cut or corrupt data,
# a member needing a newer zip version or an unknown compression).
_ARCHIVE_ERRORS = (OSError, ValueError, EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error)


def _member(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except _ARCHIVE_ERRORS as err:
        raise ValueError(f"{path}: cannot read the array {key!r} ({err})") from None


def load_npz(path: Union[str, Path], layout: str = "NCT") -> dict[str, ArrayDataset]:
    """``{"train": ArrayDataset, "test": ArrayDataset}`` from an ``.npz`` (see module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"arrays file not found: {path} (expected an .npz with {', '.join(_NPZ_KEYS)})")
    with open(path, "rb") as handle:
        signature = handle.read(4)
    if signature not in _ZIP_SIGNATURES:  # else numpy would try the file as a single .npy array or a pickle
        raise ValueError(f"{path}: not an .npz archive (no zip signature at the start; expected the arrays "
                         f"{list(_NPZ_KEYS)} saved with numpy.savez)")
    try:
        archive = np.load(path, allow_pickle=False)
    except _ARCHIVE_ERRORS as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
    with archive:
        missing = [k for k in _NPZ_KEYS if k not in archive.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}; found {archive.files}, expected {list(_NPZ_KEYS)} "
                             f"(+ optional len_train, len_test)")
        splits = {}
        for split in ("train", "test"):
            lengths = _member(archive, f"len_{split}", path) if f"len_{split}" in archive.files else None
            splits[split] = ArrayDataset(
                _member(archive, f"X_{split}", path), _member(archive, f"y_{split}", path), layout=layout,
                lengths=lengths, name=f"{path.name}:{split}",
            )
    if not len(splits["train"]):
        raise ValueError(f"{path}: X_train holds no samples")
    widths = {s: d.channels for s, d in splits.items()}
    if widths["train"] != widths["test"]:
        raise ValueError(f"{path}: X_train has {widths['train']} channels but X_test has {widths['test']} (layout={layout!r})")
    return splits
