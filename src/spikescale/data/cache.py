"""On-disk cache of derived data (binned frames, encoded audio), written atomically.

Locations: ``cache_dir`` when given, else ``$SPIKESCALE_CACHE``, else ``~/.cache/spikescale``. Entries
are keyed by the checksum of their source and by the settings that produced them, so a changed file
or setting never reuses a stale entry. Every entry is written under a temporary name in its final
folder and renamed into place, so a crash or a concurrent writer never leaves a partial entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

__all__ = [
    "cache_root",
    "data_home",
    "atomic_path",
    "file_checksum",
    "settings_digest",
    "store_arrays",
    "load_arrays",
]

PathLike = Union[str, Path]


def cache_root(cache_dir: Optional[PathLike] = None) -> Path:
    """The cache folder: ``cache_dir``, ``$SPIKESCALE_CACHE`` or ``~/.cache/spikescale``."""
    root = cache_dir or os.environ.get("SPIKESCALE_CACHE") or Path.home() / ".cache" / "spikescale"
    return Path(root).expanduser()


def data_home() -> Path:
    """Where downloaded data sets live by default: ``$SPIKESCALE_DATA`` or ``~/.cache/spikescale/data``."""
    return Path(os.environ.get("SPIKESCALE_DATA") or Path.home() / ".cache" / "spikescale" / "data").expanduser()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def settings_digest(settings: str, length: int = 12) -> str:
    """Short hex digest of a settings string (part of cache keys)."""
    return hashlib.sha256(settings.encode()).hexdigest()[:length]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_checksum(path: PathLike, cache_dir: Optional[PathLike] = None) -> str:
    """SHA-256 of a file's bytes, remembered in ``<cache>/checksums.json`` by (path, size, mtime).

    Hashing a multi-GB SSC file takes seconds; the memo makes later loads instant and is refreshed
    whenever the file's size or modification time changes.
    """
    path = Path(path).resolve()
    stat = path.stat()
    memo_path = cache_root(cache_dir) / "checksums.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(str(path))
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return entry["sha256"]
    checksum = _sha256(path)
    memo[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": checksum}
    with atomic_path(memo_path) as tmp:
        tmp.write_text(json.dumps(memo, indent=1, sort_keys=True))
    return checksum


def store_arrays(directory: PathLike, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write ``arrays`` (one ``.npy`` each) and ``meta.json`` as the folder ``directory``, atomically.

    If another process finished the same entry first, its copy is kept and ours is discarded.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        try:
            os.rename(tmp, directory)
        except OSError:
            if not (directory / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_arrays(directory: PathLike) -> Optional[tuple[dict[str, np.ndarray], dict]]:
    """``(arrays memory-mapped read-only, meta)`` of a complete entry, or ``None`` if there is none."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    arrays = {p.stem: np.load(p, mmap_mode="r") for p in sorted(directory.glob("*.npy"))}
    return arrays, meta
