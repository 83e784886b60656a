"""Turn a validated recipe into a run directory: data, model, objective, trainer, summary, report.

Run directory layout::

    RUN/config.yaml          resolved recipe (defaults filled in, overrides applied)
    RUN/versions.json        spikescale, torch, numpy, python versions
    RUN/model.json           input width, classes and step length (to rebuild the model from the run)
    RUN/metrics.jsonl        one JSON line per epoch
    RUN/checkpoints/last.pt  written atomically every epoch (resume point); best.pt: selected weights
    RUN/analysis/*.npz       timing factors before/after, spike raster, gradient flow
    RUN/summary.json         final numbers; RUN/report.md and RUN/plots/*.png
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import yaml

from .. import __version__
from ..nn.params import count_parameters
from ..nn.timing import TimingFactor
from ..nn.network import Network
from ..nn.ttfs import TTFSNetwork
from ..report.analysis import gradient_flow, hidden_raster, spike_times, timing_factors
from ..report.report import write_report
from ..train.checkpoint import atomic_write_bytes
from ..train.distributed import DistributedContext
from ..train.tracking import TensorBoardCallback
from ..train.trainer import TrainConfig, Trainer
from .config import build_model_from_recipe, expand_grid
from .rundir import RunLock, check_writable
from .sources import build_sources

__all__ = ["run_recipe", "run_variants", "RunExistsError", "seed_everything", "load_run_model"]

log = logging.getLogger("spikescale")


class RunExistsError(ValueError):
    """The run directory already holds a run (use ``--resume`` or another ``--out``)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(text.encode("utf-8")))


def _save_arrays(path: Path, arrays: dict) -> None:
    if arrays:
        atomic_write_bytes(path, lambda handle: np.savez_compressed(handle, **arrays))


def _train_config(recipe: dict, device: Optional[str]) -> TrainConfig:
    train = recipe["train"]
    select_on = train["select_on"] or ("test" if train["faithful"] else "valid")
    keys = ("epochs", "optimizer", "lr", "weight_decay", "eps", "schedule", "step_size", "gamma", "groups", "clip_grad_norm",
            "nan_policy", "amp", "progress")
    return TrainConfig(**{k: train[k] for k in keys}, select_on=select_on, device=device or train["device"])


def run_recipe(
    recipe: dict,
    run_dir: Path,
    *,
    resume: bool = False,
    device: Optional[str] = None,
    label: str = "",
    callbacks: Sequence = (),
) -> dict:
    """Train one (grid-free) recipe into ``run_dir``; returns the summary dict.

    Under ``torchrun`` every process calls this; they train together and only rank 0 writes files.
    ``callbacks`` are passed to the :class:`~spikescale.train.trainer.Trainer`.
    """
    run_dir = Path(run_dir)
    context = DistributedContext.from_env(device or recipe["train"]["device"])
    if context.is_main:
        with RunLock(run_dir):
            summary = _run(recipe, run_dir, resume, device, label, callbacks, context)
    else:
        summary = _run(recipe, run_dir, resume, device, label, callbacks, context)
    # Ranks leave together: none may tear down the process group while rank 0 still writes the report.
    context.barrier()
    return summary


