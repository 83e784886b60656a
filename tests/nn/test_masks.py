import pytest
import torch

from spikescale.nn.masks import branch_mask, group_index, padded_width


def test_random_mask_each_input_exactly_once_per_neuron_and_balanced():
    mask = branch_mask(16, 700, 8, "random", generator=torch.Generator().manual_seed(0))
    assert mask.shape == (16, 8, 700)
    assert torch.equal(mask.sum(1), torch.ones(16, 700, dtype=torch.long))
    per_branch = mask.sum(-1)  # 704/8 = 88 slots, of which up to 4 padding
    assert per_branch.max() <= 88 and per_branch.min() >= 84
    assert not torch.equal(mask[0], mask[1])  # neurons differ


def test_random_mask_is_seeded():
    a = branch_mask(4, 30, 3, generator=torch.Generator().manual_seed(5))
    b = branch_mask(4, 30, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_contiguous_mask_is_the_xor_wiring():
    mask = branch_mask(16, 40, 2, "contiguous")
    assert mask[:, 0, :20].all() and not mask[:, 0, 20:].any()
    assert mask[:, 1, 20:].all() and not mask[:, 1, :20].any()


def test_grouped_mask_shares_wiring_within_groups():
    mask = branch_mask(8, 50, 4, "grouped", group_size=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mask[0], mask[3]) and torch.equal(mask[4], mask[7])
    assert not torch.equal(mask[0], mask[4])
    index = group_index(mask, 4)
    assert index.shape[:2] == (2, 4)
    for g in range(2):
        for d in range(4):
            members = index[g, d][index[g, d] < 50]
            assert torch.equal(mask[4 * g, d].nonzero().flatten(), members)


def test_grouped_leftover_neurons_are_connected():
    mask = branch_mask(10, 12, 2, "grouped", group_size=4)
    assert torch.equal(mask.sum(1), torch.ones(10, 12, dtype=torch.long))
    assert group_index(mask, 4) is None


@pytest.mark.parametrize("sparsity,per_branch", [(0.25, 6), (0.5, 12)])
def test_sparsity_windows(sparsity, per_branch):
    mask = branch_mask(3, 24, 4, sparsity=sparsity)
    assert (mask.sum(-1) == per_branch).all()
    if sparsity > 1 / 4:
        assert (mask.sum(1) == 2).all()  # overlapping: every input on two branches


def test_padding_width():
    assert padded_width(700, 8) == 704 and padded_width(40, 2) == 40 and padded_width(5, 3) == 6


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(branches=0), "branches must be between 1"),
        (dict(branches=11), "branches must be between 1"),
        (dict(kind="striped"), "unknown mask 'striped'"),
        (dict(sparsity=1.5), "sparsity must lie"),
    ],
)
def test_mask_errors(kwargs, message):
    args = dict(neurons=4, inputs=10, branches=2) | kwargs
    with pytest.raises(ValueError, match=message):
        branch_mask(**args)
