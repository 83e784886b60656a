import math

import pytest
import torch

from spikescale.functional.ttfs import LayerTrace, ttfs_dense, ttfs_dense_window
from spikescale.train.ssr import (
    REGULARISERS,
    Regulariser,
    f_ssr,
    f_ssr_all_inputs,
    f_ssr_time_only,
    integral_excess,
    l2,
    m_ssr,
    mp_integral,
    mp_ref,
)

D = torch.float64
INF = math.inf
T = 2.0


def make_trace(seed=0, batch=4, inputs=8, neurons=5, window=False, theta=1.0):
    g = torch.Generator().manual_seed(seed)
    t_in = torch.rand(batch, inputs, generator=g, dtype=D)
    t_in[torch.rand(batch, inputs, generator=g) < 0.2] = INF
    weight = (torch.randn(neurons, inputs, generator=g, dtype=D) * 0.8 + 0.4).requires_grad_()
    t_in.requires_grad_()
    threshold = torch.tensor(theta, dtype=D, requires_grad=True)
    if window:
        out = ttfs_dense_window(t_in, weight, threshold, 1.0, T)
    else:
        out = ttfs_dense(t_in, weight, threshold, T)
    return LayerTrace(t_in, out, weight, threshold, 1.0 if window else 0.0, T, "torch")


def grads(value, trace):
    return torch.autograd.grad(value, (trace.inputs, trace.weight, trace.threshold), allow_unused=True, retain_graph=True)


def causal_mask(trace):
    causal = trace.output.causal
    return causal.rank[:, None, :] <= causal.last[:, :, None]  # [B, M, N]


def t0(trace):
    t = trace.inputs.detach()
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def test_m_ssr_value_and_closed_form_gradients():
    trace = make_trace()
    out = trace.output
    value = m_ssr(trace)
    fired = out.fired
    assert fired.any() and (~fired).any()
    assert torch.allclose(value[fired], (out.slope * (T - out.times))[fired])
    assert (value[~fired] == 0).all()
    b, i = fired.nonzero()[0].tolist()
    g_t, g_w, g_th = grads(value[b, i], trace)
    mask = causal_mask(trace)[b, i]
    assert torch.allclose(g_w[i], torch.where(mask, T - t0(trace)[b], torch.zeros(()).to(D)))
    assert torch.allclose(g_t[b], torch.where(mask, -trace.weight.detach()[i], torch.zeros(()).to(D)))
    assert g_th.item() == pytest.approx(-1.0)
    # gradients of the whole penalty are bounded by the window (no 1/S factor)
    g_t, g_w, _ = grads(m_ssr(trace).sum(), trace)
    assert g_w.abs().max() <= T * trace.inputs.shape[0] + 1e-12


def test_m_ssr_squared_multiplies_by_the_overshoot():
    trace = make_trace(seed=1)
    fired = trace.output.fired
    b, i = fired.nonzero()[0].tolist()
    u = m_ssr(trace)[b, i].detach()
    g_lin = grads(m_ssr(trace)[b, i], trace)[1]
    g_sq = grads(m_ssr(trace, "squared")[b, i], trace)[1]
    assert torch.allclose(g_sq, u * g_lin)
    assert m_ssr(trace, "squared")[b, i].item() == pytest.approx(0.5 * u.item() ** 2)


def test_f_ssr_closed_form_gradients():
    trace = make_trace(seed=2)
    value = f_ssr(trace)
    fired = trace.output.fired
    w = trace.weight.detach()
    mask = causal_mask(trace)
    upper = torch.einsum("bin,in,bn->bi", mask.to(D), w.clamp(min=0), T - t0(trace))
    assert torch.allclose(value, torch.where(fired, (upper - 1.0).clamp(min=0), torch.zeros(()).to(D)))
    b, i = (fired & (upper > 1.0)).nonzero()[0].tolist()
    g_t, g_w, g_th = grads(value[b, i], trace)
    active = mask[b, i] & (w[i] > 0)
    assert torch.allclose(g_w[i], torch.where(active, T - t0(trace)[b], torch.zeros(()).to(D)))
    assert torch.allclose(g_t[b], torch.where(mask[b, i], -w[i].clamp(min=0), torch.zeros(()).to(D)))
    assert g_th.item() == pytest.approx(-1.0)
    no_offset = f_ssr(trace, offset=False)
    assert torch.allclose(no_offset[fired], upper[fired])
    # U bounds the causal overshoot: f_ssr ≥ m_ssr neuron by neuron
    assert (value >= m_ssr(trace) - 1e-12).all()


def test_f_ssr_all_inputs_and_time_only():
    trace = make_trace(seed=3)
    w = trace.weight.detach()
    lag = (T - trace.inputs.detach()).clamp(min=0)
    upper = lag @ w.clamp(min=0).t()
    value = f_ssr_all_inputs(trace)
    assert torch.allclose(value, (upper - 1.0).clamp(min=0))
    b, i = ((upper > 1.0) & ~trace.output.fired).nonzero()[0].tolist()  # acts on a silent neuron too
    g_t, g_w, _ = grads(value[b, i], trace)
    assert torch.allclose(g_w[i], lag[b] * (w[i] > 0))
    assert torch.allclose(g_t[b], -w[i].clamp(min=0) * torch.isfinite(trace.inputs[b]))
    times = f_ssr_time_only(trace)
    out = trace.output
    assert torch.allclose(times[out.fired], (T - out.times)[out.fired]) and (times[~out.fired] == 0).all()
    b, i = out.fired.nonzero()[0].tolist()
    g_w = grads(times[b, i], trace)[1]
    mask = causal_mask(trace)[b, i]
    expected = torch.where(mask, (out.times[b, i] - t0(trace)[b]) / out.slope[b, i], torch.zeros(()).to(D))
    assert torch.allclose(g_w[i], expected.detach())