def _run(recipe, run_dir: Path, resume: bool, device, label: str, callbacks, context: DistributedContext) -> dict:
    if (run_dir / "config.yaml").exists() and not resume:
        raise RunExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    if resume and (run_dir / "summary.json").exists():
        log.info("%s is finished; rebuilding its report", run_dir)
        write_report(run_dir)
        return json.loads((run_dir / "summary.json").read_text())
    if resume and (run_dir / "config.yaml").exists():
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        if saved != recipe:
            raise RunExistsError(f"{run_dir} was started with a different recipe; refusing to resume it with this one")
    context.barrier()  # every process has checked the directory before rank 0 writes into it
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_text(run_dir / "config.yaml", yaml.safe_dump(recipe, sort_keys=False))
        versions = {"spikescale": __version__, "torch": torch.__version__, "numpy": np.__version__,
                    "python": platform.python_version(), "processes": context.world}
        _write_text(run_dir / "versions.json", json.dumps(versions, indent=2))

    seed_everything(recipe["seed"])
    if recipe["train"]["deterministic"]:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    sources = build_sources(recipe)
    model, objective = build_model_from_recipe(recipe, sources.in_features, sources.classes)
    if context.is_main:
        check_writable(run_dir, model)
        shape = {"in_features": sources.in_features, "classes": sources.classes, "dt_ms": sources.dt_ms}
        _write_text(run_dir / "model.json", json.dumps(shape, indent=2))
    train = recipe["train"]
    if train["init_from"]:
        _initialise_from(model, Path(train["init_from"]))
    if train["trainable"] == "timing":
        freeze_all_but_timing(model)
    if context.is_main and not (run_dir / "analysis" / "timing_before.npz").exists():
        _save_arrays(run_dir / "analysis" / "timing_before.npz", timing_factors(model))
    trainer = Trainer(model, objective, _train_config(recipe, device), run_dir, callbacks=callbacks, distributed=context)
    if context.is_main:
        log.info("run %s: %s; %d parameters", run_dir, sources.description, count_parameters(model))
    summary = trainer.fit(sources.train, sources.valid, sources.test, resume=resume)
    summary.update(params=count_parameters(model), seed=recipe["seed"], recipe=recipe["name"], label=label or recipe["name"])
    if not context.is_main:
        return summary

    # Analyses of the selected model (the report reads only these files).
    if trainer.best is not None:
        model.load_state_dict(trainer.best["state"])
    _save_arrays(run_dir / "analysis" / "timing_after.npz", timing_factors(model))
    first = next(iter(sources.test.batches(0)))
    report = recipe["report"]
    sequence_model = isinstance(model, Network)
    if report["raster_samples"] and sequence_model:
        _save_arrays(run_dir / "analysis" / "raster.npz", hidden_raster(model, first.head(report["raster_samples"])))
    if isinstance(model, TTFSNetwork):
        _save_arrays(run_dir / "analysis" / "spike_times.npz", spike_times(model, first))
    if report["gradient_flow"] and recipe["model"]["kind"] in ("sfnn", "dh_sfnn", "dh_srnn"):
        flow = gradient_flow(model, first.head(64), train["decoder"], warmup=train["warmup"], faithful=train["faithful"])
        _save_arrays(run_dir / "analysis" / "gradient_flow.npz", flow)
    _write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    if report["plots"]:
        write_report(run_dir)
    return summary


def run_variants(
    recipe: dict, out: Path, *, resume: bool = False, device: Optional[str] = None, tensorboard: bool = False
) -> list[tuple[Path, dict]]:
    """Run every grid variant of ``recipe`` under ``out/<name>/<variant>``; returns ``[(run_dir, summary)]``.

    ``tensorboard`` also logs the epoch metrics to ``<run>/tensorboard``.
    """
    results = []
    base = Path(out) / recipe["name"]
    for variant, config in expand_grid(recipe):
        run_dir = base / variant if variant else base
        label = recipe["name"] + (f" [{_without_seed_label(variant)}]" if _without_seed_label(variant) else "")
        callbacks = [TensorBoardCallback(run_dir / "tensorboard")] if tensorboard else []
        results.append((run_dir, run_recipe(config, run_dir, resume=resume, device=device, label=label, callbacks=callbacks)))
    return results


def _without_seed_label(variant: str) -> str:
    return ",".join(part for part in variant.split(",") if part and not part.startswith("seed="))


def freeze_all_but_timing(model) -> None:
    """Train only the timing factors (the DH-SNN generalisation experiment: fine-tune α, β at a new dt)."""
    timing = {id(p) for m in model.modules() if isinstance(m, TimingFactor) for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in timing)


def _initialise_from(model, run_dir: Path) -> None:
    """Load the selected weights of another run (same architecture; e.g. trained at another dt)."""
    from ..train.checkpoint import CheckpointError, load_checkpoint

    path = run_dir / "checkpoints" / "best.pt"
    state = load_checkpoint(path)["model"]
    mismatched = [k for k, v in model.state_dict().items() if k in state and state[k].shape != v.shape]
    missing = sorted(set(model.state_dict()) ^ set(state))
    if mismatched or missing:
        raise CheckpointError(f"train.init_from: {path} holds a different model (differs in {sorted(mismatched + missing)[:6]})")
    model.load_state_dict(state)


def load_run_model(run_dir: Path, which: str = "best"):
    """``(model, objective, model.json)`` of a run directory (``which``: ``"best"`` or ``"last"`` checkpoint)."""
    from ..train.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "model.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (needs config.yaml and model.json)")
    recipe = yaml.safe_load((run_dir / "config.yaml").read_text())
    shape = json.loads((run_dir / "model.json").read_text())
    model, objective = build_model_from_recipe(recipe, shape["in_features"], shape["classes"])
    checkpoint = load_checkpoint(run_dir / "checkpoints" / f"{which}.pt")
    model.load_state_dict(checkpoint["model"])
    return model.eval(), objective, shape
