import numpy as np
import pytest
import torch

from spikescale.data.arrays import ArrayDataset, EventDataset, load_npz, resample_series
from spikescale.data.batch import collate
from spikescale.data.encoders import ChannelNormalizer, SeriesEncoder, level_crossing, rate_code, sample_generator
from spikescale.data.events import EventBinning, bin_events, concat_events
from spikescale.data.registry import load_splits


def test_nct_and_ntc_layouts_give_the_same_items():
    x = np.random.default_rng(0).normal(size=(3, 2, 5))
    nct = ArrayDataset(x, [0, 1, 2], layout="NCT")
    ntc = ArrayDataset(x.transpose(0, 2, 1), [0, 1, 2], layout="NTC")
    for i in range(3):
        assert torch.equal(nct[i][0], ntc[i][0]) and nct[i][0].shape == (5, 2)
    assert torch.allclose(nct[1][0], torch.from_numpy(x[1].T).float())


def test_nan_padding_becomes_lengths():
    x = np.full((2, 6, 1), np.nan)
    x[0, :4, 0] = [1, 2, 3, 4]
    x[1, :, 0] = np.arange(6)
    x[1, 2, 0] = 5.0
    data = ArrayDataset(x, [1, 0], layout="NTC")
    assert data.lengths.tolist() == [4, 6]
    batch = collate([data[0], data[1]])
    assert batch.lengths.tolist() == [4, 6] and batch.x.shape == (6, 2, 1)
    assert batch.x[4:, 0].eq(0).all() and torch.isfinite(batch.x).all()


