"""Real speech through the cochlear encoder: the Free Spoken Digit Dataset and labelled audio folders.

**FSDD** (Zohar Jackson and contributors, https://github.com/Jakobovski/free-spoken-digit-dataset,
DOI 10.5281/zenodo.1342401, licence CC BY-SA 4.0): 3,000 mono 8 kHz WAV files
``{digit}_{speaker}_{index}.wav`` of 6 speakers saying the digits 0–9, 50 times each. Official split:
``index`` 0–4 is the test set (300 files), 5–49 the training set. The location is ``root``, else
``$SPIKESCALE_FSDD``, else ``../shared/data/fsdd`` next to the project root (or the current folder).
Results on FSDD must credit the FSDD contributors; encoded files derived from it carry CC BY-SA 4.0
(stored in their ``source`` attribute).

**Audio folders**: one sub-folder per class of ``.wav`` files (folders starting with ``_``, such as
Speech Commands' ``_background_noise_``, are skipped). If ``validation_list.txt`` and/or
``testing_list.txt`` exist (paths relative to the root, as in Google Speech Commands) they define the
validation and test sets; otherwise both are carved from the files, stratified by label (speakers may
then appear in several splits). Speech Commands names ``<speaker>_nohash_<n>.wav`` give the speaker.

All recordings of a source are encoded once into one SHD-schema file in the cache, keyed by the
files' names, sizes and modification times and by the encoder settings; binning and splits then
work as for SHD.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union

import numpy as np
from torch.utils.data import Subset

from .audio import CochlearEncoder, encode_files
from .cache import cache_root, settings_digest
from .events import EventBinning
from .heidelberg import SpikeFileDataset
from .splits import carve_validation, stratified_split

__all__ = [
    "Recording",
    "FSDD_SOURCE",
    "fsdd_root",
    "fsdd_recordings",
    "audio_folder_recordings",
    "encoded_audio",
    "FSDD",
    "AudioFolder",
    "SPLITS",
]

PathLike = Union[str, Path]

SPLITS = ("train", "valid", "test")
FSDD_SOURCE = (
    "Free Spoken Digit Dataset (Zohar Jackson and contributors, github.com/Jakobovski/free-spoken-digit-dataset, "
    "DOI 10.5281/zenodo.1342401), licensed CC BY-SA 4.0; spike encoding by spikescale, same licence"
)
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


@dataclass(frozen=True)
class Recording:
    """One labelled audio file; ``name`` is its path relative to the data set root."""

    path: Path
    name: str
    label: int
    speaker: Optional[str] = None


def _project_root() -> Optional[Path]:
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() else None


def fsdd_root(root: Optional[PathLike] = None) -> Path:
    """The FSDD folder (holding ``recordings/``): ``root``, ``$SPIKESCALE_FSDD`` or ``../shared/data/fsdd``."""
    if root is not None:
        candidates = [Path(root).expanduser()]
    else:
        candidates = [Path(p).expanduser() for p in [os.environ.get("SPIKESCALE_FSDD")] if p]
        project = _project_root()
        if project is not None:
            candidates.append(project.parent / "shared" / "data" / "fsdd")
        candidates.append(Path.cwd().parent / "shared" / "data" / "fsdd")
    for candidate in candidates:
        if (candidate / "recordings").is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"Free Spoken Digit Dataset not found (looked for a recordings/ folder in: {tried}). Get it with "
        f"`git clone https://github.com/Jakobovski/free-spoken-digit-dataset` and pass its folder as root= "
        f"(or set SPIKESCALE_FSDD)"
    )


def fsdd_recordings(root: Optional[PathLike] = None) -> tuple[list[Recording], list[str]]:
    """FSDD recordings sorted by name, and the class names ``"0" … "9"``."""
    folder = fsdd_root(root) / "recordings"
    recordings = []
    for path in sorted(folder.glob("*.wav")):
        match = _FSDD_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: not an FSDD file name (expected {{digit}}_{{speaker}}_{{index}}.wav)")
        recordings.append(Recording(path, path.name, int(match.group(1)), match.group(2)))
    if not recordings:
        raise FileNotFoundError(f"{folder} holds no .wav files")
    return recordings, [str(d) for d in range(10)]


def _fsdd_is_test(name: str) -> bool:
    return int(_FSDD_NAME.match(name).group(3)) < 5


def _read_list(path: Path) -> Optional[set[str]]:
    if not path.is_file():
        return None
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def audio_folder_recordings(root: PathLike) -> tuple[list[Recording], list[str]]:
    """Recordings of a one-folder-per-class tree, sorted by name, and the sorted class names."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder not found: {root} (expected one sub-folder of .wav files per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    recordings = []
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*.wav")):
            speaker = path.stem.split("_nohash_")[0] if "_nohash_" in path.stem else None
            recordings.append(Recording(path, path.relative_to(root).as_posix(), label, speaker))
    if not recordings:
        raise FileNotFoundError(f"{root} holds no <class>/*.wav files")
    return recordings, classes


