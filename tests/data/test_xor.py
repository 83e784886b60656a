import math

import pytest
import torch

from spikescale.data import delayed_xor, multiscale_xor


def test_delayed_xor_layout_and_scoring():
    batch = delayed_xor(300, steps=150, generator=torch.Generator().manual_seed(0))
    assert batch.x.shape == (150, 300, 20) and batch.labels.shape == (150, 300)
    assert int(batch.scored[:, 0].sum()) == 9
    assert batch.scored[141:, :].all() and not batch.scored[:141].any()
    assert set(batch.x.unique().tolist()) <= {0.0, 1.0}


def test_multiscale_xor_scoring_has_54_steps():
    batch = multiscale_xor(10, generator=torch.Generator().manual_seed(0))
    scored = batch.scored[:, 0].nonzero().flatten().tolist()
    assert len(scored) == 54
    assert scored[:9] == list(range(16, 25)) and scored[-9:] == list(range(91, 100))


def _rate_ok(observed, expected, n):
    return abs(observed - expected) < 5 * math.sqrt(expected * (1 - expected) / n)


def test_pattern_rates_within_sampling_error():
    n = 4000
    batch = delayed_xor(n, steps=60, noise=0.0, generator=torch.Generator().manual_seed(1))
    first = batch.x[:10].mean((0, 2))  # per-sample rate of pattern A
    high = first > 0.4
    # OR-ing no noise: rates are exactly 0.2 / 0.6 in expectation.
    assert _rate_ok(batch.x[:10, high].mean().item(), 0.6, int(high.sum()) * 200)
    assert _rate_ok(batch.x[:10, ~high].mean().item(), 0.2, int((~high).sum()) * 200)
    assert _rate_ok(high.float().mean().item(), 0.5, n)
    noisy = delayed_xor(n, steps=60, generator=torch.Generator().manual_seed(2))
    gap = noisy.x[10:50]
    assert _rate_ok(gap.mean().item(), 0.01, gap.numel())
    # the label is XOR of the two pattern rates
    second = noisy.x[50:].mean((0, 2)) > 0.4
    first = noisy.x[:10].mean((0, 2)) > 0.4
    agree = ((first != second).long() == noisy.labels[-1]).float().mean()
    assert agree > 0.99  # a few 10x20 patterns are ambiguous by chance


def test_multiscale_xor_labels_follow_cycles():
    batch = multiscale_xor(2000, noise=0.0, generator=torch.Generator().manual_seed(3))
    slow = batch.x[:10, :, :20].mean((0, 2)) > 0.4
    for k in range(6):
        on = 15 + 15 * k
        fast = batch.x[on:on + 10, :, 20:].mean((0, 2)) > 0.4
        assert ((slow != fast).long() == batch.labels[on + 5]).float().mean() > 0.99
        assert batch.x[on - 5:on, :, 20:].sum() == 0  # gap steps carry no signal


def test_generators_are_seeded_and_validate():
    a = multiscale_xor(4, generator=torch.Generator().manual_seed(9))
    b = multiscale_xor(4, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.x, b.x)
    with pytest.raises(ValueError, match="steps must be at least"):
        delayed_xor(2, steps=15)
    with pytest.raises(ValueError, match="channels must be even"):
        multiscale_xor(2, channels=41)
