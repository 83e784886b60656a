"""``spikescale evaluate``: the test accuracy of a trained run, optionally under changed data settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from ..experiments.config import apply_overrides, validate
from ..experiments.runner import load_run_model
from ..experiments.sources import build_sources
from ..report.report import sweep_table
from ..train.trainer import TrainConfig, Trainer
from .report import find_runs


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="evaluate a trained run on its test set, optionally with changed data settings",
        description="Evaluate the selected model of a run. Data settings can be changed, e.g. to measure robustness:\n"
        "  spikescale evaluate runs/fsdd-dh-sfnn/seed=0 --set data.options.noise_hz=5\n"
        "or swept over several runs (a table of test accuracy, mean ± std over seeds):\n"
        "  spikescale evaluate runs/fsdd-sfnn runs/fsdd-dh-sfnn --sweep data.options.noise_hz=0,5,10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", nargs="+", type=Path, help="a run directory; with --sweep, run directories or folders holding them")
    parser.add_argument("--sweep", metavar="KEY=V1,V2,...", help="evaluate every run at each value of one data.* setting")
    parser.add_argument("--out", type=Path, help="with --sweep, also write the table to this Markdown file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override data.* settings of the run's recipe")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--split", choices=["test", "valid"], default="test")
    parser.set_defaults(func=_evaluate)


def evaluate_run(run: Path, overrides: list[str], checkpoint: str = "best", split: str = "test") -> dict:
    """Metrics of a run's model on its ``split`` after applying ``data.*`` overrides to its recipe."""
    bad = [o for o in overrides if not o.startswith("data.")]
    if bad:
        raise ValueError(f"evaluate only changes data settings (data.*); got {bad}")
    recipe = yaml.safe_load((Path(run) / "config.yaml").read_text()) if (Path(run) / "config.yaml").exists() else None
    if recipe is None:
        raise FileNotFoundError(f"{run} is not a run directory (no config.yaml)")
    recipe = validate(apply_overrides(recipe, overrides), str(run))
    model, objective, _ = load_run_model(run, checkpoint)
    sources = build_sources(recipe)
    trainer = Trainer(model, objective, TrainConfig(epochs=1, progress=False, select_on="last", device=recipe["train"]["device"]))
    source = sources.test if split == "test" else sources.valid
    if source is None:
        raise ValueError(f"{run}: the data has no {split} split")
    return trainer.evaluate(source, split)


def _evaluate(args: argparse.Namespace) -> int:
    if args.sweep is None:
        if len(args.run) != 1:
            raise ValueError(f"give one run directory (got {len(args.run)}), or --sweep to evaluate several")
        print(json.dumps(evaluate_run(args.run[0], args.overrides, args.checkpoint, args.split), indent=2))
        return 0
    key, _, values = args.sweep.partition("=")
    if not key or not values:
        raise ValueError(f"--sweep expects KEY=V1,V2,... (e.g. data.options.noise_hz=0,5,10), got {args.sweep!r}")

    def accuracy(run: Path, setting: str) -> float:
        metrics = evaluate_run(run, [*args.overrides, setting], args.checkpoint, args.split)
        return metrics[f"{args.split}_accuracy"]

    table = sweep_table(find_runs(args.run), key, values.split(","), accuracy)
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0
