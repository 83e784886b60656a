"""Faults during training: interrupts, non-finite values, locked or unwritable run directories, foreign checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from spikescale.experiments import runner
from spikescale.train.objective import SequenceObjective
from spikescale.experiments.config import load_recipe
from spikescale.experiments.rundir import RunLock, RunLockedError
from spikescale.experiments.runner import run_recipe
from spikescale.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from spikescale.train.trainer import TrainingError

FAST = ["data.options={steps: 30}", "data.batch_size=32", "data.batches_per_epoch=4", "data.eval_samples=64",
        "train.epochs=3", "train.progress=false", "report.plots=false", "report.gradient_flow=false", "report.raster_samples=0"]


def _metrics(run_dir):
    drop = {"epoch_seconds", "wall_seconds", "samples_per_second"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _recipe(*extra):
    return load_recipe("xor-delayed-dh", FAST + list(extra))


def test_ctrl_c_mid_epoch_writes_checkpoint_and_resume_is_exact(tmp_path, monkeypatch):
    reference = run_recipe(_recipe(), tmp_path / "reference")
    original = SequenceObjective.__call__
    calls = {"n": 0}

    def interrupting(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 7:  # epoch 2, batch 3 (validation batches do not pass through training)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, model, batch)

    with monkeypatch.context() as patch:
        patch.setattr(SequenceObjective, "__call__", interrupting)
        with pytest.raises(KeyboardInterrupt, match="checkpoint written"):
            run_recipe(_recipe(), tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert checkpoint["epoch"] == 1 and checkpoint["position"]["batch"] > 0
    resumed = run_recipe(_recipe(), tmp_path / "run", resume=True)
    assert _metrics(tmp_path / "run") == _metrics(tmp_path / "reference")
    assert resumed["test_accuracy"] == reference["test_accuracy"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    args = [sys.executable, "-m", "spikescale", "train", "xor-delayed-dh", "--out", str(tmp_path / "killed")]
    for item in FAST[:-1] + ["train.epochs=6", "data.batches_per_epoch=20"]:
        args += ["--set", item]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "xor-delayed-dh" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert subprocess.run(args + ["--resume"], capture_output=True).returncode == 0
    assert subprocess.run([a.replace("killed", "clean") for a in args], capture_output=True).returncode == 0
    killed = _metrics(tmp_path / "killed" / "xor-delayed-dh")
    assert killed == _metrics(tmp_path / "clean" / "xor-delayed-dh") and len(killed) == 6


def test_same_seed_gives_bit_identical_metrics(tmp_path):
    run_recipe(_recipe(), tmp_path / "a")
    run_recipe(_recipe(), tmp_path / "b")
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")


def test_nan_stop_names_the_parameter_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from spikescale.train import trainer as trainer_module

    original = trainer_module.Trainer.train_epoch

    def poisoned(self, source, epoch, **kwargs):
        if epoch == 1:
            with torch.no_grad():
                self.model.layers[0].alpha.raw[0, 0] = float("nan")
        return original(self, source, epoch, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "train_epoch", poisoned)
    # A NaN timing factor silences its neuron (NaN > θ is false), so the loss stays finite; the gradient is not.
    with pytest.raises(TrainingError, match=r"gradient at epoch 2, batch 1; first NaN/Inf in layers\.0\.alpha\.raw"):
        run_recipe(_recipe(), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 1


def test_nan_skip_policy_skips_batches(tmp_path, monkeypatch):
    original = SequenceObjective.__call__
    calls = {"n": 0}

    def sometimes_nan(self, model, batch):
        result = original(self, model, batch)
        calls["n"] += 1
        if calls["n"] == 2:
            return result._replace(loss=result.loss * float("nan"))
        return result

    monkeypatch.setattr(SequenceObjective, "__call__", sometimes_nan)
    run_recipe(_recipe("train.nan_policy=skip"), tmp_path / "run")
    metrics = _metrics(tmp_path / "run")
    assert metrics[0]["skipped_batches"] == 1 and metrics[1]["skipped_batches"] == 0


def test_second_run_on_a_locked_directory_refuses(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunLockedError, match="is in use by process"):
            run_recipe(_recipe(), tmp_path / "run", resume=True)
    (tmp_path / "run" / ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": 2**22 + 12345, "since": "x"}))
    run_recipe(_recipe("train.epochs=1"), tmp_path / "run")  # a stale lock (dead process) is replaced
    assert not (tmp_path / "run" / ".lock").exists()


def test_unwritable_or_full_run_directory_fails_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        run_recipe(_recipe(), blocker / "run")
    import shutil as shutil_module

    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: shutil_module._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError, match="not enough free space"):
        run_recipe(_recipe(), tmp_path / "full")
    assert not (tmp_path / "full" / "metrics.jsonl").exists()


def test_checkpoint_from_another_version_or_model_is_refused(tmp_path):
    run_recipe(_recipe("train.epochs=1"), tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    payload = load_checkpoint(path)
    (tmp_path / "run" / "summary.json").unlink()
    save_checkpoint(path, {**payload, "spikescale": "0.0.1"})
    with pytest.raises(CheckpointError, match="written by spikescale 0.0.1, this is spikescale"):
        run_recipe(_recipe("train.epochs=1"), tmp_path / "run", resume=True)
    signature = dict(payload["signature"])
    signature["layers.0.weight"] = [99, 1, 20]
    save_checkpoint(path, {**payload, "signature": signature})
    with pytest.raises(CheckpointError, match=r"layers\.0\.weight is \[99, 1, 20\] in the checkpoint but \[16, 1, 20\] here"):
        run_recipe(_recipe("train.epochs=1"), tmp_path / "run", resume=True)


def test_epochs_logged_before_the_first_checkpoint_are_dropped_on_resume(tmp_path, monkeypatch):
    """A run killed between writing its first metrics line and its first checkpoint resumes from scratch
    without a duplicate line (found by tools/fault_injection.py)."""
    from spikescale.train import trainer as trainer_module

    def killed_before_checkpoint(self, completed, position=None):
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module.Trainer, "_write_checkpoint", killed_before_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            run_recipe(_recipe(), tmp_path / "run")
    assert len(_metrics(tmp_path / "run")) == 1 and not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    run_recipe(_recipe(), tmp_path / "run", resume=True)
    run_recipe(_recipe(), tmp_path / "reference")
    assert _metrics(tmp_path / "run") == _metrics(tmp_path / "reference")
