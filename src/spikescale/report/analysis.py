"""Analyses of a trained model, saved as arrays into the run directory (the report reads only those).

* :func:`timing_factors` — every timing factor (dendritic α, soma β, readout β) by module name.
* :func:`hidden_raster` — hidden-layer spike trains of a few samples.
* :func:`gradient_flow` — mean magnitude of ∂L/∂u_t (soma potential) and ∂L/∂i_t (dendritic currents)
  over time (DH-SNN Fig. 3c): with a large α the dendritic gradient persists over many steps while
  the soma's reset makes ∂L/∂u vanish quickly.
* :func:`spike_times` — first-spike times per layer of a TTFS network (Sakemi et al. Fig. 2).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ..data.batch import Batch
from ..functional.dh_lif import DHLIFState
from ..functional.lif import LIFState
from ..nn.timing import TimingFactor
from ..train.losses import decode

__all__ = ["timing_factors", "hidden_raster", "gradient_flow", "spike_times"]


def timing_factors(model: nn.Module) -> dict[str, np.ndarray]:
    """``{module_name: factors}`` for every :class:`TimingFactor` (``[N]`` or ``[N, D]``)."""
    with torch.no_grad():
        return {name: module().detach().cpu().numpy() for name, module in model.named_modules() if isinstance(module, TimingFactor)}


def hidden_raster(model: nn.Module, batch: Batch) -> dict[str, np.ndarray]:
    """``{"layers.k": spikes [T, B, N] uint8}``: hidden-layer spike trains of the samples of ``batch``."""
    spikes = model.hidden_spikes(batch.x)
    return {f"layers.{k}": s.cpu().numpy().astype(np.uint8) for k, s in enumerate(spikes)}


def gradient_flow(model: nn.Module, batch: Batch, decoder: str, *, warmup: int = 0, faithful: bool = False) -> dict[str, np.ndarray]:
    """Mean ``|∂L/∂u_t|`` and ``|∂L/∂i_t|`` per hidden layer and step, by running the model step by step.

    Returns ``{"layers.k.soma": [T], "layers.k.dendrite": [T]}`` (dendrite only for DH layers).
    """
    model.eval()
    x = batch.x
    states = model.initial_state(x.shape[1], x.device, x.dtype)
    traces: dict[str, list[torch.Tensor]] = {}
    outputs = []
    with torch.enable_grad():
        for t in range(x.shape[0]):
            h = x[t]
            for k, module in enumerate([*model.layers, model.readout]):
                h, states[k] = module.step(h, states[k])
                if k < len(model.layers):
                    _track(states[k], f"layers.{k}", traces)
            outputs.append(h)
        out = torch.stack(outputs)
        loss, _, _ = decode(out, batch.y, decoder, lengths=batch.lengths, scored=batch.scored, warmup=warmup, faithful=faithful)
        loss.backward()
    return {name: np.array([_mean_abs(v.grad) for v in values]) for name, values in traces.items()}


def _track(state, prefix: str, traces: dict) -> None:
    if isinstance(state, (DHLIFState, LIFState)):
        state.u.retain_grad()
        traces.setdefault(f"{prefix}.soma", []).append(state.u)
    if isinstance(state, DHLIFState):
        state.i.retain_grad()
        traces.setdefault(f"{prefix}.dendrite", []).append(state.i)


def _mean_abs(grad: Optional[torch.Tensor]) -> float:
    return 0.0 if grad is None else float(grad.abs().mean())


@torch.no_grad()
def spike_times(model: nn.Module, batch: Batch) -> dict[str, np.ndarray]:
    """First-spike times of every layer of a TTFS network (``+inf``: silent) for the samples of ``batch``.

    Returns ``{"input": [B, C], "layers.0": [B, N0], ..., "layers.L": [B, K]}`` (the last is the output layer).
    """
    model.eval()
    out = model(batch.x)
    arrays = {"input": out.inputs.cpu().numpy()}
    for k, trace in enumerate(out.traces):
        arrays[f"layers.{k}"] = trace.output.times.cpu().numpy()
    return arrays
