import numpy as np
import pytest
import torch

from spikescale.data.idx import FASHION_MNIST_ROOT
from spikescale.data.static_images import StaticImageSet, collate_static


@pytest.fixture
def tiny_set(mnist_folder):
    return mnist_folder(3, 2)


def test_splits_are_disjoint_stratified_and_seeded(tiny_set):
    train = StaticImageSet("train", tiny_set, valid_fraction=0.25)
    valid = StaticImageSet("valid", tiny_set, valid_fraction=0.25)
    test = StaticImageSet("test", tiny_set)
    assert (len(train), len(valid), len(test)) == (32, 8, 10)  # round(0.25 · 10) = 2 per class
    assert np.bincount(valid.labels.numpy()).tolist() == [2, 2, 2, 2]
    assert train.features == 6 and train.shape == (3, 2)
    assert train.images.dtype == torch.float32 and 0.0 <= train.images.min() and train.images.max() <= 1.0
    rows = {tuple(r.tolist()) for r in train.images} & {tuple(r.tolist()) for r in valid.images}
    assert not rows  # no image in both parts (random images are distinct)
    again = StaticImageSet("valid", tiny_set, valid_fraction=0.25)
    assert torch.equal(again.images, valid.images)
    other = StaticImageSet("valid", tiny_set, valid_fraction=0.25, seed=1)
    assert not torch.equal(other.images, valid.images)
    x, label = train[0]
    assert x.shape == (6,) and isinstance(label, int)
    with pytest.raises(ValueError, match="split"):
        StaticImageSet("dev", tiny_set)
    with pytest.raises(FileNotFoundError):
        StaticImageSet("train", tiny_set / "missing")


def test_collate_static():
    batch = collate_static([(torch.rand(5), 1), (torch.rand(5), 3)])
    assert batch.x.shape == (2, 5) and batch.y.tolist() == [1, 3] and batch.lengths is None
    with pytest.raises(ValueError, match="sample 1"):
        collate_static([(torch.rand(5), 1), (torch.rand(4), 3)])
    with pytest.raises(ValueError, match="empty"):
        collate_static([])


@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason=f"Fashion-MNIST not installed at {FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_splits():
    train = StaticImageSet("train")
    valid = StaticImageSet("valid")
    assert (len(train), len(valid), len(StaticImageSet("test"))) == (54000, 6000, 10000)
    assert train.features == 784
    assert np.bincount(valid.labels.numpy()).tolist() == [600] * 10
