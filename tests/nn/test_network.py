import pytest
import torch

from spikescale.nn import DHDense, LIFDense, Network, Readout, SpikeMonitor, build_network


def test_network_step_equals_sequence():
    model = build_network("dh_srnn", 6, [5, 4], 3, branches=2).double()
    x = (torch.rand(12, 2, 6, dtype=torch.float64) < 0.5).double()
    out, final = model(x)
    state = None
    for t in range(12):
        o, state = model.step(x[t], state)
        assert torch.allclose(o, out[t], atol=1e-12)


def test_widths_must_chain():
    with pytest.raises(ValueError, match="gives 5 features but Readout expects 4"):
        Network([LIFDense(3, 5)], Readout(4, 2))


def test_builder_errors():
    with pytest.raises(ValueError, match="unknown model kind 'lstm'"):
        build_network("lstm", 3, [4], 2)
    with pytest.raises(ValueError, match="apply to dendritic layers"):
        build_network("sfnn", 3, [4], 2, branches=2)
    with pytest.raises(ValueError, match="non-empty list"):
        build_network("sfnn", 3, [], 2)


def test_monitor_counts_spikes_and_synops():
    layer = LIFDense(4, 3)
    with torch.no_grad():
        layer.linear.weight.fill_(1.0)
        layer.linear.bias.zero_()
    model = Network([layer], Readout(3, 2))
    x = torch.zeros(10, 2, 4)
    x[0, 0, 0] = 1.0  # one input event
    x[5, 1, :] = 1.0  # four input events
    with SpikeMonitor(model) as monitor:
        spikes, _ = layer(x)
        model(x)
    stats = monitor.summary()
    # The monitor saw the layer twice (direct call and inside the model): 4 samples.
    assert stats["layers.0"]["synops_per_sample"] == pytest.approx(2 * 5 * 3 / 4)
    expected_spikes = 2 * spikes.sum().item()
    assert stats["layers.0"]["spikes_per_neuron"] == pytest.approx(expected_spikes / (3 * 4))
    assert stats["layers.0"]["firing_rate"] == pytest.approx(expected_spikes / (3 * 4 * 10))
    assert "spikes_per_neuron" not in stats["readout"]


def test_monitor_dh_synops_equal_vanilla():
    torch.manual_seed(0)
    x = (torch.rand(20, 3, 16) < 0.2).float()
    counts = []
    for layer in (LIFDense(16, 8), DHDense(16, 8, branches=4)):
        with SpikeMonitor(layer) as monitor:
            layer(x)
        counts.append(monitor.summary()[type(layer).__name__]["synops_per_sample"])
    assert counts[0] == counts[1] == pytest.approx(x.sum().item() * 8 / 3)


def test_monitor_ignores_padded_steps():
    layer = LIFDense(2, 2)
    x = torch.ones(10, 2, 2)
    with SpikeMonitor(layer) as monitor:
        monitor.set_lengths(torch.tensor([10, 5]))
        layer(x)
    assert monitor.summary()["LIFDense"]["synops_per_sample"] == pytest.approx((20 + 10) * 2 / 2)
