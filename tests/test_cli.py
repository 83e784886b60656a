import pytest

from spikescale.cli import main


def test_recipes_lists_shipped_recipes(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "xor-multiscale-dh2" in out and "xor-delayed-vanilla" in out


def test_train_reports_bad_recipe_keys(capsys, tmp_path):
    assert main(["train", "xor-delayed-dh", "--set", "train.lr_max=3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "train.lr_max: unknown key" in err


def test_train_tiny_run_and_resume(capsys, tmp_path):
    args = ["train", "xor-delayed-vanilla", "--out", str(tmp_path), "--seed", "3", "--set", "train.epochs=1",
            "--set", "data.batches_per_epoch=1", "--set", "data.batch_size=16", "--set", "data.eval_samples=16",
            "--set", "train.progress=false"]
    assert main(args) == 0
    assert (tmp_path / "xor-delayed-vanilla" / "summary.json").exists()
    assert main(args) == 2  # the run directory exists
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0


@pytest.mark.slow
def test_demo_quick_finishes(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| multi-timescale XOR | DH-SFNN, 2 branches (beneficial init) |" in out
    assert (tmp_path / "comparison.md").exists()
    assert (tmp_path / "xor-multiscale-dhsrnn" / "report.md").exists()


def test_evaluate_with_changed_data_and_timing_only_fine_tuning(tmp_path, capsys):
    import json

    base = ["--set", "train.epochs=1", "--set", "data.batches_per_epoch=2", "--set", "data.batch_size=16",
            "--set", "data.eval_samples=32", "--set", "train.progress=false", "--set", "report.plots=false"]
    assert main(["train", "xor-delayed-dh", "--out", str(tmp_path)] + base) == 0
    run = tmp_path / "xor-delayed-dh"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--set", "data.options={steps: 150, noise: 0.2}"]) == 0
    noisy = json.loads(capsys.readouterr().out)
    assert 0.0 <= noisy["test_accuracy"] <= 1.0
    assert main(["evaluate", str(run), "--set", "train.lr=1"]) == 2
    # fine-tune only the timing factors, starting from the trained run
    tuned = tmp_path / "tuned"
    assert main(["train", "xor-delayed-dh", "--out", str(tuned), "--set", f"train.init_from={run}",
                 "--set", "train.trainable=timing"] + base) == 0
    from spikescale.experiments.runner import load_run_model

    before, _, _ = load_run_model(run)
    after, _, _ = load_run_model(tuned / "xor-delayed-dh")
    assert torch_equal(before.layers[0].weight, after.layers[0].weight)
    assert not torch_equal(before.layers[0].alpha.raw, after.layers[0].alpha.raw)


def torch_equal(a, b):
    import torch

    return bool(torch.equal(a, b))


def test_train_on_your_own_arrays(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    series = rng.normal(size=(60, 3, 25)).astype(np.float32)
    series[labels == 1, 0, 10:15] += 3.0  # class 1: a bump on channel 0
    np.savez(tmp_path / "my.npz", X_train=series[:40], y_train=labels[:40], X_test=series[40:], y_test=labels[40:])
    assert main(["train", "arrays", "--set", f"data.path={tmp_path / 'my.npz'}", "--out", str(tmp_path / "runs"),
                 "--set", "train.epochs=2", "--set", "train.progress=false", "--set", "report.plots=false"]) == 0
    assert (tmp_path / "runs" / "arrays" / "summary.json").exists()
    assert main(["train", "arrays", "--out", str(tmp_path / "runs2"), "--set", "train.epochs=1"]) == 2
    assert "path" in capsys.readouterr().err


def _every_parser(parser):
    """The parser and each nested subcommand parser (e.g. ``data download``)."""
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _every_parser(child)


def test_every_help_page_renders():
    """argparse expands %-formats in help strings, so a stray '%' breaks --help of the whole command."""
    from spikescale.cli import build_parser

    pages = [p.format_help() for p in _every_parser(build_parser())]
    assert len(pages) > 10 and all("usage:" in page for page in pages)


TINY = ["--set", "train.epochs=1", "--set", "data.batches_per_epoch=1", "--set", "data.batch_size=8",
        "--set", "data.eval_samples=8", "--set", "train.progress=false"]


def test_grid_variant_without_a_named_group_trains_and_a_misspelt_group_is_refused(capsys, tmp_path):
    """xor-delayed-delays sets positions' schedule; its 'none' variant has no positions to apply it to."""
    assert main(["train", "xor-delayed-delays", "--out", str(tmp_path), "--set", "grid={}", "--set", "model.delays=none", *TINY]) == 0
    assert main(["train", "xor-delayed-delays", "--out", str(tmp_path / "typo"), "--set", "grid={}",
                 "--set", "train.groups={position: {lr_scale: 100}}", *TINY]) == 2
    assert "unknown groups ['position']" in capsys.readouterr().err


def test_evaluate_sweeps_a_data_setting_over_seeds(capsys, tmp_path):
    assert main(["train", "xor-delayed-vanilla", "--out", str(tmp_path), "--set", "grid.seed=[0,1]", *TINY]) == 0
    capsys.readouterr()
    table = tmp_path / "noise.md"
    assert main(["evaluate", str(tmp_path), "--sweep", "data.options.noise=0.0,0.5", "--out", str(table)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| run | n | data.options.noise=0.0 | data.options.noise=0.5 |"
    assert lines[2].startswith("| xor-delayed-vanilla | 2 | ") and lines[2].count("±") == 4
    assert table.read_text().strip().splitlines() == lines
    assert main(["evaluate", str(tmp_path / "xor-delayed-vanilla" / "seed=0"), str(tmp_path / "xor-delayed-vanilla" / "seed=1")]) == 2
    assert "--sweep" in capsys.readouterr().err
