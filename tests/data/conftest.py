"""Fixtures for the data tests: small files in the exact SHD schema, a private cache folder."""

from __future__ import annotations

import h5py
import numpy as np
import pytest


def write_raw_shd(path, samples, labels, speakers=None, keys=None, times_dtype=np.float16):
    """Write ``[(times, units), ...]`` with plain h5py in the official layout (not spikescale's writer)."""
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(times_dtype))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(samples):
            times[i] = np.asarray(t, dtype=times_dtype)
            units[i] = np.asarray(u, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        if speakers is not None:
            f.create_dataset("extra/speaker", data=np.asarray(speakers, dtype=np.uint16))
        if keys is not None:
            f.create_dataset("extra/keys", data=[k.encode() for k in keys])
            meta = f.create_group("extra/meta_info")
            meta.create_dataset("gender", data=[b"f", b"m"])
    return path


def random_samples(count, rng, channels=700, max_events=300, max_time=1.3):
    samples = []
    for _ in range(count):
        n = int(rng.integers(0, max_events))
        samples.append((np.sort(rng.uniform(0, max_time, n)), rng.integers(0, channels, n)))
    return samples


@pytest.fixture
def shd_file(tmp_path):
    """A 40-sample SHD-schema file: 2 classes × 4 speakers × 5, times stored as float16."""
    rng = np.random.default_rng(5)
    samples = random_samples(40, rng)
    labels = np.repeat([0, 1], 20)
    speakers = np.tile(np.repeat(np.arange(4), 5), 2)
    path = write_raw_shd(tmp_path / "shd_train.h5", samples, labels, speakers, keys=["zero", "one"])
    return path, samples, labels, speakers


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Keep every cache write of a test inside its temporary folder."""
    monkeypatch.setenv("SPIKESCALE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPIKESCALE_DATA", str(tmp_path / "data_home"))


@pytest.fixture
def write_shd():
    """The raw SHD-schema writer (see :func:`write_raw_shd`)."""
    return write_raw_shd


@pytest.fixture
def make_samples():
    """``make_samples(count, rng, channels=700, max_events=300, max_time=1.3)`` random event lists."""
    return random_samples