def test_mp_ref_closed_form_and_limit_equals_m_ssr():
    trace = make_trace(seed=4)
    w = trace.weight.detach()
    lag = (T - trace.inputs.detach()).clamp(min=0)
    value = mp_ref(trace, v_ref=0.5)
    assert torch.allclose(value, (lag @ w.t() - 0.5).clamp(min=0))
    b, i = (value > 0).nonzero()[0].tolist()
    assert torch.allclose(grads(value[b, i], trace)[1][i], lag[b])
    # Limit: with every input causal (layer-synchronous window), mp_ref at v̂ = ϑ equals m_ssr and
    # silent neurons contribute nothing.
    sync = make_trace(seed=5, window=True)
    assert torch.allclose(mp_ref(sync), m_ssr(sync))
    assert (mp_ref(sync)[~sync.output.fired] == 0).all()
    assert (mp_ref(sync, v_ref=0.5)[~sync.output.fired] > 0).any()  # a lower v̂ also hits silent neurons


def brute_integral(t_in, weight, v_hat, t_end, steps=200001):
    grid = torch.linspace(0, t_end, steps, dtype=D)
    lag = (grid[:, None, None] - t_in[None]).clamp(min=0)  # [G, B, N]
    excess = (lag @ weight.t() - v_hat).clamp(min=0)  # [G, B, M]
    return torch.trapezoid(excess, grid, dim=0)


def test_mp_integral_matches_numerical_integration_and_finite_differences():
    trace = make_trace(seed=6, batch=2, inputs=5, neurons=3)
    value = mp_integral(trace, v_ref=0.3)
    expected = brute_integral(trace.inputs.detach(), trace.weight.detach(), 0.3, T)
    assert torch.allclose(value, expected, atol=1e-6)
    assert torch.allclose(mp_integral(trace), brute_integral(trace.inputs.detach(), trace.weight.detach(), 1.0, T), atol=1e-6)
    finite = torch.where(torch.isfinite(trace.inputs), trace.inputs, torch.full_like(trace.inputs, 9.0)).detach()
    check = lambda t, w: integral_excess(t, w, 0.3, T, chunk=2)  # noqa: E731
    assert torch.autograd.gradcheck(check, (finite.requires_grad_(), trace.weight.detach().clone().requires_grad_()))
    with pytest.raises(ValueError, match=">= 0"):
        integral_excess(finite, trace.weight, -0.1, T)


def test_l2_is_half_the_squared_norm():
    trace = make_trace(seed=7)
    assert l2(trace).item() == pytest.approx(0.5 * (trace.weight.detach() ** 2).sum().item())


def test_regulariser_reductions_strengths_and_output_exclusion():
    traces = [make_trace(seed=8, neurons=5), make_trace(seed=9, neurons=5)]
    per_layer = [m_ssr(t).detach() for t in traces]
    batch = traces[0].inputs.shape[0]
    reg = Regulariser("m_ssr", gamma=0.5)
    value = reg(traces)
    assert value.loss.item() == pytest.approx(0.5 * per_layer[0].sum(1).mean().item())
    assert value.batch_sum.item() == pytest.approx(per_layer[0].sum().item())
    both = Regulariser("m_ssr", gamma=[0.5, 2.0], exclude_output=False, reduction="mean", batch_reduction="sum")
    expected = 0.5 * per_layer[0].mean(1).sum() + 2.0 * per_layer[1].mean(1).sum()
    assert both(traces).loss.item() == pytest.approx(expected.item())
    assert both(traces).batch_sum.item() == pytest.approx((per_layer[0].mean(1) + per_layer[1].mean(1)).sum().item())
    assert Regulariser("l2", gamma=1.0)(traces).batch_sum.item() == pytest.approx(batch * l2(traces[0]).item())
    with pytest.raises(ValueError, match="2 layers"):
        Regulariser("m_ssr", gamma=[1.0, 1.0, 1.0])(traces)


@pytest.mark.parametrize("name", sorted(REGULARISERS))
def test_every_regulariser_runs_without_nan_on_silent_layers(name):
    trace = make_trace(seed=10)
    silent = LayerTrace(
        torch.full_like(trace.inputs.detach(), INF).requires_grad_(), *trace[1:]
    )
    silent_out = ttfs_dense(silent.inputs, trace.weight, trace.threshold, T)
    silent = silent._replace(output=silent_out)
    reg = Regulariser(name, gamma=1.0, exclude_output=False)
    for layer in (trace, silent):
        value = reg([layer]).loss
        assert torch.isfinite(value)
        g = torch.autograd.grad(value, (layer.inputs, layer.weight), allow_unused=True)
        assert all(x is None or torch.isfinite(x).all() for x in g)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(name="sparsity"), "unknown regulariser"),
        (dict(name="m_ssr", rho="cubic"), "rho"),
        (dict(name="mp_integral", rho="squared"), "does not apply"),
        (dict(name="m_ssr", v_ref=0.5), "v_ref applies"),
        (dict(name="m_ssr", offset=False), "offset applies"),
        (dict(name="m_ssr", gamma=-1.0), "gamma"),
        (dict(name="m_ssr", reduction="max"), "reduction"),
        (dict(name="mp_integral", v_ref=-0.5), ">= 0"),
    ],
)
def test_regulariser_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Regulariser(**kwargs)
