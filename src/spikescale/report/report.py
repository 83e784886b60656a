"""Markdown reports of run directories and tables comparing several runs (mean ± std over seeds)."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
import yaml

from .plots import plot_curves, plot_gradient_flow, plot_raster, plot_spike_times, plot_timing_histograms, plot_tradeoff

__all__ = ["load_run", "write_report", "compare_runs", "sweep_table", "tradeoff", "RunFiles"]


class RunFiles:
    """The files of one run directory (``config.yaml``, ``metrics.jsonl``, ``summary.json``, ``analysis/``)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        if not (self.path / "config.yaml").is_file():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.yaml)")
        self.config = yaml.safe_load((self.path / "config.yaml").read_text())
        metrics = self.path / "metrics.jsonl"
        self.history = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
        summary = self.path / "summary.json"
        self.summary = json.loads(summary.read_text()) if summary.exists() else None

    def analysis(self, name: str) -> dict:
        path = self.path / "analysis" / f"{name}.npz"
        if not path.exists():
            return {}
        with np.load(path) as data:
            return {key: data[key] for key in data.files}


def load_run(path) -> RunFiles:
    return RunFiles(path)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_report(run_dir) -> Path:
    """(Re)build ``report.md`` and ``plots/*.png`` of a run directory from its files; returns the report path."""
    run = RunFiles(run_dir)
    plots = run.path / "plots"
    figures = []
    if run.history:
        figures.append(("Training curves", plot_curves(run.history, plots / "curves.png")))
    before, after = run.analysis("timing_before"), run.analysis("timing_after")
    if before and after:
        figures.append(("Timing factors before and after training", plot_timing_histograms(before, after, plots / "timing.png")))
    figures.append(("Hidden spikes of a few test samples", plot_raster(run.analysis("raster"), plots / "raster.png")))
    figures.append(("Gradient magnitude over time (soma potential vs dendritic currents)", plot_gradient_flow(run.analysis("gradient_flow"), plots / "gradient_flow.png")))
    figures.append(("First-spike times per layer (TTFS)", plot_spike_times(run.analysis("spike_times"), plots / "spike_times.png")))
    lines = [f"# {run.config.get('name', run.path.name)}", ""]
    if run.config.get("description"):
        lines += [run.config["description"], ""]
    if run.summary:
        lines += ["## Summary", "", "| metric | value |", "|---|---|"]
        for key, value in run.summary.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {_fmt(v, 3)}" for k, v in value.items())
            lines.append(f"| {key} | {_fmt(value)} |")
        lines.append("")
    else:
        lines += ["*Run not finished: no summary yet.*", ""]
    if run.history:
        lines += ["## Epochs", "", "| epoch | train loss | train acc | valid acc | s |", "|---|---|---|---|---|"]
        for m in run.history:
            lines.append(f"| {m['epoch']} | {_fmt(m['train_loss'])} | {_fmt(m['train_accuracy'])} | {_fmt(m.get('valid_accuracy'))} | {m['epoch_seconds']:.1f} |")
        lines.append("")
    for title, figure in figures:
        if figure is not None:
            lines += [f"## {title}", "", f"![{title}]({figure.relative_to(run.path).as_posix()})", ""]
    lines += ["## Configuration", "", "```yaml", yaml.safe_dump(run.config, sort_keys=False).rstrip(), "```", ""]
    path = run.path / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _without_seed(config: dict) -> str:
    config = json.loads(json.dumps(config))
    config.pop("seed", None)
    config.pop("name", None)
    if isinstance(config.get("model"), dict):
        config["model"].pop("seed", None)
    return json.dumps(config, sort_keys=True)


# Two-sided 95 % quantiles of Student's t for n-1 = 1 … 30 degrees of freedom (1.96 beyond).
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def interval95(values: list[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student's t), 0 for one value."""
    n = len(values)
    if n < 2:
        return 0.0
    t = _T95[n - 2] if n - 2 < len(_T95) else 1.96
    return t * float(np.std(values, ddof=1)) / math.sqrt(n)


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = float(np.mean(values))
    digits = 4 if abs(mean) < 10 else 0
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(values, ddof=1)):.{digits}f} [±{interval95(values):.{digits}f}]"


def _hidden_spikes(summary: dict) -> Optional[float]:
    spikes = summary.get("spikes_per_neuron") or {}
    hidden = [v for k, v in spikes.items() if k.startswith("layers.")]
    return float(np.mean(hidden)) if hidden else None


COLUMNS = OrderedDict(
    [
        ("test acc", lambda s: s.get("test_accuracy")),
        ("final test acc", lambda s: s.get("final_test_accuracy")),
        ("valid acc", lambda s: s.get("valid_accuracy")),
        ("spikes/neuron (hidden)", _hidden_spikes),
        ("synops/sample", lambda s: s.get("synops_per_sample")),
        ("params", lambda s: s.get("params")),
        ("wall s", lambda s: s.get("wall_seconds")),
    ]
)


def _groups(run_dirs: Iterable) -> "OrderedDict[str, list[RunFiles]]":
    """Finished runs grouped by configuration without the seed."""
    groups: "OrderedDict[str, list[RunFiles]]" = OrderedDict()
    for path in run_dirs:
        run = RunFiles(path)
        if run.summary is not None:
            groups.setdefault(_without_seed(run.config), []).append(run)
    return groups


def _group_name(runs: list) -> str:
    return runs[0].summary.get("label") or runs[0].config.get("name", runs[0].path.name)


def tradeoff(run_dirs: Iterable, path) -> Path:
    """Plot test accuracy against hidden spikes per neuron (mean ± std over seeds) for groups of runs.

    A series is a recipe (grid variants of one recipe form a curve), e.g. one regulariser over its strengths.
    """
    points = []
    for runs in _groups(run_dirs).values():
        spikes = [_hidden_spikes(r.summary) for r in runs]
        accuracy = [r.summary.get("test_accuracy") for r in runs]
        if None in spikes or None in accuracy:
            continue
        std = float(np.std(accuracy, ddof=1)) if len(accuracy) > 1 else 0.0
        points.append((runs[0].summary.get("recipe", _group_name(runs)), float(np.mean(spikes)), float(np.mean(accuracy)), std))
    if not points:
        raise ValueError("no finished run reports both test accuracy and hidden spikes per neuron")
    return plot_tradeoff(points, Path(path))


def sweep_table(run_dirs: Iterable, key: str, values: list, evaluate: Callable[[Path, str], float]) -> str:
    """A Markdown table of ``evaluate(run, "key=value")`` (e.g. test accuracy under input noise) for each value:
    one row per group of runs that differ only by seed, cells ``mean ± std [±h]`` over the seeds."""
    lines = ["| run | n | " + " | ".join(f"{key}={v}" for v in values) + " |", "|" + "---|" * (len(values) + 2)]
    for runs in _groups(run_dirs).values():
        cells = [_mean_std([evaluate(r.path, f"{key}={v}") for r in runs]) for v in values]
        lines.append(f"| {_group_name(runs)} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_runs(run_dirs: Iterable) -> str:
    """A Markdown table of finished runs; runs that differ only by seed are one row: ``mean ± std [±h]`` with
    ``h`` the half-width of the 95 % confidence interval of the mean, and ``n`` the number of seeds."""
    header = "| run | n | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for runs in _groups(run_dirs).values():
        name = _group_name(runs)
        cells = [_mean_std([column(r.summary) for r in runs]) for column in COLUMNS.values()]
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
