"""The Heidelberg spiking data sets (SHD, SSC) and every file in their HDF5 schema.

Schema (Cramer et al. 2020; one file per split, e.g. ``shd_train.h5``)::

    spikes/times   [N] variable-length float arrays, spike times in seconds
    spikes/units   [N] variable-length integer arrays, input unit 0 … 699 of each spike
    labels         [N] integer class of each sample
    extra/speaker  [N] integer speaker id (optional here)
    extra/keys     [classes] class names (optional)
    extra/meta_info/{gender, age, body_height}  per speaker (optional, not used)

:class:`SpikeFile` reads such a file lazily: the HDF5 handle is opened on first use in each process
(so a dataset handed to DataLoader workers never shares a handle across a fork) and is never pickled.
:class:`SpikeFileDataset` turns samples into frames with :func:`~spikescale.data.events.bin_events`,
either per item or, with a cache folder, all at once into a memory-mapped on-disk cache keyed by the
file's SHA-256 and the binning settings. The audio encoder writes the same schema, so encoded audio
goes through the same path.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import atomic_path, cache_root, file_checksum, load_arrays, settings_digest, store_arrays
from .events import EventBinning, SparseFrames, bin_events, concat_events, concat_frames

__all__ = [
    "SpikeFileError",
    "SpikeFile",
    "SpikeFileDataset",
    "write_spike_file",
    "frames_cache_dir",
]

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

REQUIRED_KEYS = ("spikes/times", "spikes/units", "labels")
# Each event dataset: one variable-length array per sample, of these numpy kinds.
_EVENT_KINDS = {"spikes/times": ("iuf", "numbers (seconds)"), "spikes/units": ("iu", "integers (unit ids)")}
_MAX_ID = 2**31  # labels and speaker ids are non-negative integers below this
_CACHE_FORMAT = 1
_BLOCK_SAMPLES = 2048


class SpikeFileError(ValueError):
    """A file is not a valid spike file in the SHD schema (the message names the file and the key)."""


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


class SpikeFile:
    """Lazy reader of one SHD-schema HDF5 file.

    Opening validates the schema and reads the small per-sample arrays (labels, speakers, class names);
    spike events are read on demand. Errors name the file and the key: missing file →
    ``FileNotFoundError``; not HDF5, truncated, missing keys, wrong types, labels or speaker ids that are
    not non-negative integers, labels beyond ``extra/keys`` or inconsistent lengths → :class:`SpikeFileError`.
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"spike file not found: {self.path}")
        self._handle: Optional[h5py.File] = None
        self._pid: Optional[int] = None
        with self._open() as f:
            self._validate(f)
            self.labels = self._ids(self._read(f, "labels"), "labels")
            self.speakers = self._ids(self._read(f, "extra/speaker"), "extra/speaker") if self._has(f, "extra/speaker") else None
            self.class_names = _decode(self._read(f, "extra/keys")) if self._has(f, "extra/keys") else None
            self.attrs = dict(f.attrs)
        if self.speakers is not None and self.speakers.shape != self.labels.shape:
            raise SpikeFileError(
                f"{self.path}: extra/speaker has {self.speakers.shape} entries but labels has {self.labels.shape}; "
                f"expected one speaker per sample"
            )
        if self.class_names is not None and len(self) and self.labels.max() >= len(self.class_names):
            raise SpikeFileError(
                f"{self.path}: labels go up to {self.labels.max()} but extra/keys names {len(self.class_names)} classes"
            )

    def _open(self) -> h5py.File:
        try:
            return h5py.File(self.path, "r")
        except OSError as err:
            raise SpikeFileError(f"{self.path}: not a readable HDF5 file (truncated or corrupt?): {err}") from None

    def _corrupt(self, what: str, err: Exception) -> SpikeFileError:
        return SpikeFileError(f"{self.path}: cannot read {what} (truncated or corrupt?): {err}")

    def _has(self, f: h5py.File, key: str) -> bool:
        try:
            return key in f
        except (OSError, KeyError, RuntimeError, ValueError) as err:  # h5py's errors on a damaged object table
            raise self._corrupt(repr(key), err) from None

    def _read(self, f: h5py.File, key: str) -> np.ndarray:
        try:
            return f[key][()]
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as err:
            raise self._corrupt(repr(key), err) from None

    def _ids(self, values: np.ndarray, key: str) -> np.ndarray:
        """``values`` (labels or speaker ids) as int64, if they are whole numbers in ``[0, 2^31)``."""
        values = np.asarray(values)
        if values.dtype.kind not in "iuf":
            raise SpikeFileError(f"{self.path}: {key} must hold integers, got dtype {values.dtype}")
        with np.errstate(invalid="ignore"):
            bad = ~((values >= 0) & (values < _MAX_ID) & (values == np.floor(values)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SpikeFileError(
                f"{self.path}: {key} of sample {i} is {values[i]!r}; expected a non-negative integer below 2^31"
            )
        return values.astype(np.int64)

    def _validate(self, f: h5py.File) -> None:
        for key in REQUIRED_KEYS:
            if not self._has(f, key):
                raise SpikeFileError(
                    f"{self.path}: missing key {key!r}; expected the SHD schema with "
                    f"{', '.join(REQUIRED_KEYS)} (and optionally extra/speaker, extra/keys)"
                )
            try:
                node = f[key]
            except (OSError, KeyError, RuntimeError, ValueError) as err:
                raise self._corrupt(repr(key), err) from None
            if not isinstance(node, h5py.Dataset) or node.ndim != 1:
                raise SpikeFileError(f"{self.path}: {key!r} must be a 1-D dataset, got {node}")
            if key in _EVENT_KINDS:
                kinds, what = _EVENT_KINDS[key]
                base = h5py.check_vlen_dtype(node.dtype)
                if not isinstance(base, np.dtype) or base.kind not in kinds:
                    raise SpikeFileError(
                        f"{self.path}: {key!r} must hold one variable-length array of {what} per sample, "
                        f"got dtype {node.dtype if base is None else base}"
                    )
        sizes = {key: f[key].shape[0] for key in REQUIRED_KEYS}
        if len(set(sizes.values())) != 1:
            raise SpikeFileError(f"{self.path}: datasets differ in length {sizes}; expected one entry per sample in each")

    def _file(self) -> h5py.File:
        """The handle of this process (opened on first use after construction or a fork)."""
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._open()
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        return state

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def classes(self) -> int:
        """Number of classes: the length of ``extra/keys`` if present, else ``max(label) + 1``."""
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if len(self) else 0

    def events(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(times [n] seconds, units [n])`` of one sample."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.path}: sample {index} out of range for {len(self)} samples")
        f = self._file()
        try:
            times, units = f["spikes/times"][index], f["spikes/units"][index]
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            raise self._corrupt(f"the spikes of sample {index}", err) from None
        if times.shape != units.shape:
            raise SpikeFileError(f"{self.path}: sample {index} has {times.size} times but {units.size} units")
        return times, units

    def read_all(self, start: int = 0, stop: Optional[int] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Events of samples ``start:stop`` (default all) concatenated: ``(times, units, offsets)``."""
        f = self._file()
        stop = len(self) if stop is None else stop
        try:
            times = f["spikes/times"][start:stop]
            units = f["spikes/units"][start:stop]
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            raise self._corrupt(f"the spikes of samples {start}–{stop - 1}", err) from None
        for i, (t, u) in enumerate(zip(times, units)):
            if t.shape != u.shape:
                raise SpikeFileError(f"{self.path}: sample {start + i} has {t.size} times but {u.size} units")
        return concat_events(list(zip(times, units)))


def write_spike_file(
    path: PathLike,
    samples: Sequence[tuple[np.ndarray, np.ndarray]],
    labels: Sequence[int],
    *,
    speakers: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    extra: Optional[dict[str, Sequence[str]]] = None,
    attrs: Optional[dict] = None,
) -> Path:
    """Write events in the SHD schema (times float32 seconds, units uint16), atomically.

    ``extra`` adds string datasets under ``extra/`` (e.g. ``files``, ``speaker_names``); ``attrs`` are
    stored as root attributes (e.g. the encoder settings and the source licence).
    """
    if len(samples) != len(labels):
        raise ValueError(f"{len(samples)} samples but {len(labels)} labels")
    path = Path(path)
    strings = h5py.string_dtype()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float32))
            units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
            for i, (t, u) in enumerate(samples):
                times[i] = np.asarray(t, dtype=np.float32)
                units[i] = np.asarray(u, dtype=np.uint16)
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
            if speakers is not None:
                f.create_dataset("extra/speaker", data=np.asarray(speakers, dtype=np.uint16))
            if class_names is not None:
                f.create_dataset("extra/keys", data=list(class_names), dtype=strings)
            for key, values in (extra or {}).items():
                f.create_dataset(f"extra/{key}", data=list(values), dtype=strings)
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
    return path


def frames_cache_dir(path: PathLike, binning: EventBinning, cache_dir: Optional[PathLike] = None) -> Path:
    """Cache folder of ``path`` binned with ``binning``: ``<cache>/frames/<stem>-<sha256[:16]>-<settings>``."""
    checksum = file_checksum(path, cache_dir)
    key = settings_digest(f"{_CACHE_FORMAT}:{binning.key()}")
    return cache_root(cache_dir) / "frames" / f"{Path(path).stem}-{checksum[:16]}-{key}"


def _build_frames_cache(source: SpikeFile, binning: EventBinning, cache_dir: Optional[PathLike]) -> Path:
    """The cache folder of ``source`` binned with ``binning``, binning the whole file if it is missing."""
    directory = frames_cache_dir(source.path, binning, cache_dir)
    if load_arrays(directory) is None:
        log.info("binning %s (%d samples, dt=%g ms) into %s", source.path, len(source), binning.dt_ms, directory)
        # Read and bin blocks of samples: peak memory is the output plus one block, not the whole file.
        frames = concat_frames([
            bin_events(*source.read_all(a, min(a + _BLOCK_SAMPLES, len(source))), binning, source=str(source.path), first_sample=a)
            for a in range(0, max(len(source), 1), _BLOCK_SAMPLES)
        ])
        arrays = {name: getattr(frames, name) for name in ("steps", "chans", "counts", "offsets", "lengths")}
        store_arrays(directory, arrays, {"channels": frames.channels, "binning": binning.key(), "source": str(source.path)})
    return directory


def _load_frames(directory: Path) -> SparseFrames:
    entry = load_arrays(directory)
    if entry is None:
        raise FileNotFoundError(f"frame cache {directory} disappeared; delete the dataset object and load it again")
    arrays, meta = entry
    return SparseFrames(**arrays, channels=int(meta["channels"]))


class SpikeFileDataset(Dataset):
    """Frames of an SHD-schema file: item ``i`` → ``(x [T_i, C] float32, label int)``.

    Args:
        path: the HDF5 file (SHD/SSC split, or encoded audio).
        binning: how events become frames (:class:`~spikescale.data.events.EventBinning`).
        cache: bin the whole file once and keep the frames in the on-disk cache (memory-mapped, shared
            by DataLoader workers); ``False`` bins each item when it is read.
        cache_dir: cache folder (see :func:`~spikescale.data.cache.cache_root`).

    Attributes ``labels``, ``speakers`` (or ``None``), ``class_names`` and ``channels`` describe the data.
    """

    def __init__(
        self,
        path: PathLike,
        binning: EventBinning = EventBinning(),
        *,
        cache: bool = True,
        cache_dir: Optional[PathLike] = None,
    ):
        self.source = SpikeFile(path)
        self.binning = binning
        self.labels = self.source.labels
        self.speakers = self.source.speakers
        self.class_names = self.source.class_names
        self.channels = binning.out_channels
        self._cache_entry = _build_frames_cache(self.source, binning, cache_dir) if cache else None
        self._frames: Optional[SparseFrames] = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_frames"] = None  # memory maps are reopened in the receiving process, never copied
        return state

    def __len__(self) -> int:
        return len(self.source)

    def frames(self, index: int) -> torch.Tensor:
        """``[T, C]`` float32 frames of sample ``index``."""
        if self._cache_entry is not None:
            if self._frames is None:
                self._frames = _load_frames(self._cache_entry)
            return self._frames.dense(index)
        times, units = self.source.events(index)
        single = bin_events(times, units, np.array([0, times.size]), self.binning, source=f"{self.source.path}[{index}]")
        return single.dense(0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.frames(index), int(self.labels[index])
