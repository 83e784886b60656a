"""Fast backends of the :mod:`spikescale.functional` maths, chosen by one setting.

The plain-PyTorch loops in :mod:`spikescale.functional` are the reference and the fallback; a backend
replaces the inner loops of the autograd Functions (forward and hand-written backward) with compiled
code and is tested against that reference (``tests/kernels``). :data:`BACKENDS` is the one table of
backends, their devices and the operations they provide; the tests and ``docs/performance.md`` read it.

Selecting a backend::

    import spikescale.kernels as kernels
    kernels.use_backend("torch")              # global setting
    with kernels.use_backend("numba"):        # or for a block, restoring the previous setting
        model(x)

``"auto"`` (the default, or the ``SPIKESCALE_BACKEND`` environment variable) runs the numba kernels on
CPU tensors when numba is importable and the PyTorch loops otherwise. Asking for a backend that is not
installed raises ``ImportError`` with the install command. CUDA tensors always run on PyTorch ops.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Optional

import torch

__all__ = [
    "Backend",
    "BACKENDS",
    "CHOICES",
    "OPS",
    "use_backend",
    "backend_setting",
    "is_available",
    "load",
    "select",
]

#: Operations a backend may provide (names of the functional entry points and layer paths).
OPS = {
    "lif_sequence": "LIF soma over a sequence (forward + BPTT)",
    "dendritic_sum": "DH-LIF dendritic currents summed per neuron (forward + BPTT)",
    "dh_lif_recurrent_sequence": "recurrent DH-LIF, DH-SRNN (forward + BPTT)",
    "linear_recurrence": "leaky integrator / linear scan (forward + BPTT)",
    "event_projection": "event-driven input projection for sparse spike input (forward + weight gradient)",
    "event_dendritic_sum": "event-driven branch projection fused with the dendritic sum (DH-SFNN)",
    "sparse_backward": "weight and input gradients from near-threshold entries only (LIFDense)",
}


@dataclass(frozen=True)
class Backend:
    """One row of :data:`BACKENDS`."""

    name: str
    module: Optional[str]  # module holding the kernels; None: the reference loops in spikescale.functional
    devices: tuple[str, ...]
    ops: tuple[str, ...]
    requires: Optional[str]  # import name of the optional dependency
    install: str
    summary: str


BACKENDS: dict[str, Backend] = {
    "torch": Backend(
        name="torch",
        module=None,
        devices=("cpu", "cuda"),
        ops=("lif_sequence", "dendritic_sum", "dh_lif_recurrent_sequence", "linear_recurrence"),
        requires=None,
        install="always available",
        summary="the reference: per-step PyTorch ops in spikescale.functional (CPU and CUDA)",
    ),
    "numba": Backend(
        name="numba",
        module="spikescale.kernels.numba_cpu",
        devices=("cpu",),
        ops=tuple(OPS),
        requires="numba",
        install="pip install 'spikescale[fast]'   (or: pip install numba)",
        summary="fused loops compiled by numba, parallel over batch × neurons, time loop inside",
    ),
}

CHOICES = ("auto", *BACKENDS)

_setting = "auto"


def _check_choice(name: str) -> str:
    if name not in CHOICES:
        raise ValueError(f"unknown backend {name!r}; expected one of {CHOICES}")
    if name != "auto":
        load(name)  # an explicit choice must be installed
    return name


def is_available(name: str) -> bool:
    """Whether backend ``name``'s dependency can be imported (without importing it)."""
    backend = BACKENDS[name]
    return backend.requires is None or importlib.util.find_spec(backend.requires) is not None


def load(name: str) -> Optional[ModuleType]:
    """The kernel module of backend ``name`` (``None`` for ``"torch"``); ``ImportError`` if not installed."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {tuple(BACKENDS)}")
    backend = BACKENDS[name]
    if backend.module is None:
        return None
    if not is_available(name):
        raise ImportError(
            f"the {name!r} backend needs the {backend.requires!r} package, which is not installed; "
            f"install it with: {backend.install}"
        )
    return importlib.import_module(backend.module)


class use_backend:
    """Set the backend (``"auto"``, ``"torch"`` or ``"numba"``); usable as a context manager.

    Called plainly it changes the global setting; in a ``with`` block the previous setting comes back
    at the end of the block.
    """

    def __init__(self, name: str) -> None:
        global _setting
        self.previous = _setting
        _setting = _check_choice(name)

    def __enter__(self) -> "use_backend":
        return self

    def __exit__(self, *exc) -> None:
        global _setting
        _setting = self.previous


def backend_setting() -> str:
    """The current setting (``"auto"``, ``"torch"`` or ``"numba"``)."""
    return _setting


def select(op: str, device: torch.device) -> Optional[ModuleType]:
    """Kernel module that runs ``op`` for tensors on ``device`` now, or ``None`` for the PyTorch reference."""
    if op not in OPS:
        raise ValueError(f"unknown kernel operation {op!r}; expected one of {sorted(OPS)}")
    name = _setting
    if name == "auto":
        name = "numba" if device.type == "cpu" and is_available("numba") else "torch"
    backend = BACKENDS[name]
    if backend.module is None or device.type not in backend.devices or op not in backend.ops:
        return None
    return load(name)


_env_choice = os.environ.get("SPIKESCALE_BACKEND")
if _env_choice:
    _setting = _check_choice(_env_choice)
