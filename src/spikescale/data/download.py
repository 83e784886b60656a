"""Download the Heidelberg spiking data sets (SHD, SSC) from their official host.

The files are served by the Zenke lab at ``https://zenkelab.org/datasets/`` (the data sets' page is
https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/; the host was ``compneuro.net`` before),
licensed CC BY 4.0 (Cramer, Stradmann, Schemmel & Zenke, "The Heidelberg Spiking Data Sets for the
Systematic Evaluation of Spiking Neural Networks", IEEE TNNLS 2020). We fetch the ``.h5.zip`` archives;
their MD5 checksums below are the ones pinned by the Tonic library (``neuromorphs/tonic``,
``tonic/datasets/hsd.py``) and, for SHD, also by SpikingJelly (``spikingjelly/datasets/shd.py``), which
both download the same URLs.

Downloads resume: bytes go to ``<name>.part`` and a later run asks the server for the rest (HTTP
``Range``). The archive is checked against its MD5, then its ``.h5`` is extracted next to it. Where
the host is unreachable the command fails at once and says where to put the files by hand.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from tqdm import tqdm

from .cache import atomic_path

__all__ = ["RemoteFile", "OFFICIAL_URL", "DATASET_FILES", "download", "extract_archive", "find_split_file", "DownloadError"]

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

OFFICIAL_URL = "https://zenkelab.org/datasets/"


@dataclass(frozen=True)
class RemoteFile:
    """One archive: its file name on the host and the MD5 of its bytes."""

    name: str
    md5: str

    @property
    def h5_name(self) -> str:
        """The HDF5 file inside (``shd_train.h5.zip`` → ``shd_train.h5``)."""
        return self.name.rsplit(".", 1)[0]


DATASET_FILES = {
    "shd": (
        RemoteFile("shd_train.h5.zip", "f3252aeb598ac776c1b526422d90eecb"),
        RemoteFile("shd_test.h5.zip", "1503a5064faa34311c398fb0a1ed0a6f"),
    ),
    "ssc": (
        RemoteFile("ssc_train.h5.zip", "d102be95e7144fcc0553d1f45ba94170"),
        RemoteFile("ssc_valid.h5.zip", "b4eee3516a4a90dd0c71a6ac23a8ae43"),
        RemoteFile("ssc_test.h5.zip", "a35ff1e9cffdd02a20eb850c17c37748"),
    ),
}


class DownloadError(ConnectionError):
    """The host could not be reached or did not serve the file (the message says what to do instead)."""


def _by_hand(name: str, root: Path, base_url: str) -> str:
    names = ", ".join(f.h5_name for f in DATASET_FILES.get(name, ()))
    return (
        f"download {base_url} by hand (e.g. on another machine) and put {names} "
        f"(or their .zip / .gz archives) in {root}"
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its current size)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the part file is complete
            return
        raise
    with response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab" if have else "wb") as out, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=part.name[: -len(".part")], disable=not progress
        ) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def extract_archive(archive: Path, target: Path) -> Path:
    """Extract the single ``.h5`` of a ``.zip`` or ``.gz`` archive to ``target`` (atomically)."""
    with atomic_path(target) as tmp:
        if archive.suffix == ".zip":
            try:
                with zipfile.ZipFile(archive) as z:
                    members = [m for m in z.namelist() if m.endswith(".h5")]
                    if len(members) != 1:
                        raise ValueError(f"{archive}: expected one .h5 file inside, found {members}")
                    with z.open(members[0]) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 22)
            except zipfile.BadZipFile as err:
                raise ValueError(f"{archive}: not a valid zip archive ({err}); delete it and download again") from None
        elif archive.suffix == ".gz":
            try:
                with gzip.open(archive, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
            except (OSError, EOFError) as err:
                raise ValueError(f"{archive}: not a valid gzip archive ({err}); delete it and download again") from None
        else:
            raise ValueError(f"{archive}: unknown archive type (expected .zip or .gz)")
    return target


def find_split_file(root: PathLike, h5_name: str, dataset: str) -> Path:
    """``root/h5_name``, extracting it from a ``.zip``/``.gz`` archive put there by hand if needed."""
    root = Path(root).expanduser()
    target = root / h5_name
    if target.is_file():
        return target
    for suffix in (".zip", ".gz"):
        archive = root / (h5_name + suffix)
        if archive.is_file():
            log.info("extracting %s", archive)
            return extract_archive(archive, target)
    raise FileNotFoundError(
        f"{target} not found. Run `spikescale data download {dataset} --root {root}`, or "
        f"{_by_hand(dataset, root, OFFICIAL_URL)}"
    )


def _reachable(url: str, timeout: float) -> Optional[str]:
    """``None`` if the host answers, else the reason it does not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # the host answered (a listing may be forbidden; the files are checked one by one)
    except (urllib.error.URLError, OSError) as err:
        return str(getattr(err, "reason", err))


def download(
    name: str,
    root: PathLike,
    *,
    base_url: str = OFFICIAL_URL,
    files: Optional[Sequence[RemoteFile]] = None,
    timeout: float = 10.0,
    progress: bool = True,
) -> list[Path]:
    """Fetch, verify and extract the files of data set ``name`` (``"shd"`` or ``"ssc"``) into ``root``.

    Files already extracted are skipped; a partial download resumes. Returns the ``.h5`` paths.

    Raises:
        ValueError: unknown ``name``, or a checksum mismatch (the bad archive is deleted).
        DownloadError: the host is unreachable (raised before anything is written).
    """
    if files is None:
        if name not in DATASET_FILES:
            raise ValueError(f"unknown data set {name!r}; expected one of {sorted(DATASET_FILES)}")
        files = DATASET_FILES[name]
    root = Path(root).expanduser()
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    missing = [f for f in files if not (root / f.h5_name).is_file()]
    if missing:
        reason = _reachable(base_url, timeout)
        if reason is not None:
            raise DownloadError(f"cannot reach {base_url} ({reason}); {_by_hand(name, root, base_url)}")
        root.mkdir(parents=True, exist_ok=True)
    for remote in missing:
        archive = root / remote.name
        if not archive.is_file():
            part = root / (remote.name + ".part")
            try:
                _fetch(base_url + remote.name, part, timeout, progress)
            except (urllib.error.URLError, OSError) as err:
                raise DownloadError(
                    f"downloading {base_url + remote.name} failed ({getattr(err, 'reason', err)}); run the command "
                    f"again to resume, or {_by_hand(name, root, base_url)}"
                ) from None
            got = _md5(part)
            if got != remote.md5:
                part.unlink()
                raise ValueError(f"{remote.name}: MD5 {got} does not match the official {remote.md5}; deleted, run again")
            part.rename(archive)
        extract_archive(archive, root / remote.h5_name)
        archive.unlink()
        log.info("%s ready", root / remote.h5_name)
    return [root / f.h5_name for f in files]
