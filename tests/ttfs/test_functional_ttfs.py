import math

import pytest
import torch

from spikescale.functional import ttfs as F_ttfs
from spikescale.functional.ttfs import (
    CausalSet,
    ChopCounter,
    causal_sums,
    free_potential,
    spike_time,
    ttfs_decode,
    ttfs_dense,
    ttfs_dense_reference,
    ttfs_dense_window,
    ttfs_encode,
)

D = torch.float64
INF = math.inf
BACKENDS = ["torch", "reference"] + (["numba"] if F_ttfs._ttfs_numba is not None else [])


def random_layer(batch=4, inputs=7, neurons=5, *, silent=0.25, ties=False, t_max=2.0, dtype=D, seed=0):
    """Input times in [0, 1] (some silent, optionally tied), weights of both signs with a positive mean."""
    g = torch.Generator().manual_seed(seed)
    t_in = torch.rand(batch, inputs, generator=g, dtype=dtype)
    if ties:
        t_in = (t_in * 4).floor() / 4
    t_in[torch.rand(batch, inputs, generator=g) < silent] = INF
    weight = torch.randn(neurons, inputs, generator=g, dtype=dtype) * 0.9 + 0.35
    return t_in, weight


def euler_first_spikes(t_in, weight, theta, t_max, dt=1e-5):
    """Time-stepped reference: dv/dt = Σ_j w_ij H(t − t_j), forward Euler with step dt; first v ≥ ϑ."""
    grid = torch.arange(0.0, t_max + dt / 2, dt, dtype=D)
    out = torch.full((t_in.shape[0], weight.shape[0]), INF, dtype=D)
    for b in range(t_in.shape[0]):
        arrived = (t_in[b][None, :] <= grid[:, None]).to(D)  # [G, N]
        current = arrived @ weight.t()  # [G, M]
        v = torch.cumsum(current * dt, 0) - current * dt  # v(grid[k]) = Σ_{m<k} I_m dt
        above = v >= theta
        hit = above.any(0)
        first = above.to(torch.uint8).argmax(0)
        out[b] = torch.where(hit, grid[first], out[b])
    return out


def candidate_rule(t_in, weight, theta, t_max):
    """fastAndDeep-style rule: one candidate per prefix of the sorted inputs, keep those inside their
    segment, take the earliest."""
    out = torch.full((t_in.shape[0], weight.shape[0]), INF, dtype=D)
    for b in range(t_in.shape[0]):
        times = t_in[b]
        idx = [j for j in torch.argsort(times, stable=True).tolist() if times[j] <= t_max]
        for i in range(weight.shape[0]):
            s = p = 0.0
            for k, j in enumerate(idx):
                s += float(weight[i, j])
                p += float(weight[i, j] * times[j])
                if s <= 0:
                    continue
                cand = (theta + p) / s
                right = min(float(times[idx[k + 1]]) if k + 1 < len(idx) else t_max, t_max)
                if float(times[j]) <= cand <= right:
                    out[b, i] = cand
                    break
    return out


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True)])
def test_spike_times_match_time_stepped_simulation(seed, ties):
    t_in, weight = random_layer(seed=seed, ties=ties)
    weight[0] = -weight[0].abs()  # an inhibitory-only neuron: must stay silent
    stepped = euler_first_spikes(t_in, weight, 1.0, 2.0)
    for backend in BACKENDS:
        out = ttfs_dense(t_in, weight, 1.0, 2.0, backend=backend)
        assert torch.equal(out.fired, torch.isfinite(stepped)), backend
        assert not out.fired[:, 0].any()
        assert out.fired.any() and (~out.fired).any()
        fired = out.fired
        assert (out.times[fired] - stepped[fired]).abs().max() < 1e-4, backend


def test_first_crossing_rule_equals_candidate_rule_on_300_trials():
    mismatches = 0
    for trial in range(300):
        t_in, weight = random_layer(batch=1, inputs=6, neurons=4, seed=100 + trial, ties=trial % 3 == 0)
        out = ttfs_dense(t_in, weight, 1.0, 2.0, backend="torch")
        cand = candidate_rule(t_in, weight, 1.0, 2.0)
        same_pattern = torch.equal(out.fired, torch.isfinite(cand))
        close = same_pattern and torch.allclose(out.times[out.fired], cand[out.fired], atol=1e-12)
        mismatches += not close
    assert mismatches == 0


