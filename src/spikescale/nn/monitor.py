"""Spike and synaptic-operation statistics of a model, gathered from the layers as they run.

>>> with SpikeMonitor(model) as monitor:
...     model(x)
>>> monitor.summary()["layers.0"]["spikes_per_neuron"]

Per layer (over everything seen since the monitor started or was reset):

* ``spikes_per_neuron`` — spikes per neuron per sample;
* ``firing_rate`` — spikes per neuron per time step;
* ``synops_per_sample`` — synaptic operations per sample: input events (non-zero entries) × the number of
  branches each input reaches (each input reaches a neuron once in DH layers, so this equals the
  vanilla count), plus recurrent spikes × their fan-out.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Optional

import torch
from torch import Tensor, nn

from .base import SpikingLayer

__all__ = ["SpikeMonitor"]


class SpikeMonitor:
    """Context manager that registers forward hooks on every :class:`SpikingLayer` of ``model``.

    ``lengths`` (``[B]`` valid steps per sample) can be set per batch with :meth:`set_lengths` so that
    padded steps are not counted.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._handles: list = []
        self._lengths: Optional[Tensor] = None
        self.reset()

    def reset(self) -> None:
        self.totals: dict[str, dict[str, Tensor | float]] = defaultdict(
            lambda: {"spikes": 0.0, "synops": 0.0, "samples": 0, "steps": 0.0, "neurons": 0, "emits_spikes": False}
        )

    def set_lengths(self, lengths: Optional[Tensor]) -> None:
        self._lengths = lengths

    def __enter__(self) -> "SpikeMonitor":
        for name, module in self.model.named_modules():
            if isinstance(module, SpikingLayer):
                self._handles.append(module.register_forward_hook(self._hook(name or type(module).__name__)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _valid(self, x: Tensor) -> Tensor:
        if self._lengths is None:
            return x
        steps = torch.arange(x.shape[0], device=x.device)[:, None]
        keep = (steps < self._lengths.to(x.device)[None, :]).to(x.dtype)
        return x * keep.view(*keep.shape, *([1] * (x.dim() - 2)))

    def _hook(self, name: str):
        def hook(module: SpikingLayer, args, output) -> None:
            x = args[0].detach()
            out = output[0].detach()
            x, out = self._valid(x), self._valid(out)
            entry = self.totals[name]
            batch = x.shape[1]
            entry["synops"] = entry["synops"] + module.synaptic_operations(x, out)
            entry["samples"] += batch
            steps = self._lengths.sum() if self._lengths is not None else x.shape[0] * batch
            entry["steps"] = entry["steps"] + steps
            entry["neurons"] = module.out_features
            entry["emits_spikes"] = module.emits_spikes
            if module.emits_spikes:
                entry["spikes"] = entry["spikes"] + out.sum(dtype=torch.float64)

        return hook

    def reduce(self, sum_fn) -> None:
        """Combine the totals of several processes: ``sum_fn(list of floats) -> list of floats``."""
        names = sorted(self.totals)
        fields = ("spikes", "synops", "samples", "steps")
        summed = sum_fn([float(self.totals[n][f]) for n in names for f in fields])
        for k, name in enumerate(names):
            for j, f in enumerate(fields):
                self.totals[name][f] = summed[k * len(fields) + j]
            self.totals[name]["samples"] = int(self.totals[name]["samples"])

    def summary(self) -> dict[str, dict[str, float]]:
        """Per layer: ``neurons``, ``synops_per_sample`` and, for spiking layers, ``spikes_per_neuron``
        and ``firing_rate``."""
        result = {}
        for name, entry in self.totals.items():
            samples = max(entry["samples"], 1)
            neurons = max(entry["neurons"], 1)
            stats = {"neurons": entry["neurons"], "synops_per_sample": float(entry["synops"]) / samples}
            if entry["emits_spikes"]:
                spikes = float(entry["spikes"])
                stats["spikes_per_neuron"] = spikes / (neurons * samples)
                stats["firing_rate"] = spikes / (neurons * max(float(entry["steps"]), 1.0))
            result[name] = stats
        return result

    def synops_per_sample(self) -> float:
        return sum(layer["synops_per_sample"] for layer in self.summary().values())
