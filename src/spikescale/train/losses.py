r"""Decoders and losses for sequence outputs ``out [T, B, K]`` (spec dh-snn §2.6, delays §1.8).

=================  =========================================================  ==================================
decoder            class scores                                               loss (default / ``faithful``)
=================  =========================================================  ==================================
``per_step``       :math:`o_t` at every scored step (XOR tasks)               CE of :math:`o_t` / CE of
                                                                              softmax(:math:`o_t`) (double softmax)
``sum_softmax``    :math:`P = \sum_{t \ge w} \mathrm{softmax}(o_t)` (SHD,     NLL of :math:`\log(P / n)` / CE of
                   DCLS; ``w`` = ``warmup`` steps skipped)                    :math:`P` (double softmax)
``mean``           :math:`\bar o = \mathrm{mean}_{t \ge w}\, o_t` (SSC, GSC)  CE of :math:`\bar o` (same)
``spike_count``    :math:`c = \sum_t o_t` (spiking readout, S-MNIST)          CE of :math:`c` (same)
=================  =========================================================  ==================================

Steps beyond a sample's ``length`` never count. With one softmax, ``sum_softmax`` minimises the negative
log of the time-averaged class probability; the official code instead feeds the summed probabilities to
``CrossEntropyLoss``, which applies a second softmax — kept behind ``faithful=True``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DECODERS", "decode", "valid_steps"]

DECODERS = ("per_step", "sum_softmax", "mean", "spike_count")


def valid_steps(steps: int, lengths: Optional[Tensor], warmup: int, device) -> Tensor:
    """``[T, B]`` (or ``[T, 1]``) bool mask of steps ``warmup <= t < length``."""
    t = torch.arange(steps, device=device)[:, None]
    mask = t >= warmup
    if lengths is not None:
        mask = mask & (t < lengths.to(device)[None, :])
    return mask


def decode(
    out: Tensor,
    labels: Tensor,
    decoder: str,
    *,
    lengths: Optional[Tensor] = None,
    scored: Optional[Tensor] = None,
    warmup: int = 0,
    faithful: bool = False,
) -> tuple[Tensor, Tensor, int]:
    """Loss, number of correct decisions and number of decisions for one batch.

    Args:
        out: ``[T, B, K]`` readout outputs.
        labels: ``[B]`` classes (or ``[T, B]`` for ``per_step``).
        decoder: one of :data:`DECODERS`.
        lengths: ``[B]`` valid steps per sample; scored: ``[T, B]`` steps that count (``per_step``).
        warmup: leading steps ignored by ``sum_softmax`` and ``mean``.
        faithful: reproduce the official double softmax where the official code has it.

    Returns:
        ``(loss, correct, count)``: mean loss over decisions, correct decisions (no grad), decisions.
    """
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {DECODERS}")
    if out.dim() != 3:
        raise ValueError(f"decoder expects outputs [T, B, K], got {tuple(out.shape)}")
    steps = out.shape[0]
    if decoder == "per_step":
        if labels.dim() != 2:
            raise ValueError(f"per_step decoding needs per-step labels [T, B], got {tuple(labels.shape)}")
        mask = valid_steps(steps, lengths, 0, out.device).expand(steps, out.shape[1])
        if scored is not None:
            mask = mask & scored
        logits = out[mask]
        targets = labels[mask]
        if faithful:
            logits = torch.softmax(logits, -1)
        loss = F.cross_entropy(logits, targets)
        correct = (logits.argmax(-1) == targets).sum()
        return loss, correct.detach(), int(targets.numel())
    if warmup >= steps:
        raise ValueError(f"warmup ({warmup}) must be shorter than the sequence ({steps} steps)")
    mask = valid_steps(steps, lengths, warmup, out.device).to(out.dtype).unsqueeze(-1)  # [T, B|1, 1]
    count = mask.sum(0).clamp(min=1.0)  # [B|1, 1]
    if decoder == "sum_softmax":
        probs = (torch.softmax(out, -1) * mask).sum(0)
        logits = probs if faithful else torch.log(probs / count + 1e-12)
    elif decoder == "mean":
        logits = (out * mask).sum(0) / count
    else:  # spike_count
        logits = (out * mask).sum(0)
    loss = F.cross_entropy(logits, labels)
    correct = (logits.argmax(-1) == labels).sum()
    return loss, correct.detach(), int(labels.numel())
