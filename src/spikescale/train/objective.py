"""The objective protocol: how the trainer asks a task for its loss and accuracy.

An objective is a callable ``objective(model, batch) -> StepResult``. It runs the model on the batch,
decodes the outputs and returns a differentiable scalar loss plus the counts the trainer aggregates.
Spiking-sequence decoders (per-step CE, sum of softmax, mean membrane, spike count) live in
:mod:`spikescale.train.losses`; other methods (e.g. TTFS) provide their own objectives.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from torch import Tensor, nn

from ..data.batch import Batch

__all__ = ["StepResult", "Objective"]


class StepResult(NamedTuple):
    """What one objective call returns.

    Attributes:
        loss: scalar tensor to minimise (mean over the batch's decisions).
        correct: number of correct decisions in the batch (tensor, no gradient).
        count: number of decisions (samples, or scored steps for per-step tasks).
        extras: further per-batch sums to average over the epoch (e.g. regulariser values), as tensors.
    """

    loss: Tensor
    correct: Tensor
    count: int
    extras: dict = {}


Objective = Callable[[nn.Module, Batch], StepResult]
