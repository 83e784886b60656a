import math

import pytest
import torch

from spikescale.functional.ttfs import ttfs_dense, ttfs_dense_window
from spikescale.nn.ttfs import TTFSDense, TTFSNetwork


def test_dense_layer_wraps_the_functional_modes():
    layer = TTFSDense(6, 4, threshold=0.8, t_max=2.0, weight_mean=2.0)
    t_in = torch.rand(3, 6)
    out = layer(t_in)
    assert layer.weight.shape == (6, 4)  # input-major
    expected = ttfs_dense(t_in, layer.weight.t(), 0.8, 2.0)
    assert torch.equal(out.times, expected.times) and out.times.shape == (3, 4)
    window = TTFSDense(6, 4, mode="window", t_start=1.0, t_max=2.0, weight_mean=2.0)
    assert torch.equal(window(t_in).times, ttfs_dense_window(t_in, window.weight.t(), 1.0, 1.0, 2.0).times)
    assert "window=[1, 2]" in repr(window)


def test_learnable_threshold_gets_gradients():
    layer = TTFSDense(6, 4, learn_threshold=True, weight_mean=3.0)
    assert isinstance(layer.threshold, torch.nn.Parameter) and layer.threshold.shape == (4,)
    out = layer(torch.rand(5, 6))
    torch.where(out.fired, out.times, torch.zeros_like(out.times)).sum().backward()
    assert layer.threshold.grad is not None and (layer.threshold.grad > 0).any()
    assert "threshold" not in dict(TTFSDense(6, 4).named_parameters())


def test_stabilisers_reach_the_backward_pass():
    torch.manual_seed(0)
    layer = TTFSDense(6, 4, weight_mean=3.0, max_dw=1e-6, slope_floor=0.5)
    out = layer(torch.rand(5, 6))
    torch.where(out.fired, out.times, torch.zeros_like(out.times)).sum().backward()
    assert layer.chopped.count == int(out.fired.sum()) > 0  # every firing neuron chopped at this tiny max_dw
    assert layer.weight.grad.abs().sum() == 0


def test_initialisation_scales_with_fan_in():
    torch.manual_seed(0)
    layer = TTFSDense(400, 300, weight_mean=2.0, weight_std=1.0)
    assert math.isclose(layer.weight.mean().item(), 2.0 / 400, rel_tol=0.1)
    assert math.isclose(layer.weight.std().item(), 1.0 / 20, rel_tol=0.05)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(threshold=0.0), "threshold"),
        (dict(mode="leaky"), "mode"),
        (dict(backend="gpu"), "backend"),
        (dict(t_max=math.inf), "t_max"),
        (dict(mode="window", t_start=2.0, t_max=1.0), "t_max"),
        (dict(max_dw=0.0), "max_dw"),
    ],
)
def test_dense_layer_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TTFSDense(3, 2, **kwargs)


def test_dense_layer_checks_input_shape():
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        TTFSDense(3, 2)(torch.rand(4, 5))


def test_network_global_and_layer_windows():
    net = TTFSNetwork([5, 4, 3], tau_in=0.5)
    assert [layer.t_max for layer in net.layers] == [1.5, 1.5]  # (L + 1)·τ_in
    per_layer = TTFSNetwork([5, 4, 3], t_max=[1.0, 3.0])
    assert [layer.t_max for layer in per_layer.layers] == [1.0, 3.0]
    sync = TTFSNetwork([5, 4, 4, 3], window="layer")
    assert [(layer.t_start, layer.t_max) for layer in sync.layers] == [(1.0, 2.0), (2.0, 3.0), (3.0, 4.0)]
    assert all(layer.mode == "window" for layer in sync.layers)
    with pytest.raises(ValueError, match="t_max applies"):
        TTFSNetwork([5, 3], window="layer", t_max=2.0)
    with pytest.raises(ValueError, match="one value per layer"):
        TTFSNetwork([5, 4, 3], t_max=[1.0])
    with pytest.raises(ValueError, match="window"):
        TTFSNetwork([5, 3], window="per-neuron")


def test_network_forward_encodes_runs_and_decodes():
    torch.manual_seed(0)
    net = TTFSNetwork([6, 5, 3], weight_mean=3.0)
    x = torch.rand(4, 6)
    x[0, :3] = 0.0
    out = net(x)
    assert torch.isinf(out.inputs[0, :3]).all() and torch.allclose(out.inputs[1], 1 - x[1])
    assert len(out.traces) == 2 and out.times.shape == (4, 3)
    assert out.traces[1].inputs is out.traces[0].output.times
    assert out.traces[0].t_end == 3.0 and out.traces[0].t_start == 0.0
    prediction, spiked = net.predict(x)
    assert torch.equal(prediction, out.times.argmin(1))
    assert torch.equal(spiked, torch.isfinite(out.times).any(1))
    loud = TTFSNetwork([6, 5, 3], silent_zero=False)
    assert torch.isfinite(loud.encode(x)).all()
    with pytest.raises(ValueError, match=r"\[B, 6\]"):
        net(torch.rand(4, 7))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        net(torch.rand(4, 6) * 2)


def test_weight_bumping_revives_silent_neurons_after_the_optimiser_step():
    torch.manual_seed(0)
    net = TTFSNetwork([6, 5, 3], weight_mean=-4.0, weight_std=0.1, bump={"max_silent": [0.1, 0.1], "amount": 0.01})
    x = torch.rand(8, 6)
    before = [layer.weight.detach().clone() for layer in net.layers]
    net.train()
    net(x)
    assert net.layers[0].weight.equal(before[0])  # nothing changes during the forward pass
    net.after_optimizer_step()
    assert torch.allclose(net.layers[0].weight, before[0] + 0.01)  # every hidden neuron was silent
    net(x)
    net.after_optimizer_step()
    assert torch.allclose(net.layers[0].weight, before[0] + 0.03)  # consecutive bump doubles
    net.eval()
    net(x)
    net.after_optimizer_step()
    assert torch.allclose(net.layers[0].weight, before[0] + 0.03)  # evaluation never bumps
    with pytest.raises(ValueError, match="unknown bump option"):
        TTFSNetwork([6, 3], bump={"fraction": 0.1})
