import math

import pytest
import torch
import torch.nn.functional as F

from spikescale.train.losses import decode


def test_per_step_scores_only_scored_steps():
    out = torch.zeros(3, 2, 2)
    out[1, :, 1] = 5.0  # step 1 predicts class 1 for both samples
    labels = torch.tensor([[0, 0], [1, 0], [0, 0]])
    scored = torch.tensor([[False, False], [True, True], [False, False]])
    loss, correct, count = decode(out, labels, "per_step", scored=scored)
    assert count == 2 and correct.item() == 1
    expected = (F.cross_entropy(out[1, 0:1], labels[1, 0:1]) + F.cross_entropy(out[1, 1:2], labels[1, 1:2])) / 2
    assert loss.item() == pytest.approx(expected.item())


def test_faithful_per_step_is_double_softmax():
    out = torch.randn(4, 3, 2)
    labels = torch.randint(0, 2, (4, 3))
    loss, _, _ = decode(out, labels, "per_step", faithful=True)
    expected = F.cross_entropy(torch.softmax(out.reshape(-1, 2), -1), labels.reshape(-1))
    assert loss.item() == pytest.approx(expected.item())


def test_sum_softmax_default_is_nll_of_mean_probability_after_warmup():
    out = torch.randn(6, 2, 3)
    labels = torch.tensor([2, 0])
    loss, _, count = decode(out, labels, "sum_softmax", warmup=2)
    probs = torch.softmax(out[2:], -1).mean(0)
    assert loss.item() == pytest.approx(-torch.log(probs[torch.arange(2), labels]).mean().item(), rel=1e-5)
    faithful, _, _ = decode(out, labels, "sum_softmax", warmup=2, faithful=True)
    assert faithful.item() == pytest.approx(F.cross_entropy(torch.softmax(out[2:], -1).sum(0), labels).item())
    assert count == 2


def test_lengths_mask_padded_steps():
    out = torch.zeros(4, 2, 2)
    out[2:, 0, 0] = 100.0  # padding of sample 0 would predict class 0
    out[:, 0, 1] = 1.0
    lengths = torch.tensor([2, 4])
    for decoder in ("mean", "sum_softmax", "spike_count"):
        _, correct, _ = decode(out, torch.tensor([1, 0]), decoder, lengths=lengths)
        assert correct.item() >= 1  # sample 0 decided on its two valid steps: class 1
    loss, _, _ = decode(out, torch.tensor([1, 1]), "mean", lengths=lengths)
    assert math.isfinite(loss.item())


def test_decoder_errors():
    with pytest.raises(ValueError, match="unknown decoder"):
        decode(torch.zeros(2, 1, 2), torch.zeros(1, dtype=torch.long), "max")
    with pytest.raises(ValueError, match="per-step labels"):
        decode(torch.zeros(2, 1, 2), torch.zeros(1, dtype=torch.long), "per_step")
    with pytest.raises(ValueError, match="warmup"):
        decode(torch.zeros(2, 1, 2), torch.zeros(1, dtype=torch.long), "mean", warmup=2)
