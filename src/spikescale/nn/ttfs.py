"""Time-to-first-spike layers and networks (spec ``ttfs-ssr.md`` §4, §8).

:class:`TTFSDense` wraps :func:`~spikescale.functional.ttfs.ttfs_dense` (global window, exact
sort-based first crossing) or :func:`~spikescale.functional.ttfs.ttfs_dense_window`
(layer-synchronous window). :class:`TTFSNetwork` stacks them behind the intensity-to-latency input code
``t = τ_in·(1 − x)``; the class is the earliest output spike.

Unlike the sequence layers of :mod:`spikescale.nn.layers`, TTFS layers map spike *times* to spike
times (``[B, N] → [B, M]``) and have no state: each neuron fires at most once per sample.

Windows (``window=``):

* ``"global"`` — every layer may fire in ``[0, T]`` (``t_max``: one ``T`` for all layers, or one per
  layer); default ``T = (L + 1)·τ_in`` for ``L`` layers.
* ``"layer"`` — layer ``l = 1..L`` fires in ``[l·τ_in, (l+1)·τ_in]`` and the inputs in ``[0, τ_in]``,
  so every input of a layer precedes its window (two matrix products per layer, no sorting).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..functional.ttfs import (
    TTFS_BACKENDS,
    ChopCounter,
    LayerTrace,
    TTFSOutput,
    resolve_backend,
    ttfs_decode,
    ttfs_dense,
    ttfs_dense_window,
    ttfs_encode,
)

__all__ = ["TTFSDense", "TTFSNetwork", "TTFSNetworkOutput", "WINDOWS", "WeightBumping"]

WINDOWS = ("global", "layer")
MODES = ("sorted", "window")


class TTFSDense(nn.Module):
    """Dense layer of non-leaky integrate-and-fire neurons with ramp PSPs, at most one spike each.

    Args:
        in_features, out_features: ``N`` and ``M``.
        threshold: firing threshold ``ϑ > 0``; ``learn_threshold`` makes it a per-neuron parameter.
        mode: ``"sorted"`` (window ``[0, t_max]``, exact causal sets) or ``"window"``
            (layer-synchronous window ``[t_start, t_max]``, all inputs causal).
        t_max: window end ``T`` (also the ``T`` of the sparse-firing regularisers).
        t_start: window start (``"window"`` mode only).
        backend: ``"auto"``, ``"numba"``, ``"torch"`` or ``"reference"`` (``"sorted"`` mode).
        chunk_size: output neurons per chunk of the ``torch`` back-end.
        weight_mean, weight_std: initial weights ``~ N(weight_mean/N, (weight_std/√N)²)``. The default
            positive mean lets most neurons fire at initialisation (on Fashion-MNIST with ``T = 3``:
            about 77 % of 400 hidden neurons); SSR removes spikes, it cannot revive dead neurons.
        slope_floor, max_dw: backward stabilisers (see :func:`~spikescale.functional.ttfs.spike_time`);
            chopped (sample, neuron) pairs are counted in ``self.chopped.count``.

    ``forward(t_in [B, N]) -> TTFSOutput`` (``times [B, M]``, ``+inf`` for silent neurons).

    The parameter ``weight`` is stored input-major, ``[in_features, out_features]`` (the layout the
    event-driven scan reads: one row per input spike); the functional calls get ``weight.t()``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        threshold: float = 1.0,
        *,
        learn_threshold: bool = False,
        mode: str = "sorted",
        t_max: float = 2.0,
        t_start: float = 0.0,
        backend: str = "auto",
        chunk_size: Optional[int] = None,
        weight_mean: float = 2.0,
        weight_std: float = 1.0,
        slope_floor: float = 0.0,
        max_dw: Optional[float] = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"TTFSDense: sizes must be >= 1, got in_features={in_features}, out_features={out_features}")
        if not threshold > 0:
            raise ValueError(f"TTFSDense: threshold must be > 0, got {threshold}")
        if mode not in MODES:
            raise ValueError(f"TTFSDense: unknown mode {mode!r}; expected one of {MODES}")
        if backend not in TTFS_BACKENDS:
            raise ValueError(f"TTFSDense: unknown backend {backend!r}; expected one of {TTFS_BACKENDS}")
        if not (math.isfinite(t_max) and t_max > (t_start if mode == "window" else 0.0)):
            raise ValueError(f"TTFSDense: t_max must be finite and after the window start, got {t_max}")
        if weight_std < 0 or slope_floor < 0 or (max_dw is not None and not max_dw > 0):
            raise ValueError("TTFSDense: weight_std and slope_floor must be >= 0 and max_dw > 0 (or None)")
        self.in_features, self.out_features = in_features, out_features
        self.mode, self.backend, self.chunk_size = mode, backend, chunk_size
        self.t_start, self.t_max = float(t_start), float(t_max)
        self.slope_floor, self.max_dw = float(slope_floor), max_dw
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        theta = torch.full((out_features,), float(threshold)) if learn_threshold else torch.tensor(float(threshold))
        if learn_threshold:
            self.threshold = nn.Parameter(theta)
        else:
            self.register_buffer("threshold", theta)
        self.chopped = ChopCounter()
        self.weight_mean, self.weight_std = float(weight_mean), float(weight_std)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``w ~ N(weight_mean/N, (weight_std/√N)²)`` with ``N = in_features``."""
        with torch.no_grad():
            self.weight.normal_(self.weight_mean / self.in_features, self.weight_std / math.sqrt(self.in_features))

    def forward(self, t_in: Tensor) -> TTFSOutput:
        if t_in.dim() != 2 or t_in.shape[1] != self.in_features:
            raise ValueError(f"TTFSDense: expected input spike times [B, {self.in_features}], got {tuple(t_in.shape)}")
        options = dict(slope_floor=self.slope_floor, max_dw=self.max_dw, counter=self.chopped)
        if self.mode == "window":
            return ttfs_dense_window(t_in, self.weight.t(), self.threshold, self.t_start, self.t_max, **options)
        return ttfs_dense(
            t_in, self.weight.t(), self.threshold, self.t_max, backend=self.backend, chunk_size=self.chunk_size, **options
        )

    def trace(self, t_in: Tensor) -> LayerTrace:
        """Run the layer and package what the regularisers need (:class:`LayerTrace`)."""
        backend = "torch" if self.mode == "window" else resolve_backend(self.backend, t_in.device)
        start = self.t_start if self.mode == "window" else 0.0
        return LayerTrace(t_in, self(t_in), self.weight.t(), self.threshold, start, self.t_max, backend)

    def synaptic_operations(self, t_in: Tensor) -> Tensor:
        """Per sample ``[B]``: input spikes inside the window × fan-out (``out_features``)."""
        inside = (t_in <= self.t_max) if self.mode == "sorted" else (t_in < math.inf)
        return inside.sum(1).to(torch.float64) * self.out_features

    def extra_repr(self) -> str:
        window = f"[{self.t_start:g}, {self.t_max:g}]" if self.mode == "window" else f"[0, {self.t_max:g}]"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"threshold={self.threshold.flatten()[0].item():g}, mode={self.mode!r}, window={window}, "
            f"backend={self.backend!r}, slope_floor={self.slope_floor:g}, max_dw={self.max_dw}"
        )


class TTFSNetworkOutput(NamedTuple):
    """``times [B, K]``: output spike times; ``inputs [B, C]``: encoded input times; ``traces``: one
    :class:`~spikescale.functional.ttfs.LayerTrace` per layer (hidden layers first, output last)."""

    times: Tensor
    inputs: Tensor
    traces: list


class WeightBumping:
    """Targeted weight bumping (Göltz et al., fastAndDeep; spec §4.7), applied after optimiser steps.

    After a training batch in which more than ``max_silent[l]`` of layer ``l``'s (sample, neuron) pairs
    were silent, the incoming weights of the neurons that were silent for *every* sample of the batch
    are raised by ``amount``; the amount doubles each time the same layer needs bumping in consecutive
    batches and returns to ``amount`` otherwise.
    """

    def __init__(self, max_silent: Sequence[float], amount: float = 5e-4) -> None:
        if not amount > 0 or any(not 0 <= f <= 1 for f in max_silent):
            raise ValueError(f"weight bumping: amount must be > 0 and max_silent fractions in [0, 1], got {amount}, {list(max_silent)}")
        self.max_silent = [float(f) for f in max_silent]
        self.amount = float(amount)
        self.scale = [1.0] * len(self.max_silent)
        self.pending: list[Optional[Tensor]] = [None] * len(self.max_silent)

    def record(self, fired: Sequence[Tensor]) -> None:
        for index, mask in enumerate(fired):
            silent = ~mask
            needs = float(silent.float().mean()) > self.max_silent[index]
            self.pending[index] = silent.all(0) if needs else None

    def apply(self, layers: Sequence[TTFSDense]) -> None:
        with torch.no_grad():
            for index, layer in enumerate(layers):
                dead = self.pending[index]
                if dead is None:
                    self.scale[index] = 1.0
                    continue
                layer.weight[:, dead] += self.amount * self.scale[index]
                self.scale[index] *= 2.0
                self.pending[index] = None


class TTFSNetwork(nn.Module):
    """Input code → ``TTFSDense`` layers ``sizes[0] → sizes[1] → … → sizes[-1]`` → earliest output spike.

    Args:
        sizes: layer widths including the input, e.g. ``[784, 400, 10]``.
        threshold, learn_threshold: firing threshold of every layer.
        tau_in: input window; ``t = tau_in·(1 − x)`` for intensities ``x`` in ``[0, 1]``.
        silent_zero: ``x = 0`` inputs never spike (else they spike at ``tau_in``).
        window: ``"global"`` or ``"layer"`` (module doc).
        t_max: ``"global"`` window end(s): one value or one per layer (default ``(L + 1)·tau_in``).
        backend, chunk_size, slope_floor, max_dw: passed to every :class:`TTFSDense`.
        weight_mean, weight_std: initialisation of every layer (one value, or one per layer); the
            default positive mean makes most neurons fire at initialisation (see :class:`TTFSDense`).
        bump: ``None`` or :class:`WeightBumping` options ``{"max_silent": [...], "amount": ...}``
            (``max_silent``: one fraction per layer).

    ``forward(x [B, C]) -> TTFSNetworkOutput``; ``predict(x) -> (class [B], spiked [B])``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        threshold: float = 1.0,
        learn_threshold: bool = False,
        tau_in: float = 1.0,
        silent_zero: bool = True,
        window: str = "global",
        t_max: Union[None, float, Sequence[float]] = None,
        backend: str = "auto",
        chunk_size: Optional[int] = None,
        weight_mean: Union[float, Sequence[float]] = 2.0,
        weight_std: Union[float, Sequence[float]] = 1.0,
        slope_floor: float = 0.0,
        max_dw: Optional[float] = None,
        bump: Optional[dict] = None,
    ) -> None:
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"TTFSNetwork: sizes must list at least an input and an output width (all >= 1), got {sizes}")
        if window not in WINDOWS:
            raise ValueError(f"TTFSNetwork: unknown window {window!r}; expected one of {WINDOWS}")
        if not tau_in > 0:
            raise ValueError(f"TTFSNetwork: tau_in must be > 0, got {tau_in}")
        depth = len(sizes) - 1
        self.sizes, self.tau_in, self.silent_zero, self.window = sizes, float(tau_in), bool(silent_zero), window
        if window == "layer":
            if t_max is not None:
                raise ValueError("TTFSNetwork: t_max applies to window='global'; layer windows are [l·tau_in, (l+1)·tau_in]")
            starts = [l * self.tau_in for l in range(1, depth + 1)]
            ends = [(l + 1) * self.tau_in for l in range(1, depth + 1)]
        else:
            ends = _per_layer(t_max if t_max is not None else (depth + 1) * self.tau_in, depth, "t_max")
            starts = [0.0] * depth
        means = _per_layer(weight_mean, depth, "weight_mean")
        stds = _per_layer(weight_std, depth, "weight_std")
        self.layers = nn.ModuleList(
            TTFSDense(
                sizes[l], sizes[l + 1], threshold, learn_threshold=learn_threshold,
                mode="window" if window == "layer" else "sorted", t_max=ends[l], t_start=starts[l],
                backend=backend, chunk_size=chunk_size, weight_mean=means[l], weight_std=stds[l],
                slope_floor=slope_floor, max_dw=max_dw,
            )
            for l in range(depth)
        )
        self.bumping = None
        if bump is not None:
            unknown = sorted(set(bump) - {"max_silent", "amount"})
            if unknown:
                raise ValueError(f"TTFSNetwork: unknown bump option(s) {unknown}; expected 'max_silent', 'amount'")
            self.bumping = WeightBumping(_per_layer(bump.get("max_silent", 0.15), depth, "bump.max_silent"), bump.get("amount", 5e-4))

    @property
    def in_features(self) -> int:
        return self.sizes[0]

    @property
    def out_features(self) -> int:
        return self.sizes[-1]

    def encode(self, x: Tensor) -> Tensor:
        """Input spike times ``[B, C]`` of intensities ``x [B, C]`` in ``[0, 1]``."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"TTFSNetwork: expected static inputs of shape [B, {self.in_features}], got {tuple(x.shape)}")
        return ttfs_encode(x, self.tau_in, silent_zero=self.silent_zero)

    def forward(self, x: Tensor) -> TTFSNetworkOutput:
        t_in = self.encode(x)
        traces = []
        t = t_in
        for layer in self.layers:
            trace = layer.trace(t)
            traces.append(trace)
            t = trace.output.times
        if self.training and self.bumping is not None:
            self.bumping.record([trace.output.fired for trace in traces])
        return TTFSNetworkOutput(t, t_in, traces)

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(class [B], spiked [B])`` by the earliest output spike (no gradients)."""
        with torch.no_grad():
            return ttfs_decode(self(x).times)

    def after_optimizer_step(self) -> None:
        """Apply pending weight bumps (called by the trainer after every optimiser step)."""
        if self.bumping is not None:
            self.bumping.apply(self.layers)

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, tau_in={self.tau_in:g}, silent_zero={self.silent_zero}, window={self.window!r}"


def _per_layer(value, depth: int, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * depth
    values = [float(v) for v in value]
    if len(values) != depth:
        raise ValueError(f"TTFSNetwork: {name} needs one value per layer ({depth}), got {len(values)}")
    return values
