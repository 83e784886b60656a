import math

import pytest
import torch

from spikescale.functional import delay_kernels
from spikescale.functional import delays as fd
from spikescale.functional.lif import lif_sequence
from spikescale.nn.delays import DelayBlockState
from spikescale.nn import (
    DelayBlock,
    DelayedDense,
    DelayReadout,
    SigmaSchedule,
    SpikeMonitor,
    build_delay_network,
    build_network,
    clamp_positions_,
    count_parameters,
    export_delays,
    param_groups,
    set_eval_delays,
)

D = torch.float64

LAYERS = {
    "synaptic": dict(),
    "synaptic_q2_same": dict(delays_per_synapse=2, length="same"),
    "linear": dict(interpolation="linear"),
    "axonal": dict(kind="axonal"),
    "dendritic": dict(kind="dendritic"),
    "fixed": dict(delays="fixed"),
    "dense": dict(delays="dense"),
    "none": dict(delays="none"),
}


def _spikes(steps, batch, channels, rate=0.3):
    return (torch.rand(steps, batch, channels) < rate).to(D)


# -- the delay layer -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_equals_its_dense_kernel_conv_and_its_steps(name):
    layer = DelayedDense(6, 4, 7, sigma=0.8, **LAYERS[name]).double()
    x = _spikes(10, 3, 6)
    y, state = layer(x)
    assert y.shape == (layer.output_steps(10), 3, 4)
    if layer.mode != "none":
        ref, _ = fd.kernel_conv(x, layer.kernel(), length=layer.length, method="dense")
        assert torch.allclose(y, ref, atol=1e-12)
    xs = torch.cat([x, x.new_zeros(y.shape[0] - 10, 3, 6)])
    step_state = None
    for t in range(xs.shape[0]):
        y_t, step_state = layer.step(xs[t], step_state)
        assert torch.allclose(y_t, y[t], atol=1e-12)
    if state is not None:
        assert torch.equal(step_state.history(), state.history())


def test_axonal_and_dendritic_are_synaptic_with_shared_positions():
    x = _spikes(12, 2, 5)
    for kind, expand in (("axonal", lambda p: p.expand(3, 5)), ("dendritic", lambda p: p[:, None].expand(3, 5))):
        line = DelayedDense(5, 3, 9, kind=kind, sigma=0.5).double()
        synaptic = DelayedDense(5, 3, 9, sigma=0.5).double()
        with torch.no_grad():
            synaptic.weight.copy_(line.weight.unsqueeze(-1))
            synaptic.positions.copy_(expand(line.positions).unsqueeze(-1))
        assert torch.allclose(line(x)[0], synaptic(x)[0], atol=1e-12)


def test_eval_uses_integer_delays_without_touching_the_parameters():
    layer = DelayedDense(6, 4, 9, sigma=0.23).double()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = _spikes(20, 3, 6)
    trained, _ = layer(x)
    layer.eval()
    assert layer.uses_integer_delays
    evaluated, _ = layer(x)
    expected, _ = fd.integer_delay_conv(x, layer.weight, fd.integer_delays(layer.positions, 9), 9, method="dense")
    assert torch.allclose(evaluated, expected, atol=1e-12)
    assert not torch.allclose(evaluated, trained, atol=1e-3)  # σ = 0.23 is not yet an integer delay
    assert all(torch.equal(v, layer.state_dict()[k]) for k, v in before.items())
    set_eval_delays(layer, "interpolated")
    assert torch.allclose(layer(x)[0], trained, atol=1e-12)
    layer.train()
    assert not layer.uses_integer_delays


def test_export_holds_weights_and_rounded_delays():
    model = build_delay_network(8, [6], 3, max_delay=7, kind="synaptic", delays_per_synapse=2)
    exported = export_delays(model)
    assert sorted(exported) == ["layers.0.delay", "readout.delay"]
    entry = exported["layers.0.delay"]
    layer = model.layers[0].delay
    assert torch.equal(entry["weight"], layer.weight.detach())
    assert torch.equal(entry["delay"], 3 - torch.round(layer.positions.detach()).long())
    assert entry["delay"].dtype == torch.long and entry["max_delay"] == 7
    entry["weight"].zero_()  # a copy: the model is untouched
    assert layer.weight.abs().sum() > 0


