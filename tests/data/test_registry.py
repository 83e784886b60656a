import numpy as np
import pytest
import torch

from spikescale.cli import main
from spikescale.data.batch import collate
from spikescale.data.noise import SpikeNoise
from spikescale.data.registry import DATASETS, list_datasets, load_splits


@pytest.fixture
def shd_root(tmp_path, write_shd, make_samples):
    rng = np.random.default_rng(0)
    root = tmp_path / "shd"
    root.mkdir()
    labels = np.repeat(np.arange(4), 10)
    speakers = np.tile(np.arange(2), 20)
    write_shd(root / "shd_train.h5", make_samples(40, rng), labels, speakers, keys=["a", "b", "c", "d"])
    write_shd(root / "shd_test.h5", make_samples(8, rng), np.arange(8) % 4, np.zeros(8), keys=["a", "b", "c", "d"])
    return root


def test_names_and_options_are_listed():
    assert {"shd", "ssc", "fsdd", "audio_folder", "sfmnist", "psfmnist", "arrays"} <= set(DATASETS)
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; expected one of \['arrays', 'audio_folder'"):
        load_splits("mnist")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['dt'\]; allowed: \['root', 'dt_ms'"):
        load_splits("shd", dt=1.0)
    with pytest.raises(ValueError, match=r"missing required option\(s\) \['path'\]"):
        load_splits("arrays")
    assert list_datasets()["shd"]["dt_ms"] == 1.0


def test_shd_splits_with_a_stratified_validation_part(shd_root):
    splits = load_splits("shd", root=shd_root, valid_fraction=0.2)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (32, 8, 8)
    assert (splits.channels, splits.classes, splits.dt_ms) == (700, 4, 1.0)
    train_file = splits.train.dataset
    held = splits.valid.indices
    pairs = sorted(zip(train_file.speakers[held].tolist(), train_file.labels[held].tolist()))
    assert pairs == sorted((s, y) for s in range(2) for y in range(4))  # one per (speaker, label)
    batch = collate([splits.train[i] for i in range(4)])
    assert batch.x.shape == (1000, 4, 700) and set(batch.x.unique().tolist()) <= {0.0, 1.0}
    again = load_splits("shd", root=shd_root, valid_fraction=0.2)
    assert again.valid.indices == held


def test_dcls_and_faithful_settings(shd_root):
    dcls = load_splits("shd", root=shd_root, dt_ms=10.0, duration_ms=None, align="first_spike", pool=5, binary=False)
    assert dcls.channels == 140 and dcls.train[0][0].shape[1] == 140
    faithful = load_splits("shd", root=shd_root, faithful=True, valid_fraction=0.0)
    assert faithful.valid is None and faithful.train[0][0][:, 0].sum() == 0
    assert "faithful" in faithful.description


def test_noise_goes_to_the_chosen_splits(shd_root):
    splits = load_splits("shd", root=shd_root, dt_ms=4.0, noise_hz=50.0)
    assert isinstance(splits.test, SpikeNoise) and not isinstance(splits.train, SpikeNoise)
    assert splits.test.p == pytest.approx(0.2) and "50 Hz" in splits.description
    clean = load_splits("shd", root=shd_root, dt_ms=4.0)
    assert splits.test[0][0].sum() > clean.test[0][0].sum()
    with pytest.raises(ValueError, match="noise_splits"):
        load_splits("shd", root=shd_root, noise_hz=5.0, noise_splits=["dev"])
    everywhere = load_splits("shd", root=shd_root, dt_ms=4.0, noise_hz=50.0, noise_splits=["train", "valid", "test"])
    assert everywhere.train.seed is None and everywhere.test.seed is not None  # augmentation vs fixed evaluation noise
    assert load_splits("shd", root=shd_root, dt_ms=4.0, noise_hz=5.0, noise_splits="valid").valid.p == pytest.approx(0.02)


def test_ssc_uses_the_official_validation_file(tmp_path, write_shd, make_samples):
    rng = np.random.default_rng(1)
    for split, n in (("train", 12), ("valid", 5), ("test", 6)):
        write_shd(tmp_path / f"ssc_{split}.h5", make_samples(n, rng), np.arange(n) % 3)
    splits = load_splits("ssc", root=tmp_path, dt_ms=10.0)
    assert (len(splits.train), len(splits.valid), len(splits.test), splits.classes) == (12, 5, 6, 3)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="spikescale data download shd --root"):
        load_splits("shd", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="ssc_train.h5"):
        load_splits("ssc")  # default root under $SPIKESCALE_DATA (a temporary folder here)


def test_cli_lists_sources(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "psfmnist:" in out and "permutation_seed=0" in out and "path," in out


@pytest.mark.parametrize("recipe", ["shd-sfnn", "shd-dh-sfnn", "shd-dh-srnn", "shd-delays"])
def test_shipped_shd_recipes_train_on_a_file_in_the_official_schema(recipe, shd_root, tmp_path, capsys):
    """The paper-setting recipes run end to end on generated SHD files (shrunk to one small epoch)."""
    args = ["train", recipe, "--out", str(tmp_path / "runs"), "--set", f"data.options.root={shd_root}",
            "--set", "model.hidden=[8]", "--set", "train.epochs=1", "--set", "data.batch_size=16", "--set", "train.progress=false"]
    assert main(args) == 0, capsys.readouterr().err
    assert (tmp_path / "runs" / recipe / "summary.json").is_file()
