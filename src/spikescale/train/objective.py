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
from .losses import DECODERS, decode

__all__ = ["StepResult", "Objective", "SequenceObjective"]


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


class SequenceObjective:
    """Objective for spiking sequence models: run the model, decode with :func:`~spikescale.train.losses.decode`.

    Args:
        decoder: ``"per_step"``, ``"sum_softmax"``, ``"mean"`` or ``"spike_count"``.
        warmup: leading steps ignored by ``sum_softmax`` / ``mean`` (DH-SNN SHD skips the first 11 steps).
        faithful: the official double softmax where the official code has it.
    """

    def __init__(self, decoder: str = "sum_softmax", *, warmup: int = 0, faithful: bool = False) -> None:
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; expected one of {DECODERS}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.decoder, self.warmup, self.faithful = decoder, int(warmup), bool(faithful)

    def __call__(self, model: nn.Module, batch: Batch) -> StepResult:
        out, _ = model(batch.x)
        lengths = batch.lengths
        if lengths is not None and out.shape[0] > batch.x.shape[0]:
            # networks that extend the sequence (delays with output="extend") emit their extra steps after
            # each sample's input, and the official code scores them
            lengths = lengths + (out.shape[0] - batch.x.shape[0])
        loss, correct, count = decode(
            out, batch.y, self.decoder, lengths=lengths, scored=batch.scored,
            warmup=self.warmup, faithful=self.faithful,
        )
        return StepResult(loss, correct, count, {})

    def __repr__(self) -> str:
        return f"SequenceObjective(decoder={self.decoder!r}, warmup={self.warmup}, faithful={self.faithful})"