def _fingerprint(recordings: list[Recording], class_names: list[str], encoder: CochlearEncoder) -> str:
    digest = hashlib.sha256(encoder.key().encode())
    digest.update("\n".join(class_names).encode())
    for r in recordings:
        stat = r.path.stat()
        digest.update(f"\n{r.name}\t{r.label}\t{r.speaker}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _speaker_ids(recordings: list[Recording]) -> tuple[Optional[list[int]], Optional[list[str]]]:
    if any(r.speaker is None for r in recordings):
        return None, None
    names = sorted({r.speaker for r in recordings})
    index = {name: i for i, name in enumerate(names)}
    return [index[r.speaker] for r in recordings], names


def encoded_audio(
    recordings: list[Recording],
    class_names: list[str],
    encoder: CochlearEncoder,
    *,
    tag: str,
    source: str = "",
    cache_dir: Optional[PathLike] = None,
    progress: bool = True,
) -> Path:
    """The SHD-schema file of ``recordings`` encoded with ``encoder`` (encoded on first use, then cached)."""
    path = cache_root(cache_dir) / "audio" / f"{tag}-{_fingerprint(recordings, class_names, encoder)}.h5"
    if not path.is_file():
        speakers, speaker_names = _speaker_ids(recordings)
        encode_files(
            [r.path for r in recordings], path, encoder, [r.label for r in recordings],
            speakers=speakers, class_names=class_names, speaker_names=speaker_names,
            names=[r.name for r in recordings], source=source, progress=progress,
        )
    return path


class _EncodedSplit(Subset):
    """One split of an encoded audio source: ``(x [T, C] float32, label)`` items."""

    def __init__(self, data: SpikeFileDataset, indices: np.ndarray):
        super().__init__(data, indices.tolist())
        self.labels = data.labels[indices]
        self.speakers = None if data.speakers is None else data.speakers[indices]
        self.class_names = data.class_names
        self.channels = data.channels
        self.source_file = data.source.path


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


class FSDD(_EncodedSplit):
    """One split of the Free Spoken Digit Dataset as spike frames.

    Args:
        split: ``"train"`` (indices 5–49 minus the validation part), ``"valid"`` (a seeded part of the
            training recordings stratified by speaker and digit) or ``"test"`` (indices 0–4).
        root: FSDD folder (see :func:`fsdd_root`).
        encoder: the cochlear encoder (default: 700 channels at the native 8 kHz).
        binning: events → frames.
        valid_fraction, seed: size and seed of the validation split (0 leaves it empty).
        cache_dir: where encodings and frames are cached.
    """

    def __init__(
        self,
        split: str = "train",
        root: Optional[PathLike] = None,
        *,
        encoder: CochlearEncoder = CochlearEncoder(sample_rate=8000),
        binning: Optional[EventBinning] = None,
        valid_fraction: float = 0.1,
        seed: int = 0,
        cache_dir: Optional[PathLike] = None,
        progress: bool = True,
    ):
        _check_split(split)
        recordings, classes = fsdd_recordings(root)
        path = encoded_audio(recordings, classes, encoder, tag="fsdd", source=FSDD_SOURCE, cache_dir=cache_dir, progress=progress)
        binning = replace(binning or EventBinning(), channels=encoder.channels)
        data = SpikeFileDataset(path, binning, cache_dir=cache_dir)
        test = np.array([_fsdd_is_test(r.name) for r in recordings])
        if split == "test":
            indices = np.flatnonzero(test)
        else:
            train, valid = carve_validation(np.flatnonzero(~test), data.labels, valid_fraction, seed, data.speakers)
            indices = train if split == "train" else valid
        super().__init__(data, indices)


class AudioFolder(_EncodedSplit):
    """One split of a labelled audio folder (see module docstring) as spike frames.

    ``valid_fraction`` and ``test_fraction`` are used only where the list files are absent.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        *,
        encoder: CochlearEncoder = CochlearEncoder(),
        binning: Optional[EventBinning] = None,
        valid_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        cache_dir: Optional[PathLike] = None,
        progress: bool = True,
    ):
        _check_split(split)
        recordings, classes = audio_folder_recordings(root)
        tag = "audio-" + settings_digest(str(Path(root).expanduser().resolve()), 8)
        path = encoded_audio(recordings, classes, encoder, tag=tag, cache_dir=cache_dir, progress=progress)
        binning = replace(binning or EventBinning(), channels=encoder.channels)
        data = SpikeFileDataset(path, binning, cache_dir=cache_dir)
        super().__init__(data, self._split(recordings, Path(root).expanduser(), data, split, valid_fraction, test_fraction, seed))

    @staticmethod
    def _split(recordings, root: Path, data, split, valid_fraction, test_fraction, seed) -> np.ndarray:
        names = np.array([r.name for r in recordings])
        listed_valid = _read_list(root / "validation_list.txt")
        listed_test = _read_list(root / "testing_list.txt")
        everything = np.arange(len(recordings))
        if listed_test is not None:
            test = np.flatnonzero(np.isin(names, sorted(listed_test)))
        else:
            test = stratified_split(data.labels, test_fraction, seed)[1]
        rest = np.setdiff1d(everything, test)
        if listed_valid is not None:
            valid = rest[np.isin(names[rest], sorted(listed_valid))]
            train = np.setdiff1d(rest, valid)
        else:
            train, valid = carve_validation(rest, data.labels, valid_fraction, seed + 1)
        return {"train": train, "valid": valid, "test": test}[split]
