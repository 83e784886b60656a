import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spikescale.data import heidelberg as heidelberg_module
from spikescale.data.batch import collate
from spikescale.data.cache import load_arrays, store_arrays
from spikescale.data.events import EventBinning, frames_reference
from spikescale.data.heidelberg import SpikeFile, SpikeFileDataset, SpikeFileError, frames_cache_dir, write_spike_file


def test_reader_exposes_schema(shd_file):
    path, samples, labels, speakers = shd_file
    source = SpikeFile(path)
    assert len(source) == 40 and source.classes == 2 and source.class_names == ["zero", "one"]
    assert np.array_equal(source.labels, labels) and np.array_equal(source.speakers, speakers)
    times, units = source.events(7)
    assert times.dtype == np.float16
    assert np.array_equal(times, samples[7][0].astype(np.float16)) and np.array_equal(units, samples[7][1])
    all_times, all_units, offsets = source.read_all()
    assert offsets[-1] == sum(len(t) for t, _ in samples)
    assert np.array_equal(all_units[offsets[7]:offsets[8]], samples[7][1])


@pytest.mark.parametrize("dt_ms", [1.0, 4.0, 10.0])
def test_round_trip_events_to_expected_counts(shd_file, dt_ms):
    path, samples, _, _ = shd_file
    binning = EventBinning(dt_ms=dt_ms)
    cached = SpikeFileDataset(path, binning)
    direct = SpikeFileDataset(path, binning, cache=False)
    for i in (0, 5, 39):
        expected = frames_reference(samples[i][0].astype(np.float16), samples[i][1], binning)
        x, label = cached[i]
        assert x.dtype == torch.float32 and label == (0 if i < 20 else 1)
        assert np.array_equal(x.numpy(), expected)
        assert torch.equal(direct[i][0], x)


def test_cache_is_reused_and_keyed_by_settings_and_content(shd_file, monkeypatch, write_shd, tmp_path):
    path, samples, labels, speakers = shd_file
    binning = EventBinning(dt_ms=2.0)
    SpikeFileDataset(path, binning)
    directory = frames_cache_dir(path, binning)
    assert load_arrays(directory) is not None
    assert frames_cache_dir(path, EventBinning(dt_ms=3.0)) != directory

    def no_binning(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(heidelberg_module, "bin_events", no_binning)
    assert SpikeFileDataset(path, binning)[3][0].sum() == len(samples[3][0])  # every event kept
    write_shd(path, samples[:-1], labels[:-1], speakers[:-1])  # new content -> new key
    assert frames_cache_dir(path, binning) != directory


def test_store_arrays_keeps_the_first_complete_entry(tmp_path):
    target = tmp_path / "entry"
    store_arrays(target, {"a": np.arange(3)}, {"n": 1})
    store_arrays(target, {"a": np.arange(5)}, {"n": 2})
    arrays, meta = load_arrays(target)
    assert meta == {"n": 1} and arrays["a"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # no temporary folder left behind


def test_pickled_dataset_reopens_its_file(shd_file):
    path, samples, _, _ = shd_file
    for cache in (True, False):
        data = SpikeFileDataset(path, EventBinning(dt_ms=5.0), cache=cache)
        first = data[2][0]
        clone = pickle.loads(pickle.dumps(data))
        assert torch.equal(clone[2][0], first)


def test_dataloader_workers_read_the_same_batches(shd_file):
    path, _, _, _ = shd_file
    data = SpikeFileDataset(path, EventBinning(dt_ms=10.0), cache=False)
    data[0]  # open the handle in the parent first: workers must not share it
    inline = [b.x for b in DataLoader(data, batch_size=8, collate_fn=collate)]
    workers = [b.x for b in DataLoader(data, batch_size=8, collate_fn=collate, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(inline, workers))


def test_writer_round_trip(tmp_path):
    samples = [(np.array([0.001, 0.002], np.float32), np.array([3, 4])), (np.zeros(0), np.zeros(0, int))]
    path = write_spike_file(tmp_path / "w.h5", samples, [1, 0], speakers=[0, 1], class_names=["a", "b"],
                            extra={"files": ["x.wav", "y.wav"]}, attrs={"source": "test"})
    source = SpikeFile(path)
    assert source.class_names == ["a", "b"] and source.attrs["source"] == "test"
    assert np.array_equal(source.events(0)[1], [3, 4]) and source.events(1)[0].size == 0
    with h5py.File(path) as f:
        assert f["spikes/units"].dtype.metadata["vlen"] == np.uint16


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        SpikeFile("nope.h5")


@pytest.mark.parametrize("drop", ["spikes/times", "spikes/units", "labels"])
def test_missing_keys_are_named(tmp_path, write_shd, drop):
    path = write_shd(tmp_path / "x.h5", [(np.zeros(1), np.zeros(1, int))], [0])
    with h5py.File(path, "a") as f:
        del f[drop]
    with pytest.raises(SpikeFileError, match=f"missing key '{drop}'"):
        SpikeFile(path)


def test_inconsistent_lengths(tmp_path, write_shd):
    path = write_shd(tmp_path / "x.h5", [(np.zeros(1), np.zeros(1, int))] * 2, [0, 1])
    with h5py.File(path, "a") as f:
        del f["labels"]
        f["labels"] = np.zeros(3, np.uint16)
    with pytest.raises(SpikeFileError, match="differ in length"):
        SpikeFile(path)


def test_truncated_and_foreign_files(tmp_path, shd_file):
    path = shd_file[0]
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SpikeFileError, match="truncated.h5: not a readable HDF5"):
        SpikeFile(truncated)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(SpikeFileError, match="text.h5"):
        SpikeFile(text)


def test_sample_with_mismatched_times_and_units(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("spikes/times", (1,), dtype=h5py.vlen_dtype(np.float32))[0] = np.zeros(3, np.float32)
        f.create_dataset("spikes/units", (1,), dtype=h5py.vlen_dtype(np.uint16))[0] = np.zeros(2, np.uint16)
        f["labels"] = np.zeros(1, np.uint16)
    with pytest.raises(SpikeFileError, match="sample 0 has 3 times but 2 units"):
        SpikeFile(path).events(0)
    with pytest.raises(SpikeFileError, match="sample 0 has 3 times but 2 units"):
        SpikeFileDataset(path, EventBinning())


def test_cache_built_in_blocks_equals_per_item_binning(shd_file, monkeypatch, tmp_path, write_shd):
    path, samples, labels, _ = shd_file
    monkeypatch.setattr(heidelberg_module, "_BLOCK_SAMPLES", 7)
    binning = EventBinning(dt_ms=3.0, align="first_spike")
    blocked = SpikeFileDataset(path, binning)
    direct = SpikeFileDataset(path, binning, cache=False)
    assert all(torch.equal(blocked[i][0], direct[i][0]) for i in range(len(samples)))
    bad = list(samples)
    bad[30] = (np.array([0.5]), np.array([700]))  # one unit too many for 700 channels
    write_shd(tmp_path / "bad.h5", bad, labels)
    with pytest.raises(ValueError, match="sample 30 has unit 700"):
        SpikeFileDataset(tmp_path / "bad.h5", binning)
