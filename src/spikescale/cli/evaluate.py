"""``spikescale evaluate``: the test accuracy of a trained run, optionally under changed data settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from ..experiments.config import apply_overrides, validate
from ..experiments.runner import load_run_model
from ..experiments.sources import build_sources
from ..train.trainer import TrainConfig, Trainer


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="evaluate a trained run on its test set, optionally with changed data settings",
        description="Evaluate the selected model of a run. Data settings can be changed, e.g. to measure robustness:\n"
        "  spikescale evaluate runs/fsdd-dh-sfnn/seed=0 --set data.options.noise_hz=5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", type=Path)
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
    print(json.dumps(evaluate_run(args.run, args.overrides, args.checkpoint, args.split), indent=2))
    return 0
