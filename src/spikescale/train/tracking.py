"""Optional TensorBoard logging of the epoch metrics (the run directory stays the source of truth)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["TensorBoardCallback"]


class TensorBoardCallback:
    """Write every numeric epoch metric (nested dicts flattened with ``/``) to ``log_dir``.

    Needs the ``tensorboard`` package (``pip install spikescale[tracking]``).
    """

    def __init__(self, log_dir) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("--tensorboard needs the tensorboard package: pip install 'spikescale[tracking]'") from err
        self.writer = SummaryWriter(str(Path(log_dir)))

    def on_epoch_end(self, trainer, metrics: dict) -> None:
        step = int(metrics["epoch"])
        for name, value in _flatten(metrics):
            self.writer.add_scalar(name, value, step)
        self.writer.flush()


def _flatten(metrics: dict, prefix: str = ""):
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}/")
        elif isinstance(value, (int, float)) and key != "epoch":
            yield name, float(value)
