"""``spikescale sweep`` (Optuna) and ``spikescale seeds`` (the same recipe over several seeds)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.config import load_recipe
from ..experiments.runner import run_variants
from ..experiments.sweep import run_sweep, seed_recipe
from ..report.report import compare_runs


def register(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="hyper-parameter search over a recipe's search space (Optuna)",
        description="Search the recipe's `search.space` with Optuna. Examples:\n"
        "  spikescale sweep xor-multiscale-sweep --trials 20\n"
        "  spikescale sweep my.yaml --trials 100 --workers 2\n"
        "  spikescale sweep my.yaml --trials 500 --storage postgresql://user@host/db --study shd  # many machines",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("recipe")
    sweep.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    sweep.add_argument("--storage", help="SQLAlchemy URL (default: SQLite file in the sweep folder)")
    sweep.add_argument("--study", help="study name (default: the recipe name)")
    sweep.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    sweep.add_argument("--out", type=Path, default=Path("runs"))
    sweep.add_argument("--device", choices=["cpu", "cuda"])
    sweep.set_defaults(func=_sweep)

    seeds = sub.add_parser(
        "seeds",
        help="train a recipe over several seeds and print mean ± std and 95 %% intervals",
        description="Run the recipe (every grid variant) with seeds 0 … n-1, then print the aggregate table.",
    )
    seeds.add_argument("recipe")
    seeds.add_argument("--n", type=int, default=5, help="number of seeds (default 5)")
    seeds.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    seeds.add_argument("--out", type=Path, default=Path("runs"))
    seeds.add_argument("--device", choices=["cpu", "cuda"])
    seeds.add_argument("--resume", action="store_true")
    seeds.set_defaults(func=_seeds)


def _sweep(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, args.overrides)
    study = run_sweep(recipe, args.out, trials=args.trials, storage=args.storage, study=args.study,
                      workers=args.workers, device=args.device)
    finished = [t for t in study.trials if t.value is not None]
    print(f"study {study.study_name}: {len(study.trials)} trials ({len(finished)} finished)")
    for trial in sorted(finished, key=lambda t: t.value, reverse=recipe["search"]["direction"] == "maximize")[:10]:
        print(f"  trial {trial.number:4d}  {recipe['search']['metric']} {trial.value:.4f}  {trial.params}")
    if finished:
        print(f"best: {study.best_params}  ({study.best_trial.user_attrs.get('run_dir')})")
    return 0


def _seeds(args: argparse.Namespace) -> int:
    recipe = seed_recipe(load_recipe(args.recipe, args.overrides), args.n)
    results = run_variants(recipe, args.out, resume=args.resume, device=args.device)
    print(compare_runs([run_dir for run_dir, _ in results]))
    return 0
