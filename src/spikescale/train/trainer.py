"""The trainer: fit / evaluate any model under an objective, with checkpoints and resumable runs.

One trainer serves every method: it only needs a model, an objective ``objective(model, batch) ->
StepResult`` and batch sources. Each epoch it trains, evaluates the validation set (and the test set when
the model is selected on test, as the official DH-SNN scripts do), writes one line of metrics and an
atomic checkpoint. A run resumed from its last checkpoint ends with the same metrics as an uninterrupted
run with the same seed (CPU): batch sources are seeded per epoch and the RNG state is checkpointed.

Firing statistics come from :class:`~spikescale.nn.monitor.SpikeMonitor` for layers following the
``SpikingLayer`` protocol; other models (TTFS) report them as objective extras ``spikes_per_neuron_layer{l}``
and ``synops`` (sums over samples).

Modules may define hooks that the trainer calls on every sub-module that has them:

* ``on_train_epoch_start(epoch, epochs)`` — before an epoch's first batch (e.g. a σ schedule);
* ``after_optimizer_step()`` — after every optimiser step (e.g. clamping delay positions).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol, Sequence, Union

import torch
from torch import nn

from .. import __version__
from ..data.batch import Batch
from ..nn.monitor import SpikeMonitor
from ..nn.params import GROUP_NAMES, param_groups
from .checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint, save_checkpoint
from .distributed import DistributedContext
from .guard import InterruptGuard, first_non_finite_gradient, first_non_finite_output, first_non_finite_parameter
from .objective import Objective
from .schedules import SCHEDULES, schedule_factor

__all__ = ["TrainConfig", "Trainer", "BatchSource", "TrainingError", "OPTIMIZERS", "SELECTIONS", "NAN_POLICIES", "AMP_MODES", "check_compatible"]

log = logging.getLogger("spikescale")

OPTIMIZERS = ("adam", "adamw")
SELECTIONS = ("valid", "test", "last")
NAN_POLICIES = ("stop", "skip")
AMP_MODES = ("none", "bf16", "fp16")


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. a non-finite loss); the message says where it happened."""


class _Interrupted(Exception):
    """Raised at a batch boundary after Ctrl-C/SIGTERM, carrying where the epoch stopped."""

    def __init__(self, epoch: int, batch: int, acc: "_Accumulator", signal_name: str) -> None:
        self.epoch, self.batch, self.acc, self.signal_name = epoch, batch, acc, signal_name


class BatchSource(Protocol):
    """Anything with ``batches(epoch) -> Iterable[Batch]`` (seeded by epoch for reproducibility)."""

    def batches(self, epoch: int) -> Iterable[Batch]: ...


@dataclass
class TrainConfig:
    """Optimisation settings (all epochs-based; schedules step once per epoch).

    ``groups`` overrides settings of named parameter groups (see :func:`~spikescale.nn.params.param_groups`):
    ``{"timing": {"lr_scale": 2.0}, "positions": {"lr_scale": 100, "schedule": "cosine"}}``; keys per group:
    ``lr_scale``, ``schedule``, ``weight_decay``.
    ``select_on``: the checkpoint kept as "best" — ``"valid"`` (default), ``"test"`` (official DH-SNN
    practice, with ``faithful``) or ``"last"``.
    ``amp``: mixed precision for the synaptic products — ``"bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA, with
    loss scaling); neuron dynamics stay in float32 (:mod:`spikescale.functional.precision`).
    ``nan_policy``: on a non-finite loss or gradient, ``"stop"`` with an error naming the epoch, batch and
    the first module/parameter holding the NaN/Inf (the last good checkpoint stays), or ``"skip"`` the batch.
    """

    epochs: int = 10
    optimizer: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 0.0
    eps: float = 1e-8
    schedule: str = "none"
    step_size: int = 1
    gamma: float = 0.1
    groups: dict = field(default_factory=dict)
    clip_grad_norm: Optional[float] = None
    select_on: str = "valid"
    nan_policy: str = "stop"
    amp: str = "none"
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1 (got {self.epochs})")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {OPTIMIZERS} (got {self.optimizer!r})")
        if not self.lr > 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {SCHEDULES} (got {self.schedule!r})")
        if self.amp not in AMP_MODES:
            problems.append(f"amp must be one of {AMP_MODES} (got {self.amp!r})")
        elif self.amp == "fp16" and not self.device.startswith("cuda"):
            problems.append("amp fp16 needs a CUDA device; use bf16 on CPU")
        if self.nan_policy not in NAN_POLICIES:
            problems.append(f"nan_policy must be one of {NAN_POLICIES} (got {self.nan_policy!r})")
        if self.select_on not in SELECTIONS:
            problems.append(f"select_on must be one of {SELECTIONS} (got {self.select_on!r})")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            problems.append(f"clip_grad_norm must be > 0 or null (got {self.clip_grad_norm})")
        for name, overrides in self.groups.items():
            unknown = sorted(set(overrides) - {"lr_scale", "schedule", "weight_decay"})
            if unknown:
                problems.append(f"groups.{name}: unknown key(s) {unknown}; allowed: ['lr_scale', 'schedule', 'weight_decay']")
            if overrides.get("schedule", self.schedule) not in SCHEDULES:
                problems.append(f"groups.{name}.schedule must be one of {SCHEDULES}")
        if problems:
            raise ValueError("invalid training settings: " + "; ".join(problems))


