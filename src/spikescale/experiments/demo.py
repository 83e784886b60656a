"""The main job: DH-SNN against vanilla SNNs on the two spiking XOR tasks, on a laptop budget.

Trains the shipped XOR recipes with a reduced budget (``full``: about ten minutes on two CPU cores;
``quick``: under a minute), writes one run directory per model plus ``comparison.md``, and prints one
comparison table. The full-budget paper settings are the recipes themselves (``spikescale train ...``).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Optional

from .config import load_recipe
from .runner import run_recipe

__all__ = ["DEMO_RUNS", "BUDGETS", "run_demo"]

DEMO_RUNS = [
    ("xor-multiscale-vanilla", "multi-timescale XOR", "vanilla SFNN"),
    ("xor-multiscale-dh1", "multi-timescale XOR", "DH-SFNN, 1 branch"),
    ("xor-multiscale-dh2", "multi-timescale XOR", "DH-SFNN, 2 branches (beneficial init)"),
    ("xor-multiscale-dh1-2layer", "multi-timescale XOR", "DH-SFNN, 2 layers × 1 branch"),
    ("xor-multiscale-dhsrnn", "multi-timescale XOR", "DH-SRNN, 1 branch"),
    ("xor-delayed-vanilla", "delayed XOR (130 steps)", "vanilla SFNN"),
    ("xor-delayed-dh", "delayed XOR (130 steps)", "DH-SFNN, 1 branch (α large)"),
]

BUDGETS = {
    "full": dict(epochs=40, batches=100, batch_size=256, eval_samples=1000, step_size=15),
    "quick": dict(epochs=2, batches=3, batch_size=64, eval_samples=128, step_size=1),
}


def _overrides(budget: dict) -> list[str]:
    return [
        f"train.epochs={budget['epochs']}",
        f"train.step_size={budget['step_size']}",
        f"data.batches_per_epoch={budget['batches']}",
        f"data.batch_size={budget['batch_size']}",
        f"data.eval_samples={budget['eval_samples']}",
        "grid={}",
    ]


def run_demo(*, quick: bool = False, out: Optional[Path] = None, seed: int = 0, progress: bool = True) -> Path:
    """Run the comparison; returns the folder holding the run directories and ``comparison.md``."""
    budget = BUDGETS["quick" if quick else "full"]
    out = Path(out) if out is not None else Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    overrides = _overrides(budget) + [f"seed={seed}", f"train.progress={str(progress).lower()}"]
    rows = []
    start = time.perf_counter()
    for index, (recipe_name, task, model) in enumerate(DEMO_RUNS, 1):
        print(f"[{index}/{len(DEMO_RUNS)}] {task}: {model}", flush=True)
        recipe = load_recipe(recipe_name, overrides)
        t0 = time.perf_counter()
        summary = run_recipe(recipe, out / recipe_name, label=recipe_name)
        rows.append((task, model, summary, time.perf_counter() - t0))
    lines = [
        f"# spikescale demo ({'quick' if quick else 'full'} budget: {budget['epochs']} epochs × "
        f"{budget['batches']} batches of {budget['batch_size']}, seed {seed})",
        "",
        "| task | model | test accuracy | hidden spikes/neuron | params | synops/sample | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, model, summary, seconds in rows:
        hidden = [v for k, v in summary["spikes_per_neuron"].items() if k.startswith("layers.")]
        lines.append(
            f"| {task} | {model} | {100 * summary['test_accuracy']:.1f} % | {sum(hidden) / len(hidden):.2f} | "
            f"{summary['params']} | {summary['synops_per_sample']:.0f} | {seconds:.0f} |"
        )
    lines += ["", f"Total: {time.perf_counter() - start:.0f} s. Each run's report: `<run>/report.md`."]
    table = "\n".join(lines)
    (out / "comparison.md").write_text(table + "\n", encoding="utf-8")
    print()
    print(table)
    print(f"\nrun directories and reports: {out}")
    return out
