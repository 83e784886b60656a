"""Neuron dynamics always run in full precision, also under mixed-precision autocast.

Mixed precision (``train.amp``) speeds up the synaptic matrix products; the membrane recurrences, spike
thresholds, spike-time solutions and delay kernels are sensitive to rounding (a bf16 membrane has three
significant digits), so every autograd Function of :mod:`spikescale.functional` is wrapped with
:func:`full_precision`: under autocast its half-precision inputs are cast to float32 and autocast is off
inside it. Outside autocast it changes nothing.
"""

from __future__ import annotations

import contextlib
import functools

import torch

__all__ = ["full_precision", "autocast_devices"]

_HALF = (torch.float16, torch.bfloat16)


def autocast_devices() -> list[str]:
    """Device types whose autocast is active in this thread."""
    active = []
    for device in ("cpu", "cuda"):
        try:
            enabled = torch.is_autocast_enabled(device)
        except TypeError:  # torch < 2.4: per-device query functions
            enabled = torch.is_autocast_cpu_enabled() if device == "cpu" else torch.is_autocast_enabled()
        if enabled:
            active.append(device)
    return active


def full_precision(method):
    """Decorate ``forward``/``backward`` of an autograd Function (see module docstring)."""

    @functools.wraps(method)
    def wrapper(ctx, *args):
        devices = autocast_devices()
        if not devices:
            return method(ctx, *args)
        args = tuple(a.float() if isinstance(a, torch.Tensor) and a.dtype in _HALF else a for a in args)
        with contextlib.ExitStack() as stack:
            for device in devices:
                stack.enter_context(torch.autocast(device, enabled=False))
            return method(ctx, *args)

    return wrapper