@pytest.mark.parametrize(
    "x,kwargs,message",
    [
        (np.array([[[1.0, np.nan, 2.0]]]), {}, "sample 0 has nan at step 1"),
        (np.full((1, 1, 3), np.nan), {}, "sample 0 has no finite value"),
        (np.ones((2, 2)), {}, "3-D array"),
        (np.ones((1, 1, 3)), {"lengths": [4]}, "lengths must be"),
        (np.array([[[1.0, np.inf, 2.0]]]), {"lengths": [3]}, "inf at step 1"),
    ],
)
def test_bad_arrays(x, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArrayDataset(x, [0] * x.shape[0], **kwargs)


def test_bad_labels():
    with pytest.raises(ValueError, match="non-negative integers"):
        ArrayDataset(np.ones((2, 1, 3)), [0.5, 1])
    with pytest.raises(ValueError, match=r"expected \[2\]"):
        ArrayDataset(np.ones((2, 1, 3)), [0])


def test_event_lists_are_binned_like_shd():
    events = [(np.array([0.001, 0.0025]), np.array([0, 3])), np.array([[0.004, 1.0], [0.0041, 1.0]])]
    data = EventDataset(events, [0, 1], EventBinning(dt_ms=1.0, channels=4))
    frames = bin_events(*concat_events([events[0], (events[1][:, 0], events[1][:, 1].astype(int))]), EventBinning(dt_ms=1.0, channels=4))
    assert torch.equal(data[0][0], frames.dense(0)) and data[1][0][4, 1] == 2
    with pytest.raises(ValueError, match="integer channel"):
        EventDataset([np.array([[0.1, 1.5]])], [0], EventBinning(channels=4))


def test_level_crossing_and_rate_codes():
    x = torch.tensor([[0.0], [1.2], [0.1], [2.9]])
    assert level_crossing(x, 0.5).tolist() == [[0, 0], [2, 0], [0, 2], [5, 0]]
    assert level_crossing(x, 0.5, polarity="up").shape == (4, 1)
    p = torch.full((2000, 5), 0.3)
    spikes = rate_code(p, generator=sample_generator(0, 1))
    assert set(spikes.unique().tolist()) <= {0.0, 1.0} and abs(spikes.mean() - 0.3) < 0.02
    assert torch.equal(spikes, rate_code(p, generator=sample_generator(0, 1)))
    assert not torch.equal(spikes, rate_code(p, generator=sample_generator(0, 2)))


def test_normaliser_uses_the_series_it_is_fitted_on():
    train = [torch.tensor([[0.0, 10.0], [2.0, 10.0]]), torch.tensor([[4.0, 10.0]])]
    standard = ChannelNormalizer.fit(train, "standard")
    assert torch.allclose(standard.shift, torch.tensor([2.0, 10.0])) and standard.scale[1] == 1  # flat channel kept
    minmax = ChannelNormalizer.fit(train, "minmax")
    assert torch.allclose(minmax(torch.tensor([[4.0, 10.0]])), torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="unknown normalisation"):
        ChannelNormalizer.fit(train, "robust")
    assert SeriesEncoder(encoder="delta").out_channels(3) == 6


def test_resampling_keeps_a_ramp():
    x = np.zeros((2, 5, 1), np.float32)
    x[0, :, 0] = np.arange(5)
    x[1, :3, 0] = [0, 1, 2]
    out, lengths = resample_series(x, np.array([5, 3]), steps=9)
    assert lengths.tolist() == [9, 9] and np.allclose(out[0, :, 0], np.linspace(0, 4, 9))
    out, lengths = resample_series(x, np.array([5, 3]), factor=2.0)
    assert lengths.tolist() == [10, 6] and np.allclose(out[1, :6, 0], np.linspace(0, 2, 6)) and out[1, 6:].sum() == 0
    with pytest.raises(ValueError, match="exactly one"):
        resample_series(x, np.array([5, 3]))


@pytest.fixture
def npz_file(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.normal(5.0, 2.0, (40, 3, 12))  # [N, C, T]
    x_test = rng.normal(50.0, 2.0, (10, 3, 12))  # shifted: must be normalised with the train statistics
    x_train[::2, :, 9:] = np.nan  # variable lengths by NaN padding
    path = tmp_path / "mine.npz"
    np.savez(path, X_train=x_train, y_train=np.arange(40) % 4, X_test=x_test, y_test=np.arange(10) % 4,
             len_test=np.full(10, 12))
    return path


def test_arrays_source_normalises_with_training_statistics(npz_file):
    splits = load_splits("arrays", path=npz_file, valid_fraction=0.2)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (32, 8, 10)
    assert (splits.channels, splits.classes) == (3, 4)
    train = torch.cat([splits.train[i][0] for i in range(len(splits.train))])
    assert train.mean().abs() < 0.05 and abs(train.std() - 1) < 0.05
    assert splits.test[0][0].mean() > 15  # test shifted by +45 stays shifted: no test statistics used
    assert {splits.train[i][0].shape[0] for i in range(len(splits.train))} == {9, 12}


def test_arrays_source_encoders_and_resampling(npz_file):
    delta = load_splits("arrays", path=npz_file, encoder="delta", delta=0.5, steps=24)
    x, _ = delta.test[3]
    assert delta.channels == 6 and x.shape == (24, 6) and torch.equal(x, x.round()) and (x >= 0).all()
    rate = load_splits("arrays", path=npz_file, encoder="rate", time_factor=0.5)
    assert rate.test[1][0].shape[0] == 6 and torch.equal(rate.test[1][0], rate.test[1][0])
    assert set(torch.cat([rate.valid[i][0] for i in range(len(rate.valid))]).unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(rate.valid[0][0], rate.valid[0][0])  # fixed draws for model selection
    first, second = (torch.cat([rate.train[i][0] for i in range(len(rate.train))]) for _ in range(2))
    assert not torch.equal(first, second)  # training draws are fresh at every access


def test_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="X_train"):
        load_npz(tmp_path / "none.npz")
    np.savez(tmp_path / "partial.npz", X_train=np.ones((2, 1, 3)), y_train=[0, 1])
    with pytest.raises(ValueError, match=r"missing arrays \['X_test', 'y_test'\]"):
        load_npz(tmp_path / "partial.npz")
    np.savez(tmp_path / "wide.npz", X_train=np.ones((2, 1, 3)), y_train=[0, 1], X_test=np.ones((2, 2, 3)), y_test=[0, 1])
    with pytest.raises(ValueError, match="channels"):
        load_npz(tmp_path / "wide.npz")
