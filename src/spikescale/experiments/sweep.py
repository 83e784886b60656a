"""Hyper-parameter sweeps on Optuna and seed studies.

A recipe's ``search`` section declares the space (dotted recipe keys), the metric of the epoch metrics to
optimise, its direction and the pruner::

    search:
      metric: valid_accuracy
      direction: maximize
      pruner: median
      space:
        train.lr: {type: float, low: 0.001, high: 0.03, log: true}
        model.branches: {type: int, low: 1, high: 8}
        model.alpha_init: {type: categorical, choices: [medium, large]}

Trials are stored in an Optuna study: by default a SQLite file in the sweep folder; any SQLAlchemy URL
(e.g. PostgreSQL) lets workers on several machines share one study. Running the same command again
continues the study (finished trials are kept; trials of a killed worker are retried once through
Optuna's heartbeat). Every trial is an ordinary run directory ``<out>/<name>/sweep/trial-<n>``.
"""

from __future__ import annotations

import logging
import multiprocessing
import warnings
from pathlib import Path
from typing import Optional

from .config import apply_overrides, validate
from .runner import run_recipe

__all__ = ["run_sweep", "seed_recipe", "require_optuna"]

log = logging.getLogger("spikescale")


def require_optuna():
    try:
        import optuna
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("sweeps need Optuna: pip install 'spikescale[sweep]'") from err
    return optuna


def _suggest(trial, path: str, spec: dict):
    if spec["type"] == "categorical":
        return trial.suggest_categorical(path, spec["choices"])
    if spec["type"] == "int":
        return trial.suggest_int(path, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)), log=bool(spec.get("log", False)))
    return trial.suggest_float(path, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)))


class _PruningCallback:
    """Report the search metric after every epoch and stop trials that the pruner rejects."""

    def __init__(self, trial, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, trainer, metrics: dict) -> None:
        optuna = require_optuna()
        if self.metric not in metrics:
            raise ValueError(f"search.metric {self.metric!r} is not an epoch metric; available: {sorted(metrics)}")
        self.trial.report(float(metrics[self.metric]), int(metrics["epoch"]))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {metrics['epoch']}")


def _storage(url: str):
    optuna = require_optuna()
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # the heartbeat is marked experimental; it is what makes killed workers' trials retry
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, heartbeat_interval=60, grace_period=180,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))


def _objective(recipe: dict, folder: Path, device: Optional[str]):
    search = recipe["search"]

    def objective(trial) -> float:
        values = {path: _suggest(trial, path, spec) for path, spec in search["space"].items()}
        overrides = [f"{path}={_yaml(value)}" for path, value in values.items()]
        config = validate(apply_overrides({**recipe, "grid": {}, "search": {**search, "space": {}}}, overrides), f"trial {trial.number}")
        run_dir = folder / f"trial-{trial.number:04d}"
        callback = _PruningCallback(trial, search["metric"])
        summary = run_recipe(config, run_dir, resume=run_dir.exists(), device=device, label=f"{recipe['name']} trial {trial.number}", callbacks=[callback])
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("test_accuracy", summary.get("test_accuracy"))
        metric = search["metric"]
        value = summary.get(metric)
        if value is None:  # a per-epoch metric that the summary lacks: use the selected epoch's value
            history = callback.trial.intermediate_values
            value = max(history.values()) if search["direction"] == "maximize" else min(history.values())
        return float(value)

    return objective


def _yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _worker(recipe: dict, folder: str, url: str, study: str, trials: int, device: Optional[str]) -> None:
    optuna = require_optuna()
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    loaded = optuna.load_study(study_name=study, storage=_storage(url))
    stop = MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
    loaded.optimize(_objective(recipe, Path(folder), device), callbacks=[stop], catch=())


def run_sweep(
    recipe: dict,
    out: Path,
    *,
    trials: int,
    storage: Optional[str] = None,
    study: Optional[str] = None,
    workers: int = 1,
    device: Optional[str] = None,
):
    """Run (or continue) an Optuna study until it holds ``trials`` finished trials; returns the study."""
    optuna = require_optuna()
    search = recipe["search"]
    if not search["space"]:
        raise ValueError(f"recipe {recipe['name']!r} has no search.space to sweep over")
    if trials < 1 or workers < 1:
        raise ValueError("--trials and --workers must be >= 1")
    folder = Path(out) / recipe["name"] / "sweep"
    folder.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(folder / 'optuna.db').resolve()}"
    name = study or recipe["name"]
    pruner = optuna.pruners.MedianPruner(n_warmup_steps=1) if search["pruner"] == "median" else optuna.pruners.NopPruner()
    optuna.create_study(study_name=name, storage=_storage(url), direction=search["direction"], pruner=pruner, load_if_exists=True)
    if workers == 1:
        _worker(recipe, str(folder), url, name, trials, device)
    else:
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=_worker, args=(recipe, str(folder), url, name, trials, device)) for _ in range(workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failed = [p.exitcode for p in processes if p.exitcode]
        if failed:
            raise RuntimeError(f"{len(failed)} sweep worker(s) failed (exit codes {failed}); see the log above")
    return optuna.load_study(study_name=name, storage=_storage(url))


def seed_recipe(recipe: dict, seeds: int) -> dict:
    """``recipe`` with ``seed`` added to its grid: ``seeds`` runs per grid variant (seeds 0 … n-1)."""
    if seeds < 1:
        raise ValueError(f"--n must be >= 1, got {seeds}")
    grid = dict(recipe.get("grid") or {})
    grid["seed"] = list(range(seeds))
    return validate({**recipe, "grid": grid})
