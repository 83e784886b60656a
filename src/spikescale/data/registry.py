"""Named data sources for recipes: ``load_splits(name, **options) -> DataSplits``.

Every split yields ``(x [T, C] float32 tensor, label int)`` and is batched with
:func:`spikescale.data.batch.collate`. ``list_datasets()`` names the sources and their options (with
defaults); unknown names or options raise a ``ValueError`` listing the allowed ones, and missing files
raise ``FileNotFoundError`` saying how to get them.

Common options: ``valid_fraction`` / ``seed`` (a seeded validation split carved from the training data,
stratified by label and, where known, speaker; 0 for none), ``noise_hz`` (Poisson input noise rate
added to the splits in ``noise_splits``, spike sources only: fixed per sample in valid/test, redrawn at
every access in train) and ``cache_dir``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .arrays import ArrayDataset, load_npz, resample_series
from .audio import CochlearEncoder
from .cache import data_home
from .download import find_split_file
from .encoders import ChannelNormalizer, SeriesEncoder
from .events import EventBinning
from .heidelberg import SpikeFileDataset
from .idx import load_image_set
from .noise import SpikeNoise, noise_probability
from .sequential import SequentialImages, pixel_permutation, pixel_statistics
from .speech import FSDD, AudioFolder
from .splits import carve_validation

__all__ = ["DataSplits", "DATASETS", "load_splits", "list_datasets"]

PathLike = Union[str, Path]
SPLIT_NAMES = ("train", "valid", "test")


@dataclass
class DataSplits:
    """The splits of one data source.

    Attributes:
        train, valid, test: torch Datasets of ``(x [T, C] float32, label int)`` (``valid`` may be ``None``).
        channels: input channels ``C``.
        classes: number of classes.
        dt_ms: milliseconds per step (``None`` where steps are not time bins, e.g. pixels).
        description: one line saying what the data are and how they were prepared.
    """

    train: Dataset
    valid: Optional[Dataset]
    test: Dataset
    channels: int
    classes: int
    dt_ms: Optional[float]
    description: str


def _with_noise(splits: DataSplits, noise_hz: float, noise_splits: Sequence[str], binary: bool, seed: int) -> DataSplits:
    if not noise_hz:
        return splits
    noise_splits = (noise_splits,) if isinstance(noise_splits, str) else tuple(noise_splits)
    if splits.dt_ms is None:
        raise ValueError("noise_hz needs time-binned spike inputs (this source has no dt_ms)")
    unknown = set(noise_splits) - set(SPLIT_NAMES)
    if unknown:
        raise ValueError(f"unknown noise_splits {sorted(unknown)}; expected names from {SPLIT_NAMES}")
    p = noise_probability(noise_hz, splits.dt_ms)
    for offset, name in enumerate(SPLIT_NAMES):
        data = getattr(splits, name)
        if name in noise_splits and data is not None:
            draws = None if name == "train" else seed + 7919 * offset  # fresh per epoch for training, fixed for evaluation
            setattr(splits, name, SpikeNoise(data, p, mode="or" if binary else "add", seed=draws))
    splits.description += f"; Poisson input noise {noise_hz:g} Hz (p={p:.3g} per bin) on {', '.join(noise_splits)}"
    return splits


def _binning_text(b: EventBinning) -> str:
    span = f"{b.duration_ms:g} ms" if b.duration_ms is not None else "each sample's length"
    kind = "binary" if b.binary else "count"
    return (
        f"{kind} frames, dt={b.dt_ms:g} ms over {span} from {b.align.replace('_', ' ')}, "
        f"{b.channels}→{b.out_channels} channels" + (", DH-SNN faithful binning" if b.faithful else "")
    )


def _heidelberg(
    dataset: str,
    root: Optional[PathLike],
    binning: EventBinning,
    valid_fraction: float,
    seed: int,
    cache: bool,
    cache_dir: Optional[PathLike],
) -> tuple[Dataset, Optional[Dataset], Dataset, SpikeFileDataset]:
    root = Path(root).expanduser() if root is not None else data_home() / dataset

    def load(split: str) -> SpikeFileDataset:
        return SpikeFileDataset(find_split_file(root, f"{dataset}_{split}.h5", dataset), binning, cache=cache, cache_dir=cache_dir)

    train_file, test = load("train"), load("test")
    if dataset == "ssc":
        return train_file, load("valid"), test, train_file
    if not valid_fraction:
        return train_file, None, test, train_file
    train, valid = carve_validation(np.arange(len(train_file)), train_file.labels, valid_fraction, seed, train_file.speakers)
    return Subset(train_file, train.tolist()), Subset(train_file, valid.tolist()), test, train_file


def shd(
    root: Optional[PathLike] = None,
    dt_ms: float = 1.0,
    duration_ms: Optional[float] = 1000.0,
    align: str = "zero",
    pool: int = 1,
    binary: bool = True,
    faithful: bool = False,
    valid_fraction: float = 0.1,
    seed: int = 0,
    noise_hz: float = 0.0,
    noise_splits: Sequence[str] = ("test",),
    cache: bool = True,
    cache_dir: Optional[PathLike] = None,
) -> DataSplits:
    """Spiking Heidelberg Digits: official train/test, validation carved from train (by speaker and label).

    Defaults follow DH-SNN (1 ms binary frames over the first second); DCLS uses ``dt_ms=10,
    duration_ms=None, align="first_spike", pool=5, binary=False``. ``faithful`` adds the official DH-SNN
    quirks (``t <= i·dt`` bins, channel reversal, unit 0 dropped). Files: ``root`` or
    ``$SPIKESCALE_DATA/shd`` (``spikescale data download shd``).
    """
    binning = EventBinning(dt_ms=dt_ms, duration_ms=duration_ms, align=align, pool=pool, binary=binary, faithful=faithful)
    train, valid, test, data = _heidelberg("shd", root, binning, valid_fraction, seed, cache, cache_dir)
    splits = DataSplits(train, valid, test, binning.out_channels, data.source.classes, dt_ms,
                        f"SHD (Cramer et al. 2020, CC BY 4.0): {_binning_text(binning)}")
    return _with_noise(splits, noise_hz, noise_splits, binary, seed)


def ssc(
    root: Optional[PathLike] = None,
    dt_ms: float = 1.0,
    duration_ms: Optional[float] = 1000.0,
    align: str = "zero",
    pool: int = 1,
    binary: bool = True,
    faithful: bool = False,
    noise_hz: float = 0.0,
    noise_splits: Sequence[str] = ("test",),
    seed: int = 0,
    cache: bool = True,
    cache_dir: Optional[PathLike] = None,
) -> DataSplits:
    """Spiking Speech Commands with the official train / valid / test files (same binning options as shd)."""
    binning = EventBinning(dt_ms=dt_ms, duration_ms=duration_ms, align=align, pool=pool, binary=binary, faithful=faithful)
    train, valid, test, data = _heidelberg("ssc", root, binning, 0.0, seed, cache, cache_dir)
    splits = DataSplits(train, valid, test, binning.out_channels, data.source.classes, dt_ms,
                        f"SSC (Cramer et al. 2020, CC BY 4.0): {_binning_text(binning)}")
    return _with_noise(splits, noise_hz, noise_splits, binary, seed)


def _audio_encoder(channels, sample_rate, scale, spikes, gain, step_ms) -> CochlearEncoder:
    return CochlearEncoder(channels=channels, sample_rate=sample_rate, scale=scale, spikes=spikes, gain=gain, step_ms=step_ms)


def fsdd(
    root: Optional[PathLike] = None,
    channels: int = 700,
    scale: str = "erb",
    spikes: str = "lif",
    gain: float = 4.5,
    step_ms: float = 0.5,
    dt_ms: float = 1.0,
    duration_ms: Optional[float] = None,
    align: str = "zero",
    pool: int = 1,
    binary: bool = False,
    valid_fraction: float = 0.1,
    seed: int = 0,
    noise_hz: float = 0.0,
    noise_splits: Sequence[str] = ("test",),
    cache_dir: Optional[PathLike] = None,
    progress: bool = True,
) -> DataSplits:
    """Free Spoken Digit Dataset (8 kHz) through the cochlear encoder; test = recording indices 0–4.

    The validation split is carved from the training recordings by speaker and digit. Credit the FSDD
    contributors (CC BY-SA 4.0) wherever results on it are shown.
    """
    encoder = _audio_encoder(channels, 8000, scale, spikes, gain, step_ms)
    binning = EventBinning(dt_ms=dt_ms, duration_ms=duration_ms, align=align, pool=pool, binary=binary, channels=channels)
    parts = {
        split: FSDD(split, root, encoder=encoder, binning=binning, valid_fraction=valid_fraction, seed=seed,
                    cache_dir=cache_dir, progress=progress)
        for split in SPLIT_NAMES
    }
    splits = DataSplits(
        parts["train"], parts["valid"] if valid_fraction else None, parts["test"], binning.out_channels, 10, dt_ms,
        f"FSDD (Jackson et al., CC BY-SA 4.0) via a {channels}-channel {scale.upper()} cochlear encoder "
        f"({spikes} spikes): {_binning_text(binning)}",
    )
    return _with_noise(splits, noise_hz, noise_splits, binary, seed)


def audio_folder(
    root: PathLike,
    channels: int = 700,
    sample_rate: int = 16000,
    scale: str = "erb",
    spikes: str = "lif",
    gain: float = 4.5,
    step_ms: float = 0.5,
    dt_ms: float = 1.0,
    duration_ms: Optional[float] = None,
    align: str = "zero",
    pool: int = 1,
    binary: bool = False,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    noise_hz: float = 0.0,
    noise_splits: Sequence[str] = ("test",),
    cache_dir: Optional[PathLike] = None,
    progress: bool = True,
) -> DataSplits:
    """A folder of ``<class>/*.wav`` (Speech-Commands style lists honoured) through the cochlear encoder."""
    encoder = _audio_encoder(channels, sample_rate, scale, spikes, gain, step_ms)
    binning = EventBinning(dt_ms=dt_ms, duration_ms=duration_ms, align=align, pool=pool, binary=binary, channels=channels)
    parts = {
        split: AudioFolder(root, split, encoder=encoder, binning=binning, valid_fraction=valid_fraction,
                           test_fraction=test_fraction, seed=seed, cache_dir=cache_dir, progress=progress)
        for split in SPLIT_NAMES
    }
    classes = len(parts["train"].class_names)
    valid = parts["valid"] if len(parts["valid"]) else None
    splits = DataSplits(
        parts["train"], valid, parts["test"], binning.out_channels, classes, dt_ms,
        f"audio folder {root} via a {channels}-channel {scale.upper()} cochlear encoder: {_binning_text(binning)}",
    )
    return _with_noise(splits, noise_hz, noise_splits, binary, seed)


def _sequential_images(root, permuted: bool, permutation_seed: int, valid_fraction: float, seed: int, what: str) -> DataSplits:
    train_images, train_labels = load_image_set(root, "train")
    test_images, test_labels = load_image_set(root, "test")
    mean, std = pixel_statistics(train_images)
    std = std if std > 0 else 1.0  # every training pixel equal: centre only (as ChannelNormalizer does)
    order = pixel_permutation(train_images[0].size, permutation_seed) if permuted else None
    train_all = SequentialImages(train_images, train_labels, mean=mean, std=std, permutation=order)
    test = SequentialImages(test_images, test_labels, mean=mean, std=std, permutation=order)
    valid = None
    train: Dataset = train_all
    if valid_fraction:
        keep, held = carve_validation(np.arange(len(train_all)), train_labels, valid_fraction, seed)
        train, valid = Subset(train_all, keep.tolist()), Subset(train_all, held.tolist())
    kind = f"PS-{what} (pixel permutation seed {permutation_seed})" if permuted else f"S-{what}"
    return DataSplits(
        train, valid, test, 1, int(max(train_labels.max(), test_labels.max())) + 1, None,
        f"{kind}: one pixel per step ({train_images[0].size} steps), normalised with the training mean {mean:.4f} / std {std:.4f}",
    )


def sfmnist(root: Optional[PathLike] = None, valid_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """Sequential Fashion-MNIST (Debian's ``dataset-fashion-mnist`` by default, or ``root``)."""
    return _sequential_images(root, False, 0, valid_fraction, seed, "FMNIST")


def psfmnist(
    root: Optional[PathLike] = None, permutation_seed: int = 0, valid_fraction: float = 0.1, seed: int = 0
) -> DataSplits:
    """Permuted sequential Fashion-MNIST: one fixed pixel order from ``permutation_seed``."""
    return _sequential_images(root, True, permutation_seed, valid_fraction, seed, "FMNIST")


def smnist(root: PathLike, valid_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """Sequential MNIST from a folder holding the four MNIST IDX files."""
    return _sequential_images(root, False, 0, valid_fraction, seed, "MNIST")


def psmnist(root: PathLike, permutation_seed: int = 0, valid_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """Permuted sequential MNIST (DH-SNN: permutation seed 0)."""
    return _sequential_images(root, True, permutation_seed, valid_fraction, seed, "MNIST")


def arrays(
    path: PathLike,
    layout: str = "NCT",
    dt_ms: Optional[float] = None,
    steps: Optional[int] = None,
    time_factor: Optional[float] = None,
    normalize: str = "auto",
    encoder: str = "direct",
    delta: float = 0.5,
    polarity: str = "both",
    gain: float = 1.0,
    valid_fraction: float = 0.1,
    seed: int = 0,
) -> DataSplits:
    """Your own time series from an ``.npz`` holding ``X_train, y_train, X_test, y_test``.

    Optional ``len_train, len_test`` give the valid lengths; ``layout`` is ``"NCT"`` or ``"NTC"``.

    Preparation: optional resampling (``steps`` fixed, or ``time_factor`` × each length), per-channel
    normalisation fitted on the training part only (``"standard"``, ``"minmax"``, ``"none"``; ``"auto"``
    = minmax for the rate encoder, standard otherwise), then the encoder: ``"direct"`` current,
    ``"delta"`` level crossing (``delta``, ``polarity``) or ``"rate"`` Bernoulli (``gain``; train
    draws fresh each epoch, valid/test fixed by ``seed``). ``dt_ms`` is only recorded.
    """
    data = load_npz(path, layout)
    if steps is not None or time_factor is not None:
        for split, part in data.items():
            x, lengths = resample_series(part.x.numpy(), part.lengths, steps=steps, factor=time_factor)
            data[split] = ArrayDataset(x, part.labels, layout="NTC", lengths=lengths, name=f"{Path(path).name}:{split}")
    train_all, test = data["train"], data["test"]
    train_idx, valid_idx = carve_validation(np.arange(len(train_all)), train_all.labels, valid_fraction, seed)
    if not len(train_idx):
        raise ValueError(f"{path}: valid_fraction={valid_fraction} leaves none of the {len(train_all)} training series "
                         f"for training; use a smaller valid_fraction or more samples")
    mode = ("minmax" if encoder == "rate" else "standard") if normalize == "auto" else normalize
    normalizer = ChannelNormalizer.fit((train_all.series(int(i)) for i in train_idx), mode)
    for part in (train_all, test):
        _check_encodable(part, normalizer, mode, encoder, delta)

    def encoded(part: ArrayDataset, draws: Optional[int]) -> ArrayDataset:
        return part.with_transform(SeriesEncoder(normalizer, encoder, delta, polarity, gain, seed=draws))

    train = Subset(encoded(train_all, None), train_idx.tolist())
    valid = Subset(encoded(train_all, seed + 1), valid_idx.tolist()) if len(valid_idx) else None
    channels = SeriesEncoder(encoder=encoder, polarity=polarity).out_channels(train_all.channels)
    classes = int(max(train_all.labels.max(initial=0), test.labels.max(initial=0))) + 1
    return DataSplits(
        train, valid, encoded(test, seed), channels, classes, dt_ms,
        f"arrays {Path(path).name}: {len(train_all)} train / {len(test)} test series, {mode} normalisation, {encoder} encoder",
    )


_MAX_LEVEL = 2**24  # level-crossing levels beyond this are not exact in float32 (and make absurd spike counts)


def _check_encodable(part: ArrayDataset, normalizer: ChannelNormalizer, mode: str, encoder: str, delta: float) -> None:
    """``ValueError`` naming the first valid value that normalisation with the training split's statistics
    takes beyond the float32 range (e.g. a test value far outside a narrow ``minmax`` range), or that the
    level-crossing encoder would turn into more than 2^24 levels."""
    with torch.no_grad():
        scaled = normalizer(part.x)
        valid = torch.arange(part.x.shape[1])[None, :, None] < torch.as_tensor(part.lengths)[:, None, None]
        bad = ~torch.isfinite(scaled)
        if encoder == "delta":
            bad |= scaled.abs() / delta >= _MAX_LEVEL
        bad &= valid
    if bad.any():
        sample, step, channel = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"{part.name}: sample {sample} has {part.x[sample, step, channel].item():.6g} at step {step}, channel {channel}, "
            f"which {mode} normalisation with the training split's statistics (shift {normalizer.shift[channel].item():.6g}, "
            f"scale {normalizer.scale[channel].item():.6g}) takes to {scaled[sample, step, channel].item():.6g}: beyond the "
            f"float32 range{f' or over {_MAX_LEVEL} levels of delta={delta:g}' if encoder == 'delta' else ''}; rescale the "
            f"data or choose another normalize"
        )


DATASETS: dict[str, Callable[..., DataSplits]] = {
    "shd": shd,
    "ssc": ssc,
    "fsdd": fsdd,
    "audio_folder": audio_folder,
    "sfmnist": sfmnist,
    "psfmnist": psfmnist,
    "smnist": smnist,
    "psmnist": psmnist,
    "arrays": arrays,
}


def list_datasets() -> dict[str, dict[str, object]]:
    """``{name: {option: default (inspect.Parameter.empty if required)}}`` of every source."""
    return {name: {p.name: p.default for p in inspect.signature(f).parameters.values()} for name, f in DATASETS.items()}


def load_splits(name: str, **options) -> DataSplits:
    """Load the named data source with ``options`` (see :func:`list_datasets` and each source's doc)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    loader = DATASETS[name]
    parameters = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown option(s) {unknown}; allowed: {list(parameters)}")
    missing = [p for p, v in parameters.items() if v.default is inspect.Parameter.empty and p not in options]
    if missing:
        raise ValueError(f"dataset {name!r}: missing required option(s) {missing}; allowed: {list(parameters)}")
    return loader(**options)
