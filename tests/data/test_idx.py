import gzip
import struct

import numpy as np
import pytest

from spikescale.data.idx import FASHION_MNIST_ROOT, IDXError, load_image_set, read_idx
from spikescale.data.splits import stratified_split


def _write_idx(path, array, code=0x08, compress=False):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    path = tmp_path / ("x.gz" if compress else "x")
    _write_idx(path, images, compress=compress)
    assert np.array_equal(read_idx(path), images)
    values = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    _write_idx(tmp_path / "i", values, code=0x0C)
    assert np.array_equal(read_idx(tmp_path / "i"), values)


def test_image_set_from_folder(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([1, 2, 3], np.uint8), compress=True)
    images, labels = load_image_set(tmp_path, "train")
    assert images.shape == (3, 2, 2) and labels.tolist() == [1, 2, 3]
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_image_set(tmp_path, "test")


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"\x01\x00\x08\x01", "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown data type"),
        (b"\x00\x00\x08\x02\x00\x00", "header truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "needs 5"),
    ],
)
def test_corrupt_files_name_the_problem(tmp_path, payload, message):
    path = tmp_path / "bad"
    path.write_bytes(payload)
    with pytest.raises(IDXError, match=message):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    good = tmp_path / "g.gz"
    _write_idx(good, np.zeros((100, 10), np.uint8), compress=True)
    bad = tmp_path / "t.gz"
    bad.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(IDXError, match="cannot read"):
        read_idx(bad)


@pytest.mark.skipif(not (FASHION_MNIST_ROOT / "t10k-labels-idx1-ubyte.gz").exists(), reason="dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)")
def test_debian_fashion_mnist():
    images, labels = load_image_set(split="test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10


def test_stratified_split_is_seeded_and_balanced():
    labels = np.repeat(np.arange(4), 50)
    train, valid = stratified_split(labels, 0.2, seed=3)
    assert len(valid) == 40 and np.bincount(labels[valid]).tolist() == [10] * 4
    assert np.array_equal(valid, stratified_split(labels, 0.2, seed=3)[1])
    assert not np.array_equal(valid, stratified_split(labels, 0.2, seed=4)[1])
    assert len(np.intersect1d(train, valid)) == 0 and len(train) + len(valid) == 200
    speakers = np.tile(["a", "b"], 100)
    _, valid = stratified_split(labels, 0.2, seed=0, groups=speakers)
    assert len(valid) == 40