def test_clamp_positions_after_a_step_and_out_of_range_error():
    model = build_delay_network(5, [4], 2, max_delay=7)
    layer = model.layers[0].delay
    with torch.no_grad():
        layer.positions.add_(5.0)
    with pytest.raises(ValueError, match=r"positions must lie in \[-3, 3\].*clamp"):
        model(torch.rand(6, 2, 5))
    clamp_positions_(model)
    assert layer.positions.max() <= 3 and layer.positions.min() >= -3
    model(torch.rand(6, 2, 5))


def test_positions_get_gradients_and_learn_a_delay():
    torch.manual_seed(0)
    layer = DelayedDense(1, 1, 15, sigma=2.0, length="same").double()
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.positions.fill_(7 - 3.0)  # delay 3
    x = torch.zeros(60, 8, 1, dtype=D)
    for b in range(8):
        x[torch.randperm(50)[:5], b, 0] = 1.0
    target = torch.roll(x, 8, dims=0)  # delay 8
    target[:8] = 0
    optimiser = torch.optim.Adam([layer.positions], lr=0.3)
    for _ in range(60):
        optimiser.zero_grad()
        ((layer(x)[0] - target) ** 2).sum().backward()
        optimiser.step()
        layer.clamp_positions_()
    assert layer.integer_delays().item() == 8


def test_fixed_delays_are_rounded_frozen_and_integer():
    layer = DelayedDense(6, 4, 9, delays="fixed")
    assert torch.equal(layer.positions, torch.round(layer.positions))
    assert not layer.positions.requires_grad and layer.uses_integer_delays
    x = _spikes(8, 2, 6).float()
    y, _ = layer(x)
    expected, _ = fd.integer_delay_conv(x, layer.weight, layer.integer_delays(), 9, method="dense")
    assert torch.allclose(y, expected, atol=1e-6)


def test_faithful_initial_positions_put_extra_mass_on_the_largest_delay():
    generator = torch.Generator().manual_seed(0)
    faithful = DelayedDense(100, 100, 25, faithful=True, generator=generator).positions
    default = DelayedDense(100, 100, 25, generator=generator).positions
    for positions in (faithful, default):
        assert positions.min() >= -12 and positions.max() <= 12
    at_max_delay = (faithful == -12).float().mean().item()
    assert at_max_delay == pytest.approx(1 / 25, abs=0.01)  # uniform on [-13, 12], clamped
    assert (default == -12).sum() == 0


def test_kaiming_uniform_weights_without_bias():
    layer = DelayedDense(64, 300, 25, delays_per_synapse=2)
    bound = math.sqrt(6 / (64 * 2))
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
    assert [name for name, _ in layer.named_parameters()] == ["weight", "positions"]


# -- parameter counts and groups ---------------------------------------------------------------------------


def test_parameter_counts_match_the_spec():
    # Spec §1.11: 2·KC·Σ C_in·C_out + 2·hidden·n_hidden.
    assert count_parameters(build_delay_network(140, [256, 256], 20)) == 214_016
    assert count_parameters(build_delay_network(140, [512, 512], 35, delays_per_synapse=2)) == 1_409_024
    dense = build_delay_network(140, [256, 256], 20, delays="dense")
    assert count_parameters(dense) == (140 * 256 + 256 * 256 + 256 * 20) * 25 + 2 * 512
    assert count_parameters(build_delay_network(140, [256, 256], 20, delays="fixed")) == 106_496 + 1_024


def test_param_groups_give_positions_their_own_learning_rate():
    model = build_delay_network(10, [6], 2, max_delay=7)
    groups = {g["name"]: g for g in param_groups(model, 1e-3, weight_decay=1e-5, position_lr_scale=100)}
    assert sorted(groups) == ["positions", "weights"]
    assert groups["positions"]["lr"] == pytest.approx(0.1) and groups["positions"]["weight_decay"] == 0.0
    positions = {id(model.layers[0].delay.positions), id(model.readout.delay.positions)}
    assert {id(p) for p in groups["positions"]["params"]} == positions
    assert not positions & {id(p) for p in groups["weights"]["params"]}
    fixed = build_delay_network(10, [6], 2, max_delay=7, delays="fixed")
    assert [g["name"] for g in param_groups(fixed, 1e-3)] == ["weights"]


