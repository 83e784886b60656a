r"""The TTFS objective: decode by the earliest output spike, softmax cross-entropy on ``−t/σ``, SSR.

``objective(model, batch) -> StepResult`` (protocol of :mod:`spikescale.train.objective`) for a
:class:`~spikescale.nn.ttfs.TTFSNetwork` and static batches ``x [B, C]`` (intensities in ``[0, 1]``),
``y [B]``:

.. math::
    L = \mathrm{CE}\big(\mathrm{softmax}(-\tilde t / σ),\, y\big)
        + λ_t \big(e^{\tilde t_y / β} - 1\big) + λ_s [\hat t_y - T]_+ + \sum_r R_r

averaged over the batch, with ``t̃`` the output times made finite for silent outputs
(``silent_output``):

* ``"clamp"`` — a silent output counts as firing at the window end ``T`` (no gradient);
* ``"extrapolate"`` — ``t̃_i = T + (ϑ − ṽ_i(T))·(T − T_0)/ϑ``: the time at which the potential would
  reach threshold if it kept rising at slope ``ϑ/(T − T_0)`` (``T_0``: window start). Continuous at
  the firing boundary (``ṽ_i(T) = ϑ ⇔ t_i = T``) and differentiable, so a silent label neuron is
  pushed to fire.

The temporal penalty (``time_penalty`` ``λ_t``, ``time_penalty_scale`` ``β``) has the form used by
Göltz et al. (fastAndDeep); the softmax is shift-invariant, so no reference time is needed in the
cross-entropy. The no-spike penalty (``silent_penalty`` ``λ_s``, in the spirit of Comsa et al.'s
``penalty_no_spike``) acts only when the label neuron is silent, through its extrapolated time
``t̂_y`` (formula above, whatever ``silent_output`` is): the cross-entropy alone is blind to a common
shift of all output times, so it cannot make a network whose outputs all fell silent fire again.
``R_r`` are :class:`~spikescale.train.ssr.Regulariser` terms.

Accuracy: the class is the earliest output spike (ties → lowest index); a sample with no output spike
is an error. ``extras`` holds per-batch *sums over samples* (the trainer divides by the number of
samples), all under this counting convention: a neuron spikes when it fires inside its window
(``t ≤ T``), output spikes after the decision count, input spikes are reported separately.

* ``cross_entropy`` — CE per sample;
* ``spikes_per_neuron_input`` — input spikes / input neurons;
* ``spikes_per_neuron_layer{l}`` — spikes / neurons of layer ``l = 1..L`` (``L``: output); the silent
  fraction of a layer is ``1 −`` this (one spike at most);
* ``spikes_per_neuron_hidden`` — all hidden spikes / all hidden neurons (the seed's average);
* ``no_output_spike`` — samples without any output spike; ``silent_label`` — samples whose label
  neuron is silent;
* ``synops`` — input spikes inside each layer's window × fan-out, summed over layers;
  ``synops_causal`` — inputs each neuron integrated before it fired (all of the window if silent),
  the work of an early-stopping event-driven implementation;
* ``decision_time`` — the first output spike (``T`` when there is none);
* ``reg_<name>`` — each regulariser's unweighted value (sum over regularised layers and neurons).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.batch import Batch
from ..functional.ttfs import LayerTrace, ttfs_decode
from ..nn.ttfs import TTFSNetwork, TTFSNetworkOutput
from .objective import StepResult
from .ssr import Regulariser

__all__ = ["SILENT_OUTPUTS", "TTFSObjective", "build_ttfs", "firing_metrics", "MODEL_OPTIONS", "OBJECTIVE_OPTIONS"]

SILENT_OUTPUTS = ("clamp", "extrapolate")


class TTFSObjective:
    """Loss, accuracy and firing metrics of a :class:`~spikescale.nn.ttfs.TTFSNetwork` (module doc).

    Args:
        sigma: softmax temperature ``σ`` (time units).
        time_penalty, time_penalty_scale: ``λ_t`` and ``β`` of the temporal penalty (off when 0).
        silent_penalty: ``λ_s`` of the no-spike penalty on silent label neurons (off when 0).
        silent_output: ``"clamp"`` or ``"extrapolate"``.
        regularisers: :class:`~spikescale.train.ssr.Regulariser` terms (names must differ).
    """

    def __init__(
        self,
        *,
        sigma: float = 0.1,
        time_penalty: float = 0.0,
        time_penalty_scale: float = 1.0,
        silent_penalty: float = 1.0,
        silent_output: str = "extrapolate",
        regularisers: Sequence[Regulariser] = (),
    ) -> None:
        problems = []
        if not sigma > 0:
            problems.append(f"sigma must be > 0, got {sigma}")
        if time_penalty < 0 or not time_penalty_scale > 0:
            problems.append(f"time_penalty must be >= 0 and time_penalty_scale > 0, got {time_penalty}, {time_penalty_scale}")
        if silent_penalty < 0:
            problems.append(f"silent_penalty must be >= 0, got {silent_penalty}")
        if silent_output not in SILENT_OUTPUTS:
            problems.append(f"silent_output must be one of {SILENT_OUTPUTS}, got {silent_output!r}")
        names = [r.name for r in regularisers]
        if len(set(names)) != len(names):
            problems.append(f"each regulariser may appear once, got {names}")
        if problems:
            raise ValueError("TTFS objective: " + "; ".join(problems))
        self.sigma, self.time_penalty, self.time_penalty_scale = float(sigma), float(time_penalty), float(time_penalty_scale)
        self.silent_penalty, self.silent_output = float(silent_penalty), silent_output
        self.regularisers = list(regularisers)

    @staticmethod
    def extrapolated_times(trace: LayerTrace) -> Tensor:
        """``T + (ϑ − ṽ(T))·(T − T_0)/ϑ`` for every output ``[B, K]`` (meaningful for silent ones)."""
        out = trace.output
        potential = out.slope * trace.t_end - out.offset  # ṽ(T): a silent neuron's sums cover its window
        return trace.t_end + (trace.threshold - potential) * (trace.t_end - trace.t_start) / trace.threshold

    def finite_times(self, trace: LayerTrace, extrapolated: Optional[Tensor] = None) -> Tensor:
        """Output times ``[B, K]`` with silent outputs replaced as ``silent_output`` says
        (``extrapolated``: :meth:`extrapolated_times` if already computed)."""
        out = trace.output
        if self.silent_output == "clamp":
            surrogate = torch.full_like(out.times, trace.t_end)
        else:
            surrogate = self.extrapolated_times(trace) if extrapolated is None else extrapolated
        return torch.where(out.fired, out.times, surrogate)

    def __call__(self, model: TTFSNetwork, batch: Batch) -> StepResult:
        if batch.x.dim() != 2:
            raise ValueError(f"TTFS objective: expected static inputs x [B, C], got shape {tuple(batch.x.shape)}")
        classes = model.out_features
        if batch.y.dim() != 1 or batch.y.numel() != batch.x.shape[0] or not bool(((batch.y >= 0) & (batch.y < classes)).all()):
            raise ValueError(f"TTFS objective: expected labels y [B] in 0..{classes - 1} for {batch.x.shape[0]} samples")
        result = model(batch.x)
        output = result.traces[-1]
        extrapolated = self.extrapolated_times(output) if self.silent_output == "extrapolate" or self.silent_penalty else None
        times = self.finite_times(output, extrapolated)
        per_sample_ce = F.cross_entropy(-times / self.sigma, batch.y, reduction="none")
        loss = per_sample_ce.mean()
        if self.time_penalty:
            label_time = times.gather(1, batch.y[:, None]).squeeze(1)
            loss = loss + self.time_penalty * torch.expm1(label_time / self.time_penalty_scale).mean()
        if self.silent_penalty:
            label = batch.y[:, None]
            late = (extrapolated.gather(1, label) - output.t_end).clamp(min=0)
            loss = loss + self.silent_penalty * torch.where(output.output.fired.gather(1, label), 0.0, late).mean()
        extras: dict[str, Tensor] = {"cross_entropy": per_sample_ce.detach().sum()}
        for regulariser in self.regularisers:
            value = regulariser(result.traces)
            loss = loss + value.loss
            extras[f"reg_{regulariser.name}"] = value.batch_sum
        prediction, spiked = ttfs_decode(result.times.detach())
        correct = ((prediction == batch.y) & spiked).sum()
        extras.update(firing_metrics(model, result, batch.y))
        return StepResult(loss, correct, int(batch.y.shape[0]), extras)

    def __repr__(self) -> str:
        return (
            f"TTFSObjective(sigma={self.sigma:g}, time_penalty={self.time_penalty:g}, "
            f"time_penalty_scale={self.time_penalty_scale:g}, silent_penalty={self.silent_penalty:g}, "
            f"silent_output={self.silent_output!r}, "
            f"regularisers={self.regularisers})"
        )


@torch.no_grad()
def firing_metrics(model: TTFSNetwork, result: TTFSNetworkOutput, labels: Tensor) -> dict[str, Tensor]:
    """The firing ``extras`` of the module doc, as sums over the batch's samples."""
    metrics: dict[str, Tensor] = {}
    inputs = result.inputs
    metrics["spikes_per_neuron_input"] = (inputs < math.inf).sum() / inputs.shape[1]
    hidden_spikes = hidden_neurons = 0
    synops = synops_causal = 0
    for index, (layer, trace) in enumerate(zip(model.layers, result.traces), start=1):
        spikes = trace.output.fired.sum()
        metrics[f"spikes_per_neuron_layer{index}"] = spikes / layer.out_features
        if index < len(result.traces):
            hidden_spikes = hidden_spikes + spikes
            hidden_neurons += layer.out_features
        synops = synops + layer.synaptic_operations(trace.inputs).sum()
        synops_causal = synops_causal + trace.output.count.sum()
    if hidden_neurons:
        metrics["spikes_per_neuron_hidden"] = hidden_spikes / hidden_neurons
    output = result.traces[-1].output
    metrics["no_output_spike"] = (~output.fired.any(1)).sum()
    metrics["silent_label"] = (~output.fired.gather(1, labels[:, None])).sum()
    metrics["synops"] = synops
    metrics["synops_causal"] = synops_causal
    first = result.times.min(1).values.clamp(max=result.traces[-1].t_end)  # no output spike: T
    metrics["decision_time"] = first.sum()
    return {key: value.to(torch.float64) for key, value in metrics.items()}


