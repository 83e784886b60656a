import pytest

from spikescale.cli import main
from spikescale.experiments.config import load_recipe
from spikescale.experiments.runner import run_recipe
from spikescale.report.report import compare_runs, write_report

TINY = ["data.options={steps: 30}", "data.batch_size=32", "data.batches_per_epoch=2", "data.eval_samples=64",
        "train.epochs=2", "train.progress=false", "report.plots=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (0, 1):
        run_dir = out / f"dh-{seed}"
        run_recipe(load_recipe("xor-delayed-dh", TINY + [f"seed={seed}"]), run_dir)
        dirs.append(run_dir)
    run_dir = out / "vanilla"
    run_recipe(load_recipe("xor-delayed-vanilla", TINY), run_dir)
    return dirs + [run_dir]


def test_report_is_rebuilt_from_the_run_directory(runs):
    run = runs[0]
    assert not (run / "report.md").exists()
    path = write_report(run)
    text = path.read_text()
    assert "## Summary" in text and "test_accuracy" in text and "![Training curves](plots/curves.png)" in text
    for plot in ("curves", "timing", "raster", "gradient_flow"):
        assert (run / "plots" / f"{plot}.png").stat().st_size > 1000


def test_runs_differing_by_seed_are_merged(runs):
    table = compare_runs(runs)
    rows = [line for line in table.splitlines() if line.startswith("| xor")]
    assert len(rows) == 2
    dh = next(r for r in rows if r.startswith("| xor-delayed-dh "))
    assert "| 2 |" in dh and "±" in dh
    vanilla = next(r for r in rows if r.startswith("| xor-delayed-vanilla"))
    assert "| 1 |" in vanilla and "±" not in vanilla


def test_cli_report(runs, tmp_path, capsys):
    assert main(["report", str(runs[0].parent), "--out", str(tmp_path / "table.md")]) == 0
    assert "xor-delayed-dh" in capsys.readouterr().out
    assert (tmp_path / "table.md").read_text().startswith("| run |")
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(runs[0].parent), "--tradeoff", str(tmp_path / "tradeoff.png")]) == 0
    assert (tmp_path / "tradeoff.png").stat().st_size > 1000
