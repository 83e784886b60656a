"""Guards of a run directory: one writer at a time, and room to write checkpoints before training starts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from torch import nn

__all__ = ["RunLock", "RunLockedError", "check_writable"]


class RunLockedError(ValueError):
    """Another live process holds the run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``RUN/.lock`` holding the owner's host and pid; a lock whose process is gone is stale and replaced."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self.held = False

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    owner = {}
                if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) and not _alive(owner["pid"]):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise RunLockedError(
                    f"{self.path.parent} is in use by process {owner.get('pid', '?')} on {owner.get('host', '?')} "
                    f"since {owner.get('since', '?')}; wait for it or remove {self.path} if that process is gone"
                ) from None
            with os.fdopen(fd, "w") as handle:
                handle.write(record)
            self.held = True
            return self
        raise RunLockedError(f"could not take the lock {self.path}")  # pragma: no cover - race with another taker

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def check_writable(run_dir: Path, model: nn.Module) -> None:
    """Fail before training when ``run_dir`` cannot be written or lacks room for the checkpoints.

    A checkpoint holds the model, the best model and Adam's two moments: about 4× the parameters; the
    atomic write briefly needs a second copy, so we ask for 10× the parameter bytes plus 1 MiB.
    """
    run_dir = Path(run_dir)
    probe = run_dir / ".write-test"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise OSError(f"cannot write to the run directory {run_dir}: {err.strerror or err}") from None
    needed = 10 * sum(p.numel() * p.element_size() for p in model.state_dict().values()) + (1 << 20)
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise OSError(f"not enough free space in {run_dir}: {free / 2**20:.1f} MiB free, checkpoints need about {needed / 2**20:.1f} MiB")
