import json

import pytest
import torch

from spikescale.experiments.config import load_recipe
from spikescale.experiments.runner import RunExistsError, run_recipe

FAST = [
    "data.options={steps: 40}",
    "data.batch_size=128",
    "data.eval_samples=512",
    "train.schedule=none",
    "train.lr=0.02",
    "train.progress=false",
    "report.plots=false",
]


def _metrics(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    timing = {"epoch_seconds", "wall_seconds", "samples_per_second"}
    return [{k: v for k, v in json.loads(line).items() if k not in timing} for line in lines]


def test_short_xor_training_learns(tmp_path):
    recipe = load_recipe("xor-delayed-dh", FAST + ["train.epochs=20", "data.batches_per_epoch=25"])
    summary = run_recipe(recipe, tmp_path / "run")
    assert summary["test_accuracy"] > 0.75  # chance is 0.5
    assert summary["params"] == 20 * 16 + 3 * 16 + 2 * 16 + 2 + 2


def test_resume_reproduces_uninterrupted_run(tmp_path, monkeypatch):
    base = FAST + ["data.batches_per_epoch=4"]
    full = run_recipe(load_recipe("xor-delayed-dh", base + ["train.epochs=4"]), tmp_path / "full")
    # An "interrupted" run: same recipe, stopped after 2 epochs, then resumed to 4.
    first = load_recipe("xor-delayed-dh", base + ["train.epochs=4"])
    from spikescale.experiments import runner

    original = runner.Trainer.fit

    def two_epochs(self, *args, **kwargs):
        self.config.epochs = 2
        result = original(self, *args, **kwargs)
        raise KeyboardInterrupt  # stop before the summary is written

    with monkeypatch.context() as patch:
        patch.setattr(runner.Trainer, "fit", two_epochs)
        with pytest.raises(KeyboardInterrupt):
            run_recipe(first, tmp_path / "resumed")
    assert len(_metrics(tmp_path / "resumed")) == 2
    with pytest.raises(RunExistsError, match="--resume"):
        run_recipe(first, tmp_path / "resumed")
    resumed = run_recipe(first, tmp_path / "resumed", resume=True)
    assert _metrics(tmp_path / "resumed") == _metrics(tmp_path / "full")
    assert resumed["test_accuracy"] == full["test_accuracy"]


def test_resume_refuses_a_different_recipe(tmp_path):
    recipe = load_recipe("xor-delayed-dh", FAST + ["train.epochs=1", "data.batches_per_epoch=1"])
    run_recipe(recipe, tmp_path / "run")
    other = load_recipe("xor-delayed-dh", FAST + ["train.epochs=1", "data.batches_per_epoch=2"])
    (tmp_path / "run" / "summary.json").unlink()
    with pytest.raises(RunExistsError, match="different recipe"):
        run_recipe(other, tmp_path / "run", resume=True)


def test_run_directory_contents(tmp_path):
    recipe = load_recipe("xor-multiscale-dh2", FAST[1:] + ["train.epochs=1", "data.batches_per_epoch=2", "report.plots=true", "grid={}"])
    summary = run_recipe(recipe, tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "versions.json", "metrics.jsonl", "summary.json", "report.md", "checkpoints/last.pt", "checkpoints/best.pt", "plots/curves.png", "plots/timing.png", "plots/raster.png", "plots/gradient_flow.png"):
        assert (run / name).exists(), name
    for key in ("test_accuracy", "valid_accuracy", "train_accuracy", "spikes_per_neuron", "params", "synops_per_sample", "epochs", "wall_seconds", "samples_per_second", "seed", "recipe"):
        assert key in summary, key
    assert set(summary["spikes_per_neuron"]) == {"layers.0"}
    assert json.loads((run / "versions.json").read_text())["torch"] == torch.__version__


def test_non_finite_loss_names_epoch_and_batch(tmp_path):
    from spikescale.data.batch import Batch
    from spikescale.nn import build_network
    from spikescale.train.objective import StepResult
    from spikescale.train.trainer import TrainConfig, Trainer, TrainingError

    model = build_network("sfnn", 3, [4], 2)

    def objective(model, batch):
        out, _ = model(batch.x)
        return StepResult(out.sum() * float("nan"), torch.tensor(0), 1, {})

    batches = [Batch(torch.zeros(5, 2, 3), torch.zeros(2, dtype=torch.long))]
    trainer = Trainer(model, objective, TrainConfig(epochs=1, progress=False, select_on="last"))
    with pytest.raises(TrainingError, match="epoch 1, batch 1"):
        trainer.fit(batches)