def _call_hooks(model: nn.Module, name: str, *args) -> None:
    for module in model.modules():
        hook = getattr(module, name, None)
        if callable(hook):
            hook(*args)


class _Accumulator:
    """Sums of loss·count, correct, count and extras over batches."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.correct = 0.0
        self.count = 0
        self.samples = 0
        self.skipped = 0
        self.extras: dict[str, float] = {}

    def state(self) -> dict:
        return dict(vars(self))

    @classmethod
    def from_state(cls, state: dict) -> "_Accumulator":
        acc = cls()
        acc.__dict__.update(state)
        return acc

    def add(self, result, samples: int) -> None:
        self.loss += float(result.loss.detach()) * result.count
        self.correct += float(result.correct)
        self.count += result.count
        self.samples += samples
        for key, value in result.extras.items():
            self.extras[key] = self.extras.get(key, 0.0) + float(value)

    def reduce(self, context: DistributedContext) -> None:
        """Sum the totals over all processes."""
        keys = sorted(self.extras)
        totals = context.sum([self.loss, self.correct, self.count, self.samples, self.skipped] + [self.extras[k] for k in keys])
        self.loss, self.correct = totals[0], totals[1]
        self.count, self.samples, self.skipped = int(totals[2]), int(totals[3]), int(totals[4])
        self.extras = dict(zip(keys, totals[5:]))

    def metrics(self, prefix: str) -> dict[str, float]:
        count = max(self.count, 1)
        out = {f"{prefix}_loss": self.loss / count, f"{prefix}_accuracy": self.correct / count}
        out.update({f"{prefix}_{k}": v / max(self.samples, 1) for k, v in self.extras.items()})
        return out


class Trainer:
    """Fit and evaluate ``model`` under ``objective``.

    Args:
        model: any ``nn.Module`` the objective knows how to run.
        objective: ``objective(model, batch) -> StepResult``.
        config: :class:`TrainConfig`.
        run_dir: where ``metrics.jsonl`` and checkpoints go (nothing is written when ``None``).
        callbacks: objects with an ``on_epoch_end(trainer, metrics)`` method, called after each epoch
            (e.g. TensorBoard logging, Optuna pruning; a callback may raise to stop training).
        distributed: rank and world size under ``torchrun`` (see :mod:`spikescale.train.distributed`).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        config: TrainConfig,
        run_dir: Optional[Union[str, Path]] = None,
        *,
        callbacks: Sequence = (),
        distributed: DistributedContext = DistributedContext(),
    ) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.model = model.to(self.device)
        self.dist = distributed
        self.train_model = model
        if distributed.enabled:
            ids = [self.device.index] if self.device.type == "cuda" and self.device.index is not None else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.objective = objective
        self.callbacks = list(callbacks)
        self.scaler = torch.amp.GradScaler(self.device.type) if config.amp == "fp16" else None
        self.resume_dir = Path(run_dir) if run_dir is not None else None  # every process reads checkpoints
        self.run_dir = self.resume_dir if distributed.is_main else None  # only rank 0 writes
        self.optimizer, self.scheduler = self._build_optimizer()
        self.history: list[dict[str, Any]] = []
        self.best: Optional[dict[str, Any]] = None  # {"epoch", "score", "state"}
        self.start_epoch = 0
        self.position: Optional[dict] = None  # where an interrupted epoch stopped (from a checkpoint)
        self.wall_seconds = 0.0
        self._guard = InterruptGuard()

    # -- optimiser ---------------------------------------------------------------------------------
    def _build_optimizer(self):
        cfg = self.config
        groups = param_groups(self.model, cfg.lr, weight_decay=cfg.weight_decay)
        unknown = sorted(set(cfg.groups) - set(GROUP_NAMES))
        if unknown:
            raise ValueError(f"train.groups names unknown groups {unknown}; parameter groups are {list(GROUP_NAMES)}")
        absent = sorted(set(cfg.groups) - {g["name"] for g in groups})
        if absent:  # e.g. positions in a grid variant without learned delays
            log.info("train.groups: this model has no %s parameters; their settings are unused", " or ".join(absent))
        lambdas = []
        for group in groups:
            overrides = cfg.groups.get(group["name"], {})
            group["lr"] = cfg.lr * float(overrides.get("lr_scale", 1.0))
            if "weight_decay" in overrides:
                group["weight_decay"] = float(overrides["weight_decay"])
            schedule = overrides.get("schedule", cfg.schedule)
            lambdas.append(schedule_factor(schedule, cfg.epochs, step_size=cfg.step_size, gamma=cfg.gamma))
        optimiser_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        optimizer = optimiser_cls(groups, lr=cfg.lr, eps=cfg.eps)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)

    # -- one pass ----------------------------------------------------------------------------------
    def _batches(self, source, epoch: int) -> Iterable[Batch]:
        return source.batches(epoch) if hasattr(source, "batches") else source

    def train_epoch(self, source, epoch: int, *, start_batch: int = 0, acc: Optional[_Accumulator] = None) -> dict[str, float]:
        """One epoch; ``start_batch``/``acc`` continue an epoch interrupted after ``start_batch`` batches."""
        self.model.train()
        _call_hooks(self.model, "on_train_epoch_start", epoch, self.config.epochs)
        acc = acc or _Accumulator()
        batches = itertools.islice(self._batches(source, epoch), start_batch, None)
        bar = self._progress(batches, f"epoch {epoch + 1}/{self.config.epochs}")
        for index, batch in enumerate(bar, start=start_batch):
            if self._guard.requested:
                raise _Interrupted(epoch, index, acc, self._guard.requested)
            batch = self.dist.shard(batch.to(self.device))
            result = self._train_step(batch, epoch, index)
            if result is None:
                acc.skipped += 1
                continue
            acc.add(result, batch.size)
            if hasattr(bar, "set_postfix") and index % 10 == 0:
                bar.set_postfix(loss=f"{acc.loss / max(acc.count, 1):.4f}", acc=f"{acc.correct / max(acc.count, 1):.3f}")
        self.scheduler.step()
        acc.reduce(self.dist)
        return acc.metrics("train") | {"train_samples": acc.samples, "skipped_batches": acc.skipped}

    def _train_step(self, batch: Batch, epoch: int, index: int):
        """Forward, backward, optimiser step; ``None`` when the batch was skipped (``nan_policy: skip``)."""
        where = f"epoch {epoch + 1}, batch {index + 1}"
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with self._autocast():
                result = self.objective(self.train_model, batch)
        except ValueError as err:
            raise TrainingError(f"{where}: {err}") from err
        if not torch.isfinite(result.loss.detach()):
            culprit = first_non_finite_parameter(self.model) or first_non_finite_output(self.model, lambda: self.objective(self.model, batch))
            return self._non_finite(f"non-finite loss ({float(result.loss.detach())}) at {where}" + (f"; first NaN/Inf in {culprit}" if culprit else ""))
        if self.scaler is not None:
            self.scaler.scale(result.loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            result.loss.backward()
        max_norm = self.config.clip_grad_norm if self.config.clip_grad_norm is not None else math.inf
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if self.scaler is not None:  # fp16 overflow: the scaler skips this step and lowers the scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
            _call_hooks(self.model, "after_optimizer_step")
            return result
        if not torch.isfinite(norm):
            culprit = first_non_finite_parameter(self.model) or f"the gradient of {first_non_finite_gradient(self.model)}"
            return self._non_finite(f"non-finite gradient at {where}; first NaN/Inf in {culprit}")
        self.optimizer.step()
        _call_hooks(self.model, "after_optimizer_step")
        return result

    def _non_finite(self, message: str) -> None:
        if self.config.nan_policy == "stop":
            raise TrainingError(message + " (the last good checkpoint is kept; set train.nan_policy: skip to skip such batches)")
        log.warning("%s: batch skipped", message)
        self.optimizer.zero_grad(set_to_none=True)
        return None

    @torch.no_grad()
    def evaluate(self, source, prefix: str = "test", epoch: int = 0) -> dict[str, Any]:
        """Loss, accuracy, extras, spikes per neuron per layer and synaptic operations per sample."""
        self.model.eval()
        acc = _Accumulator()
        with SpikeMonitor(self.model) as monitor:
            for batch in self._batches(source, epoch):
                batch = self.dist.shard(batch.to(self.device))
                monitor.set_lengths(batch.lengths)
                with self._autocast():
                    acc.add(self.objective(self.model, batch), batch.size)
        acc.reduce(self.dist)
        monitor.reduce(self.dist.sum)
        stats = monitor.summary()
        metrics: dict[str, Any] = acc.metrics(prefix)
        spikes = {k: v["spikes_per_neuron"] for k, v in stats.items() if "spikes_per_neuron" in v}
        synops = sum(v["synops_per_sample"] for v in stats.values())
        if not stats:  # models outside the SpikingLayer protocol (TTFS) report their firing through extras
            spikes, synops = _firing_from_extras(metrics, prefix)
        metrics[f"{prefix}_spikes_per_neuron"] = spikes
        metrics[f"{prefix}_synops_per_sample"] = synops
        return metrics

    def _autocast(self):
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _progress(self, iterable, description: str):
        if not self.config.progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=description, leave=False, unit="batch", dynamic_ncols=True)

    # -- fit ---------------------------------------------------------------------------------------
    def fit(self, train, valid=None, test=None, *, resume: bool = False) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs; returns the summary (see :meth:`summary`)."""
        if self.config.select_on == "valid" and valid is None:
            raise ValueError("select_on='valid' needs a validation source; give one or set select_on to 'test' or 'last'")
        if self.config.select_on == "test" and test is None:
            raise ValueError("select_on='test' needs a test source")
        if resume:
            self._restore()
        with self._guard:
            try:
                self._epochs(train, valid, test)
            except _Interrupted as stop:
                self._write_checkpoint(stop.epoch, position={"batch": stop.batch, "acc": stop.acc.state()})
                where = f"epoch {stop.epoch + 1}, after batch {stop.batch}"
                raise KeyboardInterrupt(f"{stop.signal_name}: stopped at {where}; checkpoint written, continue with --resume") from None
        return self.finish(test)

    def _epochs(self, train, valid, test) -> None:
        for epoch in range(self.start_epoch, self.config.epochs):
            start = time.perf_counter()
            metrics: dict[str, Any] = {"epoch": epoch + 1}
            metrics["lr"] = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
            position, self.position = self.position, None
            if position is not None:
                metrics.update(self.train_epoch(train, epoch, start_batch=position["batch"], acc=_Accumulator.from_state(position["acc"])))
            else:
                metrics.update(self.train_epoch(train, epoch))
            train_seconds = time.perf_counter() - start
            if valid is not None:
                metrics.update(self.evaluate(valid, "valid", epoch))
            if self.config.select_on == "test":
                metrics.update(self.evaluate(test, "test", epoch))
            seconds = time.perf_counter() - start
            self.wall_seconds += seconds
            metrics.update(epoch_seconds=seconds, wall_seconds=self.wall_seconds,
                           samples_per_second=metrics["train_samples"] / max(train_seconds, 1e-9))
            self._update_best(metrics, epoch)
            self.history.append(metrics)
            if self.dist.is_main:
                self._log_epoch(metrics)
            self._write_epoch(metrics, epoch)
            for callback in self.callbacks:
                callback.on_epoch_end(self, metrics)

    def _score(self, metrics: dict[str, Any]) -> float:
        key = {"valid": "valid_accuracy", "test": "test_accuracy"}.get(self.config.select_on)
        return float(metrics[key]) if key else float(metrics["epoch"])

    def _update_best(self, metrics: dict[str, Any], epoch: int) -> None:
        score = self._score(metrics)
        if self.best is None or score > self.best["score"] or self.config.select_on == "last":
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best = {"epoch": epoch + 1, "score": score, "state": state}

    def _log_epoch(self, m: dict[str, Any]) -> None:
        parts = [f"epoch {m['epoch']}/{self.config.epochs}", f"loss {m['train_loss']:.4f}", f"acc {m['train_accuracy']:.4f}"]
        for prefix in ("valid", "test"):
            if f"{prefix}_accuracy" in m:
                parts.append(f"{prefix} {m[f'{prefix}_accuracy']:.4f}")
        parts.append(f"{m['epoch_seconds']:.1f} s")
        log.info("  ".join(parts))

    # -- persistence -------------------------------------------------------------------------------
    def _checkpoint_payload(self, completed: int, position: Optional[dict] = None) -> dict[str, Any]:
        payload = {
            "format": 1,
            "spikescale": __version__,
            "signature": _signature(self.model),
            "epoch": completed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history_json": json.dumps(self.history),
            "wall_seconds": self.wall_seconds,
            "rng_cpu": torch.get_rng_state(),
        }
        if self.best is not None:  # kept inside the same file so that "last" and "best" always agree
            payload["best"] = {"epoch": self.best["epoch"], "score": self.best["score"], "model": self.best["state"]}
        if torch.cuda.is_available():
            payload["rng_cuda"] = torch.cuda.get_rng_state_all()
        if position is not None:
            payload["position"] = position
        return payload

    def _write_checkpoint(self, completed: int, position: Optional[dict] = None) -> None:
        if self.run_dir is not None:
            save_checkpoint(self.run_dir / "checkpoints" / "last.pt", self._checkpoint_payload(completed, position))

    def _write_epoch(self, metrics: dict[str, Any], epoch: int) -> None:
        if self.run_dir is None:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics) + "\n")
        if self.best is not None and self.best["epoch"] == epoch + 1:
            save_checkpoint(self.run_dir / "checkpoints" / "best.pt", {"epoch": epoch + 1, "model": self.best["state"]})
        self._write_checkpoint(epoch + 1)

    def _restore(self) -> None:
        if self.resume_dir is None:
            raise ValueError("resume needs a run directory")
        path = self.resume_dir / "checkpoints" / "last.pt"
        if not path.exists():
            log.info("no checkpoint in %s: starting from scratch", self.resume_dir)
            self._rewrite_metrics()  # drop epochs a killed run logged before its first checkpoint
            return
        payload = load_checkpoint(path)
        check_compatible(payload, self.model, path)
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"{path} does not match this model/optimiser: {err}") from None
        self.scheduler.load_state_dict(payload["scheduler"])
        self.history = json.loads(payload["history_json"])
        self.wall_seconds = float(payload["wall_seconds"])
        torch.set_rng_state(payload["rng_cpu"])
        if "rng_cuda" in payload and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["rng_cuda"])
        self.start_epoch = int(payload["epoch"])
        self.position = payload.get("position")
        if "best" in payload:
            best = payload["best"]
            self.best = {"epoch": int(best["epoch"]), "score": float(best["score"]), "state": best["model"]}
        self._rewrite_metrics()  # metrics.jsonl may hold lines written after the checkpoint
        where = f"epoch {self.start_epoch}" + (f" and {self.position['batch']} batches of the next" if self.position else "")
        log.info("resumed from %s after %s", path, where)

    def _rewrite_metrics(self) -> None:
        """Make ``metrics.jsonl`` hold exactly the restored history (a crash may leave later lines)."""
        if self.run_dir is not None and (self.run_dir / "metrics.jsonl").exists():
            lines = "".join(json.dumps(m) + "\n" for m in self.history)
            atomic_write_bytes(self.run_dir / "metrics.jsonl", lambda h: h.write(lines.encode()))

    # -- end of training ---------------------------------------------------------------------------
    def finish(self, test=None) -> dict[str, Any]:
        """Evaluate the selected and the last model on ``test``; returns the summary dict."""
        last = self.history[-1] if self.history else {}
        summary: dict[str, Any] = {
            "epochs": len(self.history),
            "train_accuracy": last.get("train_accuracy"),
            "train_loss": last.get("train_loss"),
            "wall_seconds": self.wall_seconds,
            "samples_per_second": (sum(m["train_samples"] for m in self.history) / max(sum(m["epoch_seconds"] for m in self.history), 1e-9)) if self.history else None,
            "selected_epoch": self.best["epoch"] if self.best else None,
            "select_on": self.config.select_on,
        }
        if self.best is not None and "valid_accuracy" in self.history[self.best["epoch"] - 1]:
            summary["valid_accuracy"] = self.history[self.best["epoch"] - 1]["valid_accuracy"]
        if test is not None:
            final = self.evaluate(test, "test")
            summary["final_test_accuracy"] = final["test_accuracy"]
            if self.best is not None:
                last_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.model.load_state_dict(self.best["state"])
                selected = self.evaluate(test, "test")
                self.model.load_state_dict(last_state)
            else:
                selected = final
            summary["test_accuracy"] = selected.pop("test_accuracy")
            summary["test_loss"] = selected.pop("test_loss")
            summary["spikes_per_neuron"] = selected.pop("test_spikes_per_neuron")
            summary["synops_per_sample"] = selected.pop("test_synops_per_sample")
            summary.update(selected)  # objective extras, e.g. test_silent_fraction
        return summary


def _firing_from_extras(metrics: dict, prefix: str) -> tuple[dict, float]:
    """Firing statistics from objective extras ``spikes_per_neuron_layer{l}`` (1-based, output last) and
    ``synops`` (per sample): layers ``1..L-1`` become ``layers.0 …``, layer ``L`` becomes ``output``."""
    head = f"{prefix}_spikes_per_neuron_layer"
    numbered = sorted((int(k[len(head):]), v) for k, v in metrics.items() if k.startswith(head) and k[len(head):].isdigit())
    last = numbered[-1][0] if numbered else 0
    spikes = {("output" if l == last else f"layers.{l - 1}"): v for l, v in numbered}
    return spikes, float(metrics.get(f"{prefix}_synops", 0.0))


def _signature(model: nn.Module) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in model.state_dict().items()}


def check_compatible(payload: dict, model: nn.Module, path) -> None:
    """Refuse a checkpoint from another spikescale version or for another model shape, saying what differs."""
    written = payload.get("spikescale")
    if written != __version__:
        raise CheckpointError(f"{path} was written by spikescale {written or 'unknown'}, this is spikescale {__version__}; "
                              "resume with the version that wrote it")
    saved, current = payload.get("signature", {}), _signature(model)
    problems = [f"{name} is {saved[name]} in the checkpoint but {current[name]} here" for name in sorted(set(saved) & set(current)) if saved[name] != current[name]]
    problems += [f"{name} is missing here" for name in sorted(set(saved) - set(current))]
    problems += [f"{name} is not in the checkpoint" for name in sorted(set(current) - set(saved))]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise CheckpointError(f"{path} holds a different model: {shown}")
