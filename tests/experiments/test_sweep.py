import pytest

from spikescale.cli import main
from spikescale.experiments.config import ConfigError, load_recipe

optuna = pytest.importorskip("optuna")

TINY = ["--set", "data.options={steps: 30}", "--set", "data.batch_size=16", "--set", "data.batches_per_epoch=2",
        "--set", "data.eval_samples=32", "--set", "train.epochs=2", "--set", "train.progress=false",
        "--set", "report.plots=false", "--set", "report.gradient_flow=false", "--set", "report.raster_samples=0"]


def test_sweep_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["sweep", "xor-delayed-sweep", "--trials", "2", "--out", str(out)] + TINY) == 0
    storage = f"sqlite:///{out / 'xor-delayed-sweep' / 'sweep' / 'optuna.db'}"
    study = optuna.load_study(study_name="xor-delayed-sweep", storage=storage)
    assert len(study.trials) == 2
    assert {"train.lr", "model.alpha_init", "model.beta_init"} == set(study.trials[0].params)
    assert (out / "xor-delayed-sweep" / "sweep" / "trial-0000" / "summary.json").exists()
    assert main(["sweep", "xor-delayed-sweep", "--trials", "3", "--out", str(out)] + TINY) == 0
    assert len(optuna.load_study(study_name="xor-delayed-sweep", storage=storage).trials) == 3
    assert "best:" in capsys.readouterr().out


def test_search_space_is_validated():
    with pytest.raises(ConfigError) as err:
        load_recipe("xor-delayed-sweep", ["search.space={train.lrr: {type: float, low: 1, high: 2}, model.branches: {type: int, low: 3, high: 1}, train.lr: {type: uniform}}"])
    text = str(err.value)
    assert "search.space.train.lrr: no such key" in text
    assert "search.space.model.branches: needs numbers low <= high" in text
    assert "search.space.train.lr: expected a mapping with type one of" in text


def test_sweep_without_space_is_an_error(tmp_path, capsys):
    assert main(["sweep", "xor-delayed-dh", "--trials", "1", "--out", str(tmp_path)]) == 2
    assert "no search.space" in capsys.readouterr().err


def test_seeds_table_has_interval(tmp_path, capsys):
    assert main(["seeds", "xor-delayed-dh", "--n", "2", "--out", str(tmp_path)] + TINY) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| xor-delayed-dh"))
    assert "| 2 |" in row and "±" in row and "[±" in row


def test_tensorboard_logging(tmp_path):
    pytest.importorskip("tensorboard")
    assert main(["train", "xor-delayed-dh", "--out", str(tmp_path), "--tensorboard"] + TINY) == 0
    events = list((tmp_path / "xor-delayed-dh" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
