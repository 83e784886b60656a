import numpy as np
import pytest
import torch

from spikescale.data.idx import FASHION_MNIST_ROOT
from spikescale.data.registry import load_splits
from spikescale.data.sequential import SequentialImages, pixel_permutation, pixel_statistics


@pytest.fixture
def tiny_mnist(mnist_folder):
    return mnist_folder(4, 4)


def test_one_pixel_per_step_and_normalisation():
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    mean, std = pixel_statistics(images)
    data = SequentialImages(images, np.array([1, 0]), mean=mean, std=std)
    x, label = data[1]
    assert x.shape == (9, 1) and label == 0
    assert torch.allclose(x[:, 0], (torch.arange(9, 18).float() * 10 / 255 - mean) / std)
    stacked = torch.cat([data[i][0] for i in range(2)])
    assert abs(stacked.mean()) < 1e-6 and abs(stacked.std(unbiased=False) - 1) < 1e-5


def test_permuted_sequence_reorders_the_same_pixels():
    images = np.random.default_rng(1).integers(0, 256, (3, 4, 4)).astype(np.uint8)
    order = pixel_permutation(16, seed=0)
    plain = SequentialImages(images, np.zeros(3))
    permuted = SequentialImages(images, np.zeros(3), permutation=order)
    assert torch.equal(permuted[2][0], plain[2][0][order])
    assert torch.equal(pixel_permutation(16, 0), order) and not torch.equal(pixel_permutation(16, 1), order)
    with pytest.raises(ValueError, match="exactly once"):
        SequentialImages(images, np.zeros(3), permutation=torch.zeros(16, dtype=torch.long))


def test_permutation_seed_zero_matches_the_global_generator():
    torch.manual_seed(0)
    assert torch.equal(pixel_permutation(784, 0), torch.randperm(784))


def test_registry_on_an_mnist_folder(tiny_mnist):
    splits = load_splits("psmnist", root=tiny_mnist, valid_fraction=0.25)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (32, 8, 10)  # 2 of each class of 10 (round(2.5) = 2)
    assert (splits.channels, splits.classes, splits.dt_ms) == (1, 4, None)
    x, label = splits.test[0]
    assert x.shape == (16, 1) and x.dtype == torch.float32
    assert "PS-MNIST" in splits.description
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_splits("smnist", root=tiny_mnist / "missing")


@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_sequential_fashion_mnist():
    splits = load_splits("sfmnist")
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (54000, 6000, 10000)
    assert splits.classes == 10 and splits.train[0][0].shape == (784, 1)
    assert "0.2860" in splits.description  # Fashion-MNIST training pixel mean