@pytest.mark.parametrize("dtype", [torch.float32, D])
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
def test_backends_agree_with_reference(backend, dtype):
    t_in, weight = random_layer(batch=6, inputs=30, neurons=9, dtype=dtype, seed=5)
    theta = torch.linspace(0.6, 1.4, 9, dtype=dtype)
    results = {}
    for name in ("reference", backend):
        ti, w, th = (t.clone().requires_grad_() for t in (t_in, weight, theta))
        kwargs = {"chunk_size": 4} if name == "torch" else {}
        out = ttfs_dense(ti, w, th, 2.0, backend=name, **kwargs)
        finite_t = torch.where(out.fired, out.times, torch.zeros_like(out.times))
        torch.manual_seed(0)
        loss = (finite_t * torch.randn_like(finite_t)).sum() + (out.slope * 0.3 - out.offset * 0.2).sum()
        loss.backward()
        results[name] = (out, ti.grad, w.grad, th.grad)
    ref, got = results["reference"], results[backend]
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.equal(ref[0].fired, got[0].fired)
    assert torch.equal(ref[0].causal.last, got[0].causal.last)
    assert torch.equal(ref[0].causal.rank, got[0].causal.rank)
    for a, b in zip(ref[0][:3], got[0][:3]):
        assert torch.allclose(a, b, atol=tol, rtol=tol, equal_nan=False) or torch.equal(a, b)
    for a, b in zip(ref[1:], got[1:]):
        assert torch.allclose(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_equal_finite_differences(backend):
    t_in, weight = random_layer(batch=3, inputs=6, neurons=4, seed=11)
    theta = torch.tensor([0.8, 1.0, 1.2, 0.9], dtype=D)
    fired = ttfs_dense(t_in, weight, theta, 2.0).fired

    def f(t, w, th):
        out = ttfs_dense(t, w, th, 2.0, backend=backend)
        assert torch.equal(out.fired, fired)  # the perturbation must not change the firing pattern
        return torch.where(out.fired, out.times, torch.zeros_like(out.times)), out.slope, out.offset

    finite = torch.where(torch.isfinite(t_in), t_in, torch.full_like(t_in, 5.0))  # beyond t_max: never causal
    args = (finite.requires_grad_(), weight.clone().requires_grad_(), theta.clone().requires_grad_())
    assert torch.autograd.gradcheck(f, args, eps=1e-7, atol=1e-7)


def test_gradients_are_the_closed_forms():
    t_in, weight = random_layer(batch=2, inputs=6, neurons=3, seed=21)
    ti, w, th = t_in.clone().requires_grad_(), weight.clone().requires_grad_(), torch.tensor(1.0, dtype=D, requires_grad=True)
    out = ttfs_dense(ti, w, th, 2.0)
    b, i = (out.fired).nonzero()[0].tolist()
    gt, gw, gth = torch.autograd.grad(out.times[b, i], (ti, w, th))
    causal = out.causal.rank[b] <= out.causal.last[b, i]
    t_i, s_i = out.times[b, i].detach(), out.slope[b, i].detach()
    expected_w = torch.where(causal, (t_in[b] - t_i) / s_i, torch.zeros(()))
    expected_t = torch.where(causal, weight[i] / s_i, torch.zeros(()))
    assert torch.allclose(gw[i], expected_w) and torch.allclose(gt[b], expected_t)
    assert gw[torch.arange(3) != i].abs().sum() == 0 and gt[1 - b].abs().sum() == 0
    assert torch.isclose(gth, 1 / s_i)
    assert (gw[i] <= 0).all()  # a larger weight gives an earlier spike


@pytest.mark.parametrize("backend", BACKENDS)
def test_overshoot_identity_and_silent_neurons(backend):
    t_in, weight = random_layer(batch=5, inputs=8, neurons=6, seed=31)
    out = ttfs_dense(t_in, weight, 1.0, 2.0, backend=backend)
    fired = out.fired
    overshoot = out.slope * 2.0 - out.offset - 1.0
    assert torch.allclose(overshoot[fired], (out.slope * (2.0 - out.times))[fired])
    assert (overshoot[fired] >= -1e-12).all()
    # silent neurons: the full window potential stays below threshold, and equals S·T − P
    assert (~fired).any()
    free = free_potential(t_in, weight, 2.0)
    assert (free[~fired] < 1.0).all()
    assert torch.allclose(free[~fired], (out.slope * 2.0 - out.offset)[~fired])


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_nan_with_silent_inputs_and_outputs(backend):
    t_in = torch.full((3, 5), INF, dtype=D)
    t_in[1, 2] = 0.3  # one input in one sample
    weight = torch.rand(4, 5, dtype=D) * 0.2  # too weak to fire anywhere
    weight[3, 2] = 5.0  # except this neuron on sample 1
    ti, w = t_in.clone().requires_grad_(), weight.clone().requires_grad_()
    out = ttfs_dense(ti, w, 1.0, 2.0, backend=backend)
    assert out.fired.sum() == 1 and out.fired[1, 3]
    assert math.isclose(out.times[1, 3].item(), 0.3 + 1.0 / 5.0)
    assert torch.isinf(out.times[~out.fired]).all()
    loss = torch.where(out.fired, out.times, torch.zeros_like(out.times)).sum() + out.slope.sum() + out.offset.sum()
    loss.backward()
    assert torch.isfinite(ti.grad).all() and torch.isfinite(w.grad).all()
    assert ti.grad[0].abs().sum() == 0 and ti.grad[1, [0, 1, 3, 4]].abs().sum() == 0
    empty = ttfs_dense(torch.full((2, 5), INF, dtype=D), weight, 1.0, 2.0, backend=backend)
    assert not empty.fired.any() and (empty.causal.last == -1).all() and (empty.slope == 0).all()


def test_inputs_after_the_window_are_ignored():
    t_in = torch.tensor([[0.1, 1.5, 3.0]], dtype=D)
    weight = torch.tensor([[0.5, 10.0, 10.0]], dtype=D)
    out = ttfs_dense(t_in, weight, 1.0, 1.0)
    assert not out.fired.any() and out.count.item() == 1  # only the first input is inside [0, 1]
    out = ttfs_dense(t_in, weight, 1.0, 2.0)
    assert out.fired.item() and math.isclose(out.times.item(), (1.0 + 0.05 + 15.0) / 10.5)


def test_window_mode_agrees_with_sorted_mode_when_layer_synchronous():
    t_in, weight = random_layer(batch=6, inputs=10, neurons=8, seed=41)  # inputs in [0, 1]
    sorted_out = ttfs_dense(t_in, weight, 1.0, 2.0)
    window_out = ttfs_dense_window(t_in, weight, 1.0, 1.0, 2.0)
    late = sorted_out.fired & (sorted_out.times >= 1.0)
    early = sorted_out.fired & (sorted_out.times < 1.0)
    assert late.any() and early.any()
    assert torch.allclose(window_out.times[late], sorted_out.times[late])
    assert (window_out.times[early] == 1.0).all()  # already above threshold at the window start
    assert torch.equal(window_out.fired, sorted_out.fired)


def test_window_mode_gradients():
    t_in, weight = random_layer(batch=3, inputs=6, neurons=4, seed=43)
    finite = torch.where(torch.isfinite(t_in), t_in, torch.full_like(t_in, INF))

    def f(w, th):
        out = ttfs_dense_window(finite, w, th, 1.0, 2.0)
        return torch.where(out.fired, out.times, torch.zeros_like(out.times)), out.slope, out.offset

    args = (weight.clone().requires_grad_(), torch.tensor(0.9, dtype=D, requires_grad=True))
    assert torch.autograd.gradcheck(f, args, eps=1e-7, atol=1e-7)


def test_causal_sums_of_other_values_and_their_gradients():
    t_in, weight = random_layer(batch=3, inputs=6, neurons=4, seed=51)
    out = ttfs_dense(t_in, weight, 1.0, 2.0)
    values = torch.rand(4, 6, dtype=D)
    mask = (out.causal.rank[:, None, :] <= out.causal.last[:, :, None]).to(D)
    t0 = torch.where(torch.isfinite(t_in), t_in, torch.zeros(()))
    for backend in [b for b in BACKENDS if b != "reference"]:
        a, b = causal_sums(t_in, values, out.causal, backend=backend)
        assert torch.allclose(a, torch.einsum("bin,in->bi", mask, values))
        assert torch.allclose(b, torch.einsum("bin,in,bn->bi", mask, values, t0))
    finite = torch.where(torch.isfinite(t_in), t_in, torch.full_like(t_in, 9.0))  # rank marks them non-causal
    for backend in [b for b in BACKENDS if b != "reference"]:
        check = lambda t, v: causal_sums(t, v, out.causal, backend=backend)  # noqa: E731
        assert torch.autograd.gradcheck(check, (finite.clone().requires_grad_(), values.requires_grad_()))


def test_spike_time_stabilisers_act_on_the_backward_only():
    slope = torch.tensor([[1e-4, 2.0, 0.5]], dtype=D, requires_grad=True)
    offset = torch.tensor([[0.0, 1.0, 0.2]], dtype=D, requires_grad=True)
    fired = torch.tensor([[True, True, False]])
    theta = torch.tensor(1.0, dtype=D)
    plain = spike_time(theta, slope, offset, fired)
    floored = spike_time(theta, slope, offset, fired, slope_floor=0.1)
    assert torch.equal(plain, floored) and torch.isinf(plain[0, 2])
    g_plain = torch.autograd.grad(plain[0, :2].sum(), offset)[0]
    g_floor = torch.autograd.grad(floored[0, :2].sum(), offset)[0]
    assert torch.allclose(g_plain, torch.tensor([[1e4, 0.5, 0.0]], dtype=D))
    assert torch.allclose(g_floor, torch.tensor([[10.0, 0.5, 0.0]], dtype=D))
    counter = ChopCounter()
    chopped = spike_time(theta, slope, offset, fired, max_dw=1.0, t_first=torch.zeros(1, dtype=D), counter=counter)
    g_chop = torch.autograd.grad(chopped[0, :2].sum(), offset)[0]
    # neuron 0: |g|·(t − 0)/S = 1e4·1e4 > 1 → chopped; neuron 1: 1·1/2 = 0.5 → kept
    assert torch.allclose(g_chop, torch.tensor([[0.0, 0.5, 0.0]], dtype=D)) and counter.count == 1
    with pytest.raises(ValueError, match="t_first"):
        spike_time(theta, slope, offset, fired, max_dw=1.0)


def test_encode_and_decode_conventions():
    x = torch.tensor([[0.0, 0.25, 1.0]])
    assert torch.equal(ttfs_encode(x), torch.tensor([[INF, 0.75, 0.0]]))
    assert torch.equal(ttfs_encode(x, 2.0, silent_zero=False, offset=1.0), torch.tensor([[3.0, 2.5, 1.0]]))
    times = torch.tensor([[0.5, 0.2, 0.2], [INF, INF, INF], [INF, 1.0, INF]])
    prediction, spiked = ttfs_decode(times)
    assert prediction[0] == 1 and prediction[2] == 1  # ties → lowest index
    assert spiked.tolist() == [True, False, True]
    for bad in (torch.tensor([[1.5]]), torch.tensor([[-0.1]]), torch.tensor([[math.nan]])):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            ttfs_encode(bad)
    with pytest.raises(ValueError, match="floating-point"):
        ttfs_encode(torch.tensor([[1]]))


def test_bad_arguments_raise_clear_errors():
    t_in, weight = random_layer()
    with pytest.raises(ValueError, match=r"\[B, 7\]"):
        ttfs_dense(t_in[:, :3], weight)
    with pytest.raises(ValueError, match="NaN"):
        ttfs_dense(torch.full_like(t_in, math.nan), weight)
    with pytest.raises(ValueError, match="-inf"):
        ttfs_dense(torch.full_like(t_in, -INF), weight)
    with pytest.raises(ValueError, match="> 0"):
        ttfs_dense(t_in, weight, 0.0)
    with pytest.raises(ValueError, match="unknown TTFS backend"):
        ttfs_dense(t_in, weight, backend="cuda-magic")
    with pytest.raises(ValueError, match="dtype"):
        ttfs_dense(t_in.float(), weight)
    with pytest.raises(ValueError, match="t_end > t_start"):
        ttfs_dense_window(t_in, weight, 1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="threshold must be a scalar"):
        ttfs_dense(t_in, weight, torch.ones(3, dtype=D))


def test_reference_and_window_outputs_describe_their_causal_sets():
    t_in, weight = random_layer(seed=61)
    ref = ttfs_dense_reference(t_in, weight, 1.0, 2.0)
    assert isinstance(ref.causal, CausalSet) and torch.equal(ref.count, ref.causal.last + 1)
    window = ttfs_dense_window(t_in, weight, 1.0, 1.0, 2.0)
    assert window.causal.rank is None
    assert torch.equal(window.count[:, 0], torch.isfinite(t_in).sum(1))


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
@pytest.mark.parametrize("threads", [1, 3])
def test_numba_results_do_not_depend_on_the_thread_count(threads):
    t_in, weight = random_layer(batch=7, inputs=40, neurons=50, dtype=torch.float32, seed=71)
    previous = torch.get_num_threads()
    results = []
    try:
        for count in (threads, 1):
            torch.set_num_threads(count)
            ti, w = t_in.clone().requires_grad_(), weight.clone().requires_grad_()
            out = ttfs_dense(ti, w, 1.0, 2.0, backend="numba")
            a, b = causal_sums(ti, w.clamp(min=0), out.causal, backend="numba")
            finite_t = torch.where(out.fired, out.times, torch.zeros_like(out.times))
            (finite_t.sum() + out.slope.sum() * 0.5 + a.sum() - b.sum()).backward()
            results.append((out.times, a, b, ti.grad, w.grad))
    finally:
        torch.set_num_threads(previous)
    for x, y in zip(*results):
        assert torch.allclose(x, y, atol=1e-5, rtol=1e-5) or torch.equal(x, y)
    reference = ttfs_dense(t_in, weight, 1.0, 2.0, backend="reference")
    assert torch.equal(reference.fired, torch.isfinite(results[0][0]))
