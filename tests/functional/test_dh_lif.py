import itertools

import pytest
import torch

from spikescale.functional import (
    RESETS,
    DHLIFState,
    LIFState,
    dh_lif_recurrent_sequence,
    dh_lif_recurrent_sequence_reference,
    dh_lif_recurrent_step,
    dh_lif_sequence,
    dh_lif_sequence_reference,
    dh_lif_step,
    lif_sequence,
)

D = torch.float64


def _args(recurrent, branches, steps=6, batch=2, neurons=3):
    current = (torch.randn(steps, batch, neurons, branches, dtype=D) * 2 + 0.8).requires_grad_()
    alpha = torch.rand(neurons, branches, dtype=D).requires_grad_()
    beta = torch.rand(neurons, dtype=D).requires_grad_()
    theta = (torch.rand(neurons, dtype=D) + 0.5).requires_grad_()
    i0 = torch.rand(batch, neurons, branches, dtype=D).requires_grad_()
    u0 = torch.rand(batch, neurons, dtype=D).requires_grad_()
    s0 = torch.rand(batch, neurons, dtype=D).requires_grad_()
    args = [current, alpha, beta, theta, i0, u0, s0]
    if recurrent:
        args.insert(1, torch.randn(neurons * branches, neurons, dtype=D).requires_grad_())
    return tuple(args)


FUNCTIONS = {
    False: (dh_lif_sequence, dh_lif_sequence_reference),
    True: (dh_lif_recurrent_sequence, dh_lif_recurrent_sequence_reference),
}


@pytest.mark.parametrize("recurrent,branches,reset,detach", list(itertools.product([False, True], [1, 2, 4], RESETS, [False, True])))
def test_matches_reference(recurrent, branches, reset, detach, dh_call):
    fast_fn, ref_fn = FUNCTIONS[recurrent]
    options = dict(reset=reset, detach_reset=detach)
    args = _args(recurrent, branches)
    fast = dh_call(recurrent, fast_fn, options)(*args)
    ref = dh_call(recurrent, ref_fn, options)(*args)
    for a, b in zip(fast, ref):
        assert torch.allclose(a, b, atol=1e-12)
    weights = [torch.randn_like(t) for t in fast]
    g_fast = torch.autograd.grad(sum((o * w).sum() for o, w in zip(fast, weights)), args, allow_unused=True)
    g_ref = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ref, weights)), args, allow_unused=True)
    for a, b, t in zip(g_fast, g_ref, args):
        a = torch.zeros_like(t) if a is None else a
        b = torch.zeros_like(t) if b is None else b
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("recurrent,branches,reset", list(itertools.product([False, True], [1, 2, 4], RESETS)))
def test_gradcheck(recurrent, branches, reset, smooth_spike, dh_call):
    options = dict(reset=reset, surrogate=smooth_spike)
    fn = FUNCTIONS[recurrent][0]
    assert torch.autograd.gradcheck(dh_call(recurrent, fn, options), _args(recurrent, branches, steps=4))


def test_one_branch_with_alpha_zero_is_vanilla_lif():
    current = torch.randn(30, 4, 5, 1) + 0.7
    beta = torch.rand(5)
    zeros = torch.zeros(4, 5)
    state = DHLIFState(torch.zeros(4, 5, 1), zeros, zeros)
    dh, _ = dh_lif_sequence(current, state, torch.zeros(5, 1), beta)
    vanilla, _ = lif_sequence(current[..., 0], LIFState(zeros, zeros), beta)
    assert torch.equal(dh, vanilla)


def test_dendrites_are_never_reset():
    # Constant drive: the dendritic current is the EMA of the input whatever the soma does.
    current = torch.ones(50, 1, 1, 2, dtype=D)
    alpha = torch.tensor([[0.9, 0.5]], dtype=D)
    zeros = torch.zeros(1, 1, dtype=D)
    spikes, state = dh_lif_sequence(current, DHLIFState(torch.zeros(1, 1, 2, dtype=D), zeros, zeros), alpha, torch.tensor([0.5], dtype=D))
    assert spikes.sum() > 0
    assert torch.allclose(state.i.flatten(), 1 - alpha.flatten() ** 50)


@pytest.mark.parametrize("recurrent", [False, True])
def test_step_equals_sequence(recurrent):
    torch.manual_seed(0)
    steps, batch, neurons, branches = 15, 3, 4, 2
    current = torch.randn(steps, batch, neurons, branches) + 0.6
    alpha, beta = torch.rand(neurons, branches), torch.rand(neurons)
    state = DHLIFState(torch.zeros(batch, neurons, branches), torch.rand(batch, neurons), torch.rand(batch, neurons))
    w_rec = torch.randn(neurons * branches, neurons) * 0.5
    if recurrent:
        spikes, final = dh_lif_recurrent_sequence(current, state, w_rec, alpha, beta)
    else:
        spikes, final = dh_lif_sequence(current, state, alpha, beta)
    for t in range(steps):
        if recurrent:
            s, state = dh_lif_recurrent_step(current[t], state, w_rec, alpha, beta)
        else:
            s, state = dh_lif_step(current[t], state, alpha, beta)
        assert torch.equal(s, spikes[t])
    assert torch.allclose(state.u, final.u) and torch.allclose(state.i, final.i)
