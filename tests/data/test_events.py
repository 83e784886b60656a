import numpy as np
import pytest
import torch

from spikescale.data import events as events_module
from spikescale.data.events import EventBinning, bin_events, concat_events, frames_reference


def _bin(samples, binning):
    return bin_events(*concat_events(samples), binning)


def test_hand_computed_frames():
    times = np.array([0.0, 0.0004, 0.0015, 0.0039, 0.0041, 0.0041])
    units = np.array([2, 2, 0, 3, 1, 1])
    frames = _bin([(times, units)], EventBinning(dt_ms=1.0, channels=4)).dense(0)
    expected = torch.zeros(5, 4)
    expected[0, 2] = 2
    expected[1, 0] = 1
    expected[3, 3] = 1
    expected[4, 1] = 2
    assert torch.equal(frames, expected)
    coarse = _bin([(times, units)], EventBinning(dt_ms=4.0, channels=4)).dense(0)
    assert torch.equal(coarse, torch.tensor([[1.0, 0, 2, 1], [0, 2, 0, 0]]))
    binary = _bin([(times, units)], EventBinning(dt_ms=4.0, channels=4, binary=True)).dense(0)
    assert torch.equal(binary, (coarse > 0).float())


BINNINGS = [
    EventBinning(dt_ms=1.0),
    EventBinning(dt_ms=4.0, duration_ms=1000.0, binary=True),
    EventBinning(dt_ms=10.0, align="first_spike", pool=5),
    EventBinning(dt_ms=1.0, duration_ms=1000.0, faithful=True, binary=True),
    EventBinning(dt_ms=0.25, duration_ms=500.0, faithful=True, pool=7),
]


@pytest.mark.parametrize("binning", BINNINGS, ids=lambda b: f"dt{b.dt_ms}-{b.align}-p{b.pool}-f{int(b.faithful)}")
def test_vectorised_binning_matches_the_per_event_loop(binning, make_samples):
    samples = [(t.astype(np.float16), u) for t, u in make_samples(12, np.random.default_rng(1))]
    frames = _bin(samples, binning)
    for i, (t, u) in enumerate(samples):
        assert np.array_equal(frames.dense(i).numpy(), frames_reference(t, u, binning)), i


def test_chunked_passes_match_one_pass(monkeypatch, make_samples):
    samples = make_samples(25, np.random.default_rng(2))
    whole = _bin(samples, EventBinning(dt_ms=2.0))
    monkeypatch.setattr(events_module, "_CHUNK_EVENTS", 100)
    chunked = _bin(samples, EventBinning(dt_ms=2.0))
    for name in ("steps", "chans", "counts", "offsets", "lengths"):
        assert np.array_equal(getattr(whole, name), getattr(chunked, name)), name


def test_pooling_sums_groups_of_channels(make_samples):
    samples = make_samples(6, np.random.default_rng(3))
    full = _bin(samples, EventBinning(dt_ms=5.0))
    pooled = _bin(samples, EventBinning(dt_ms=5.0, pool=5))
    assert pooled.channels == 140
    for i in range(len(samples)):
        f = full.dense(i)
        assert torch.equal(pooled.dense(i), f.reshape(f.shape[0], 140, 5).sum(-1))


def test_first_spike_alignment_ignores_onset():
    times = np.array([0.3021, 0.3032, 0.3155])
    units = np.array([4, 5, 6])
    shifted = _bin([(times, units), (times - 0.3, units)], EventBinning(dt_ms=10.0, align="first_spike", channels=8))
    assert torch.equal(shifted.dense(0), shifted.dense(1))
    assert shifted.dense(0).shape[0] == 2 and shifted.dense(0)[0, 4] == 1
    from_zero = _bin([(times, units)], EventBinning(dt_ms=10.0, channels=8))
    assert from_zero.dense(0).shape[0] == 32


def test_duration_fixes_length_and_drops_late_events():
    frames = _bin([(np.array([0.0005, 0.9995, 1.2]), np.array([1, 2, 3])), (np.zeros(0), np.zeros(0, int))],
                  EventBinning(dt_ms=1.0, duration_ms=1000.0, channels=4))
    assert frames.dense(0).shape == (1000, 4) and frames.dense(0).sum() == 2
    assert frames.dense(1).shape == (1000, 4) and frames.dense(1).sum() == 0


def test_empty_sample_without_duration_is_one_zero_step():
    frames = _bin([(np.zeros(0), np.zeros(0, int))], EventBinning(dt_ms=1.0, channels=3))
    assert torch.equal(frames.dense(0), torch.zeros(1, 3))


def test_faithful_rule_reverses_channels_and_uses_t_le_i_dt():
    times = np.array([0.0, 0.001, 0.0011, 0.003, 0.0035], dtype=np.float64)
    units = np.array([5, 1, 0, 699, 2])
    frames = _bin([(times, units)], EventBinning(dt_ms=1.0, duration_ms=4.0, faithful=True)).dense(0)
    assert frames.shape == (4, 700)
    # t=0 -> step 0; t=0.001 <= 1·dt -> step 1; unit 0 dropped; t=0.003 -> step 3; t=0.0035 > 3·dt: dropped
    expected = torch.zeros(4, 700)
    expected[0, 695] = 1
    expected[1, 699] = 1
    expected[3, 1] = 1
    assert torch.equal(frames, expected)
    assert frames[:, 0].sum() == 0


@pytest.mark.parametrize(
    "times,units,message",
    [
        ([-0.1], [0], "times must be finite"),
        ([np.nan], [0], "times must be finite"),
        ([0.1], [700], "expected units in"),
        ([0.1], [-1], "expected units in"),
    ],
)
def test_bad_events_name_the_sample(times, units, message):
    with pytest.raises(ValueError, match=message) as info:
        _bin([(np.zeros(0), np.zeros(0, int)), (np.array(times), np.array(units))], EventBinning())
    assert "sample 1" in str(info.value)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"dt_ms": 0}, "dt_ms"),
        ({"pool": 3}, "pool"),
        ({"align": "middle"}, "align"),
        ({"faithful": True}, "faithful"),
        ({"faithful": True, "duration_ms": 1000.0, "align": "first_spike"}, "faithful"),
        ({"duration_ms": -1.0}, "duration_ms"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EventBinning(**kwargs)


def test_mismatched_event_arrays():
    with pytest.raises(ValueError, match="equal lengths"):
        concat_events([(np.zeros(3), np.zeros(2, int))])
    with pytest.raises(ValueError, match="offsets"):
        bin_events(np.zeros(3), np.zeros(3, int), np.array([0, 2]), EventBinning())
