"""``spikescale train`` and ``spikescale recipes``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.config import list_recipes, load_recipe
from ..experiments.runner import run_variants
from ..report.report import compare_runs


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train a recipe (a shipped name or a YAML path) into a run directory",
        description="Train a recipe. Examples:\n"
        "  spikescale train xor-multiscale-dh2\n"
        "  spikescale train xor-delayed --set train.epochs=20 --set model.alpha_init=medium --seed 3\n"
        "  spikescale train my_recipe.yaml --out runs --resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("recipe", help="shipped recipe name (see `spikescale recipes`) or path to a YAML file")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe field by dotted path (repeatable), e.g. train.lr=0.005")
    train.add_argument("--seed", type=int, help="shortcut for --set seed=N")
    train.add_argument("--out", type=Path, default=Path("runs"), help="parent folder of run directories (default: runs)")
    train.add_argument("--device", choices=["cpu", "cuda"], help="override train.device")
    train.add_argument("--resume", action="store_true", help="continue interrupted runs from their last checkpoint")
    train.add_argument("--tensorboard", action="store_true", help="also log epoch metrics to <run>/tensorboard")
    train.set_defaults(func=_train)

    recipes = sub.add_parser("recipes", help="list the shipped recipes", description="List the recipes shipped with spikescale.")
    recipes.set_defaults(func=_recipes)


def _train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    recipe = load_recipe(args.recipe, overrides)
    results = run_variants(recipe, args.out, resume=args.resume, device=args.device, tensorboard=args.tensorboard)
    print(compare_runs([run_dir for run_dir, _ in results]))
    for run_dir, _ in results:
        print(f"report: {run_dir / 'report.md'}")
    return 0


def _recipes(args: argparse.Namespace) -> int:
    recipes = list_recipes()
    width = max(map(len, recipes), default=0)
    for name, description in recipes.items():
        print(f"{name:{width}s}  {description}")
    return 0
