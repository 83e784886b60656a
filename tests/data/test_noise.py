import pytest
import torch
from torch.utils.data import TensorDataset

from spikescale.data.noise import SpikeNoise, noise_probability


def _data(value=0.0):
    return [(torch.full((200, 50), value), 1)]


def test_probability_from_rate():
    assert noise_probability(10.0, 4.0) == pytest.approx(0.04)
    with pytest.raises(ValueError, match="probability"):
        noise_probability(500.0, 4.0)


def test_noise_rate_and_modes():
    noisy, label = SpikeNoise(_data(), 0.05, seed=3)[0]
    assert label == 1 and set(noisy.unique().tolist()) <= {0.0, 1.0}
    assert abs(noisy.mean() - 0.05) < 0.01
    assert torch.equal(SpikeNoise(_data(1.0), 0.5, mode="or")[0][0], torch.ones(200, 50))
    added = SpikeNoise(_data(2.0), 0.5, mode="add", seed=3)[0][0]
    assert set(added.unique().tolist()) == {2.0, 3.0}
    assert torch.equal(SpikeNoise(_data(), 0.0)[0][0], torch.zeros(200, 50))


def test_seeded_noise_is_fixed_per_sample_and_fresh_without_seed():
    data = [(torch.zeros(100, 20), 0), (torch.zeros(100, 20), 1)]
    fixed = SpikeNoise(data, 0.2, seed=0)
    assert torch.equal(fixed[1][0], fixed[1][0]) and not torch.equal(fixed[0][0], fixed[1][0])
    fresh = SpikeNoise(data, 0.2, seed=None)
    assert not torch.equal(fresh[0][0], fresh[0][0])


def test_bad_noise_settings():
    with pytest.raises(ValueError, match="probability"):
        SpikeNoise(_data(), 1.5)
    with pytest.raises(ValueError, match="noise mode"):
        SpikeNoise(_data(), 0.1, mode="xor")