# -- σ schedule ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epochs,max_delay,decay_epochs,alpha", [(150, 25, 37, 0.8986), (60, 31, 15, 0.7569), (100, 31, 25, 0.8461)])
def test_sigma_schedule_matches_the_official_decay(epochs, max_delay, decay_epochs, alpha):
    schedule = SigmaSchedule(max_delay, epochs)
    assert schedule.decay_epochs == decay_epochs and schedule.alpha == pytest.approx(alpha, abs=1e-4)
    # official: σ ← σ·α after each epoch while epoch < E_f
    sigma = float(max_delay // 2)
    for epoch in range(epochs):
        assert schedule.value(epoch) == pytest.approx(sigma, rel=1e-9)
        if epoch < decay_epochs and sigma > 0.23:
            sigma *= schedule.alpha
    assert schedule.value(decay_epochs) == 0.23 and schedule.value(epochs - 1) == 0.23


def test_sigma_schedule_per_step_and_apply():
    schedule = SigmaSchedule(25, 8, steps_per_epoch=10)  # E_f = 2
    assert schedule.value(0, 5) == pytest.approx(12 * schedule.alpha ** 0.5)
    assert schedule.value(1, 9) > schedule.value(2, 0) == 0.23
    model = build_delay_network(4, [3], 2)
    assert schedule.apply(model, 1) == pytest.approx(12 * schedule.alpha)
    assert [m.delay.sigma.item() for m in (*model.layers, model.readout)] == pytest.approx([12 * schedule.alpha] * 2)
    assert SigmaSchedule(25, 3).value(0) == 0.23  # E_f = 0: constant σ (the "no schedule" ablation)


def _call_hooks(model, name, *args):  # what spikescale's trainer does
    for module in model.modules():
        hook = getattr(module, name, None)
        if callable(hook):
            hook(*args)


def test_trainer_hooks_schedule_sigma_and_clamp_positions():
    model = build_delay_network(4, [3], 2, max_delay=25)
    layers = [model.layers[0].delay, model.readout.delay]
    _call_hooks(model, "on_train_epoch_start", 0, 150)
    assert [m.sigma.item() for m in layers] == [12.0, 12.0]
    _call_hooks(model, "on_train_epoch_start", 10, 150)
    assert layers[0].sigma.item() == pytest.approx(SigmaSchedule(25, 150).value(10))
    _call_hooks(model, "on_train_epoch_start", 37, 150)
    assert layers[1].sigma.item() == pytest.approx(0.23)
    with torch.no_grad():
        layers[0].positions.add_(30.0)
    _call_hooks(model, "after_optimizer_step")
    assert layers[0].positions.max() <= 12


def test_per_step_sigma_decay_through_the_hooks_and_a_constant_sigma():
    layer = DelayedDense(3, 2, 25, sigma_schedule={"steps_per_epoch": 4})
    layer.on_train_epoch_start(1, 20)  # E_f = 5
    for _ in range(2):
        layer.after_optimizer_step()
    assert layer.sigma.item() == pytest.approx(SigmaSchedule(25, 20, steps_per_epoch=4).value(1, 2))
    fixed = DelayedDense(3, 2, 25, sigma=0.5, sigma_schedule=False)
    fixed.on_train_epoch_start(3, 20)
    assert fixed.sigma.item() == 0.5
    with pytest.raises(ValueError, match="unknown sigma_schedule option"):
        DelayedDense(3, 2, 25, sigma_schedule={"decay": 0.9})
    with pytest.raises(ValueError, match="0 < end <= start"):
        DelayedDense(3, 2, 25, sigma=0.1)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(max_delay=24, epochs=10), "max_delay must be odd"),
        (dict(max_delay=25, epochs=0), "epochs must be a positive integer"),
        (dict(max_delay=25, epochs=10, end=20.0), "0 < end <= start"),
        (dict(max_delay=25, epochs=10, steps_per_epoch=0), "steps_per_epoch"),
    ],
)
def test_sigma_schedule_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SigmaSchedule(**kwargs)


# -- the faithful block and the network ------------------------------------------------------------------------


