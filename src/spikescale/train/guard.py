"""Safety nets of the training loop: deferred interrupts and locating non-finite values.

* :class:`InterruptGuard` turns the first Ctrl-C (SIGINT) or SIGTERM into a request that the trainer honours
  at the next batch boundary (so the model and optimiser are never caught half-updated): it writes a
  checkpoint and stops. A second Ctrl-C interrupts at once.
* :func:`first_non_finite_parameter`, :func:`first_non_finite_gradient` and :func:`first_non_finite_output`
  name where a NaN/Inf first appears, for error messages.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

import torch
from torch import nn

__all__ = ["InterruptGuard", "first_non_finite_parameter", "first_non_finite_gradient", "first_non_finite_output"]


class InterruptGuard:
    """Context manager: while active, SIGINT/SIGTERM set :attr:`requested` instead of raising."""

    def __init__(self) -> None:
        self.requested: Optional[str] = None
        self._previous: dict = {}

    def _handler(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


def first_non_finite_parameter(model: nn.Module) -> Optional[str]:
    return next((name for name, p in model.named_parameters() if not _finite(p.detach())), None)


def first_non_finite_gradient(model: nn.Module) -> Optional[str]:
    return next((name for name, p in model.named_parameters() if p.grad is not None and not _finite(p.grad)), None)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


@torch.no_grad()
def first_non_finite_output(model: nn.Module, run) -> Optional[str]:
    """Name of the first module (in execution order) whose output holds a NaN/Inf while ``run()`` executes."""
    found: list[str] = []

    def hook(name):
        def check(module, args, output):
            if not found and any(not _finite(t) for t in _tensors(output)):
                found.append(name)

        return check

    handles = [m.register_forward_hook(hook(name or type(m).__name__)) for name, m in model.named_modules()]
    try:
        run()
    except Exception:  # the point is to locate the problem, not to repeat the failure
        pass
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None
