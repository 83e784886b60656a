"""PNG plots of a run, drawn from the files in its run directory (headless, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_curves", "plot_timing_histograms", "plot_raster", "plot_gradient_flow", "plot_spike_times", "plot_tradeoff"]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(history: list[dict], path: Path) -> Path:
    """Loss and accuracy per epoch (train, valid, and test when measured every epoch)."""
    epochs = [m["epoch"] for m in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for prefix in ("train", "valid", "test"):
        if f"{prefix}_loss" in history[0]:
            ax_loss.plot(epochs, [m[f"{prefix}_loss"] for m in history], label=prefix)
            ax_acc.plot(epochs, [100 * m[f"{prefix}_accuracy"] for m in history], label=prefix)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_timing_histograms(before: dict, after: dict, path: Path) -> Optional[Path]:
    """Histograms of every timing factor before and after training, one panel per (module, branch)."""
    panels = []
    for name in before:
        values_before, values_after = np.atleast_2d(before[name].T).T, np.atleast_2d(after[name].T).T
        if values_before.ndim == 1:
            values_before, values_after = values_before[:, None], values_after[:, None]
        for branch in range(values_before.shape[1]):
            label = name if values_before.shape[1] == 1 else f"{name} (branch {branch + 1})"
            panels.append((label, values_before[:, branch], values_after[:, branch]))
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, (label, b, a) in zip(axes.flat, panels):
        ax.hist(b, bins=bins, alpha=0.5, label="before")
        ax.hist(a, bins=bins, alpha=0.5, label="after")
        ax.set(title=label, xlabel="factor")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return _save(fig, path)


def plot_raster(raster: dict, path: Path) -> Optional[Path]:
    """Hidden-layer spikes of a few samples: one row of panels per layer, one column per sample."""
    if not raster:
        return None
    layers = sorted(raster)
    samples = raster[layers[0]].shape[1]
    fig, axes = plt.subplots(len(layers), samples, figsize=(3.0 * samples, 2.4 * len(layers)), squeeze=False)
    for row, layer in enumerate(layers):
        spikes = raster[layer]
        for col in range(samples):
            t, n = np.nonzero(spikes[:, col])
            ax = axes[row, col]
            ax.scatter(t, n, s=1.5, marker="|", color="k")
            ax.set(xlim=(0, spikes.shape[0]), ylim=(-0.5, spikes.shape[2] - 0.5))
            ax.set_title(f"{layer}, sample {col + 1}", fontsize=8)
            if col == 0:
                ax.set_ylabel("neuron")
            if row == len(layers) - 1:
                ax.set_xlabel("step")
    return _save(fig, path)


def plot_gradient_flow(flow: dict, path: Path) -> Optional[Path]:
    """Mean |∂L/∂u_t| (soma) and |∂L/∂i_t| (dendrites) over time, per hidden layer, log scale."""
    if not flow:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name in sorted(flow):
        values = np.maximum(flow[name], 1e-30)
        ax.semilogy(values, label=name, linestyle="-" if name.endswith("soma") else "--")
    ax.set(xlabel="step", ylabel="mean |∂L/∂state|", title="gradient flow through time")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_spike_times(times: dict, path: Path) -> Optional[Path]:
    """Per layer of a TTFS network: a raster of first-spike times (a few samples) and their histogram."""
    if not times:
        return None
    layers = [name for name in times if name != "input"]
    fig, axes = plt.subplots(2, len(layers), figsize=(3.6 * len(layers), 5.2), squeeze=False)
    for col, name in enumerate(layers):
        values = times[name]
        fired = np.isfinite(values)
        sample = values[: min(8, len(values))]
        for spikes in sample:  # one colour per sample
            neurons = np.flatnonzero(np.isfinite(spikes))
            axes[0, col].scatter(spikes[neurons], neurons, s=3, marker="|")
        axes[0, col].set(title=f"{name}: first spikes, {len(sample)} samples", xlabel="time", ylabel="neuron")
        axes[1, col].hist(values[fired], bins=40)
        axes[1, col].set(title=f"{name}: {fired.mean():.3f} spikes per neuron", xlabel="spike time")
    return _save(fig, path)


def plot_tradeoff(points: list[tuple[str, float, float, float]], path: Path) -> Path:
    """Test accuracy against hidden spikes per neuron: ``[(series, spikes, accuracy, accuracy_std), ...]``.

    Points of the same series (e.g. one regulariser over its strengths) are joined in order of spikes.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series: dict[str, list] = {}
    for name, spikes, accuracy, std in points:
        series.setdefault(name, []).append((spikes, accuracy, std))
    for name, values in series.items():
        values.sort()
        x, y, e = zip(*values)
        ax.errorbar(x, [100 * v for v in y], yerr=[100 * v for v in e], marker="o", capsize=3, label=name)
    ax.set(xlabel="hidden spikes per neuron", ylabel="test accuracy (%)", title="accuracy vs firing")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