def test_block_is_delay_batchnorm_lif_with_time_shared_dropout():
    torch.manual_seed(3)
    block = DelayBlock(6, 50, 7, dropout=0.4, batch_norm=False).double()
    with torch.no_grad():
        block.delay.weight.fill_(5.0)  # every neuron is driven far above threshold at every step
    x = torch.ones(12, 4, 6, dtype=D)
    spikes, _ = block(x)
    mask = spikes[0]
    assert set(mask.unique().tolist()) == {0.0, 1 / 0.6}  # dropout scales the kept spikes by 1/(1-p)
    assert torch.equal(spikes, mask.expand_as(spikes))  # one mask per sample and neuron, shared over time
    assert 0.45 < (mask > 0).double().mean() < 0.75
    block.eval()  # no dropout; integer delays: every synapse has delivered its input from step K-1 = 6 on
    assert (block(x)[0][6:12] == 1).all()


def test_block_soma_is_the_official_lif():
    block = DelayBlock(3, 2, 5, tau=1.5, dropout=0.0, batch_norm=False, delays="none").double()
    with torch.no_grad():
        block.delay.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    x = torch.tensor([0.6, 0.6, 0.6, 0.0, 2.0], dtype=D).view(5, 1, 1).expand(5, 1, 3).contiguous()
    spikes, state = block(x)
    # β = 1/3, unscaled input, hard reset: u = 0.6, 0.8, 0.8667, 0.2889, 2.0963 → spike only at the end
    assert spikes[:, 0, 0].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert state.lif.u[0, 0].item() == pytest.approx((0.6 + 0.6 / 3 + 0.6 / 9) / 9 + 2.0)


def test_readout_is_a_non_firing_leaky_integrator():
    readout = DelayReadout(3, 2, 5, tau=2.0, delays="none").double()
    with torch.no_grad():
        readout.delay.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
    x = torch.zeros(4, 1, 3, dtype=D)
    x[0, 0, :] = 1.0
    m, _ = readout(x)
    assert m[:, 0, 0].tolist() == [1.0, 0.5, 0.25, 0.125] and m[:, 0, 1].tolist() == [2.0, 1.0, 0.5, 0.25]
    assert readout.emits_spikes is False


@pytest.mark.parametrize("options", [dict(), dict(kind="axonal"), dict(delays="fixed"), dict(delays="none")])
def test_network_steps_equal_the_sequence_in_eval(options):
    # length="same": with "extend" each layer's sequence stops T + K//2 steps after its input starts, while
    # streaming keeps every layer running (each layer alone equals its steps; see the test above).
    torch.manual_seed(1)
    model = build_delay_network(6, [8, 5], 3, max_delay=5, dropout=0.3, length="same", **options).double()
    x = _spikes(15, 2, 6, rate=0.5)
    model.train()
    model(x)  # BatchNorm running statistics
    model.eval()
    out, final = model(x)
    state = None
    for t in range(15):
        o, state = model.step(x[t], state)
        assert torch.allclose(o, out[t], atol=1e-10)
    assert torch.allclose(state[0].lif.u, final[0].lif.u, atol=1e-10)
    assert torch.allclose(state[-1].membrane, final[-1].membrane, atol=1e-10)


def _separate_steps(block, x, state):
    """The eval forward of a block without the fused pass: delay, BatchNorm, LIF as three calls."""
    z, delay_state = block.delay.project(x, state.delay)
    soma = block.soma
    spikes, lif = lif_sequence(block._normalise(z), state.lif, soma.beta(), soma.threshold, **soma.options())
    return spikes, delay_state, lif