# ---------------------------------------------------------------------------------------------------
# Building model + objective from a plain dict (recipes)

MODEL_OPTIONS = {
    "sizes": [784, 400, 10],
    "threshold": 1.0,
    "learn_threshold": False,
    "tau_in": 1.0,
    "silent_zero": True,
    "window": "global",
    "t_max": None,
    "backend": "auto",
    "chunk_size": None,
    "weight_mean": 2.0,
    "weight_std": 1.0,
    "slope_floor": 0.0,
    "max_dw": None,
    "bump": None,
}
OBJECTIVE_OPTIONS = {
    "sigma": 0.1,
    "time_penalty": 0.0,
    "time_penalty_scale": 1.0,
    "silent_penalty": 1.0,
    "silent_output": "extrapolate",
    "regularisers": [],
}
_REGULARISER_KEYS = ("name", "gamma", "rho", "reduction", "batch_reduction", "exclude_output", "v_ref", "offset")


def build_ttfs(config: Optional[dict[str, Any]] = None) -> tuple[TTFSNetwork, TTFSObjective]:
    """``(model, objective)`` from a flat dict of options; unknown keys raise one ``ValueError``.

    Keys (defaults in :data:`MODEL_OPTIONS` and :data:`OBJECTIVE_OPTIONS`): the arguments of
    :class:`~spikescale.nn.ttfs.TTFSNetwork` and of :class:`TTFSObjective`; ``regularisers`` is a list
    of dicts with the fields of :class:`~spikescale.train.ssr.Regulariser`, e.g.
    ``{"name": "m_ssr", "gamma": 1.3e-5, "reduction": "sum", "batch_reduction": "sum"}``.
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(MODEL_OPTIONS) - set(OBJECTIVE_OPTIONS))
    problems = [f"unknown key(s) {unknown}; allowed: {sorted(MODEL_OPTIONS) + sorted(OBJECTIVE_OPTIONS)}"] if unknown else []
    regularisers = []
    for index, entry in enumerate(config.get("regularisers", [])):
        if not isinstance(entry, dict) or "name" not in entry:
            problems.append(f"regularisers[{index}] must be a dict with a 'name', got {entry!r}")
            continue
        bad = sorted(set(entry) - set(_REGULARISER_KEYS))
        if bad:
            problems.append(f"regularisers[{index}] ({entry['name']}): unknown key(s) {bad}; allowed: {list(_REGULARISER_KEYS)}")
            continue
        try:
            regularisers.append(Regulariser(**entry))
        except ValueError as err:
            problems.append(f"regularisers[{index}]: {err}")
    if problems:
        raise ValueError("TTFS config: " + "; ".join(problems))
    model_args = {key: config.get(key, default) for key, default in MODEL_OPTIONS.items()}
    sizes = model_args.pop("sizes")
    model = TTFSNetwork(sizes, **model_args)
    objective_args = {key: config.get(key, default) for key, default in OBJECTIVE_OPTIONS.items() if key != "regularisers"}
    objective = TTFSObjective(regularisers=regularisers, **objective_args)
    for regulariser in regularisers:
        regulariser.strengths(len(model.layers))  # per-layer γ lists must match the depth
    return model, objective