@pytest.mark.skipif(not delay_kernels.available(), reason="numba is not installed")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch, batch_norm, reset", [(20, True, "hard"), (16, False, "soft"), (3, True, "none")])
def test_fused_inference_equals_delay_batchnorm_lif(monkeypatch, dtype, batch, batch_norm, reset):
    torch.manual_seed(4)
    block = DelayBlock(37, 21, 9, tau=1.5, batch_norm=batch_norm, reset=reset).to(dtype)
    if batch_norm:  # running statistics and affine parameters away from their initial 0/1
        with torch.no_grad():
            block.norm.running_mean.uniform_(-0.5, 0.5), block.norm.running_var.uniform_(0.5, 2.0)
            block.norm.weight.uniform_(0.5, 1.5), block.norm.bias.uniform_(-0.3, 0.3)
    block.eval()
    calls = []
    fused_pass = delay_kernels.spike_tap_lif
    monkeypatch.setattr(delay_kernels, "spike_tap_lif", lambda *a: calls.append(1) or fused_pass(*a))
    x = (torch.rand(30, batch, 37) < 0.3).to(dtype)
    with torch.no_grad():
        state = block.initial_state(batch, dtype=dtype)
        first, state = block(x[:13], state)  # then from a state with history and a charged membrane
        spikes, final = block(x[13:], state)
        ref_first, ref_delay, ref_lif = _separate_steps(block, x[:13], block.initial_state(batch, dtype=dtype))
        ref, ref_delay, ref_lif = _separate_steps(block, x[13:], DelayBlockState(ref_delay, ref_lif))
    assert len(calls) == 2 and 0.05 < spikes.mean() < 0.95
    assert torch.equal(first, ref_first) and torch.equal(spikes, ref)
    assert torch.equal(final.delay.buffer, ref_delay.buffer) and torch.equal(final.lif.s, ref_lif.s)
    assert torch.allclose(final.lif.u, ref_lif.u, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.skipif(not delay_kernels.available(), reason="numba is not installed")
def test_fused_inference_steps_aside_for_analog_input_gradients_and_training(monkeypatch):
    torch.manual_seed(5)
    block = DelayBlock(6, 5, 7, batch_norm=False).double()
    calls = []
    fused_pass = delay_kernels.spike_tap_lif
    monkeypatch.setattr(delay_kernels, "spike_tap_lif", lambda *a: calls.append(1) or fused_pass(*a))
    analog = torch.rand(12, 4, 6, dtype=D)
    block.eval()
    with torch.no_grad():
        spikes, _ = block(analog)  # the packing finds values other than 0 and 1: the separate steps run
        assert len(calls) == 1 and torch.equal(spikes, _separate_steps(block, analog, block.initial_state(4, dtype=D))[0])
    spikes, _ = block(_spikes(12, 4, 6))  # eval, but gradients are on: the weights need a graph
    assert len(calls) == 1 and spikes.requires_grad
    block.train()
    with torch.no_grad():
        block(_spikes(12, 4, 6))
    assert len(calls) == 1


def test_block_step_in_training_mode_is_an_error():
    block = DelayBlock(4, 3, 5)
    with pytest.raises(ValueError, match=r"needs eval\(\) mode"):
        block.step(torch.rand(2, 4))


def test_network_trains_every_parameter_and_monitor_counts_synops():
    torch.manual_seed(0)
    model = build_network("delays", 10, [16], 3, max_delay=7, seed=0)
    x = _spikes(20, 4, 10).float()
    with SpikeMonitor(model) as monitor:
        out, _ = model(x)
    assert out.shape == (20 + 3 + 3, 4, 3)
    out.softmax(-1).sum(0).sum().backward()  # any loss through all steps
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    expected = (x != 0).sum().item() * 16 / 4
    assert monitor.summary()["layers.0"]["synops_per_sample"] == pytest.approx(expected)


def test_seed_makes_the_network_reproducible():
    a = build_delay_network(6, [5], 2, max_delay=7, seed=3)
    b = build_delay_network(6, [5], 2, max_delay=7, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize(
    "factory,message",
    [
        (lambda: DelayedDense(4, 3, 0), "max_delay .* must be an integer >= 1"),
        (lambda: DelayedDense(4, 3, 8), "max_delay must be odd"),
        (lambda: DelayedDense(4, 3, 7, kind="somatic"), "unknown delay kind 'somatic'"),
        (lambda: DelayedDense(4, 3, 7, delays="random"), "unknown delay mode 'random'"),
        (lambda: DelayedDense(4, 3, 7, kind="axonal", delays_per_synapse=2), "delays_per_synapse > 1 needs"),
        (lambda: DelayedDense(4, 3, 7, eval_delays="rounded"), "unknown eval_delays 'rounded'"),
        (lambda: DelayBlock(4, 3, 7, tau=1.0), "tau .* must be > 1"),
        (lambda: DelayBlock(4, 3, 7, dropout=1.0), r"dropout must lie in \[0, 1\)"),
        (lambda: build_network("delays", 4, [3], 2, readout="linear"), "has its own readout"),
    ],
)
def test_bad_construction_errors(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_unknown_block_option_is_a_type_error():
    with pytest.raises(TypeError, match="kernel_count"):
        DelayBlock(4, 3, 7, kernel_count=2)
