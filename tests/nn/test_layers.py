import pytest
import torch

from spikescale.nn import DHDense, DHRecurrent, LIFDense, Readout, build_network, count_parameters, param_groups

LAYERS = {
    "lif": lambda: LIFDense(12, 5),
    "dh": lambda: DHDense(12, 5, branches=3),
    "dh_grouped": lambda: DHDense(12, 8, branches=3, mask="grouped", group_size=4),
    "dh_rec": lambda: DHRecurrent(12, 5, branches=2),
    "readout_int": lambda: Readout(12, 5),
    "readout_spk": lambda: Readout(12, 5, mode="spike_count", threshold=0.5),
    "readout_lin": lambda: Readout(12, 5, mode="linear"),
}


def _boost(layer):
    """Excitatory weights, so that the layers spike from the first steps."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("weight"):
                p.abs_().mul_(3.0)
    return layer


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_step_equals_sequence(name):
    layer = _boost(LAYERS[name]()).double()
    x = (torch.rand(25, 3, 12, dtype=torch.float64) < 0.4).double()
    out, final = layer(x)
    state = None
    for t in range(25):
        o, state = layer.step(x[t], state)
        assert torch.allclose(o, out[t], atol=1e-12)
    for a, b in zip(final, state):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("name", ["lif", "dh", "dh_rec"])
def test_layers_spike_and_train(name):
    layer = _boost(LAYERS[name]())
    x = (torch.rand(100, 4, 12) < 0.5).float()  # long enough for slow (large-α) dendrites to charge
    spikes, _ = layer(x)
    assert 0 < spikes.mean() < 1
    spikes.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_batch_consistency():
    layer = _boost(DHRecurrent(12, 5, branches=2))
    x = (torch.rand(20, 3, 12) < 0.4).float()
    batch_out, _ = layer(x)
    for b in range(3):
        single, _ = layer(x[:, b:b + 1])
        assert torch.allclose(single[:, 0], batch_out[:, b], atol=1e-6)


def test_grouped_projection_equals_dense_masked_product():
    layer = DHDense(30, 8, branches=4, mask="grouped", group_size=4).double()
    x = torch.randn(7, 2, 30, dtype=torch.float64, requires_grad=True)
    grouped = layer.project(x)
    layer.projection = "dense"
    dense = layer.project(x)
    assert torch.allclose(grouped, dense, atol=1e-12)
    w = torch.randn_like(dense)
    g1 = torch.autograd.grad((grouped * w).sum(), (x, layer.weight, layer.bias))
    g2 = torch.autograd.grad((dense * w).sum(), (x, layer.weight, layer.bias))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(g1, g2))


@pytest.mark.parametrize("m,n,d", [(700, 64, 8), (40, 16, 2), (13, 7, 3)])
def test_parameter_count_formulas(m, n, d):
    assert count_parameters(DHDense(m, n, branches=d)) == m * n + (2 * d + 1) * n
    assert count_parameters(DHRecurrent(m, n, branches=d)) == m * n + n * n + (2 * d + 1) * n
    assert count_parameters(LIFDense(m, n)) == m * n + 2 * n


def test_masked_weights_stay_zero_under_adamw_with_weight_decay():
    torch.manual_seed(0)
    model = build_network("dh_srnn", 20, [8], 3, branches=4)
    layer = model.layers[0]
    optimiser = torch.optim.AdamW(param_groups(model, 1e-2, weight_decay=0.1))
    x = (torch.rand(15, 6, 20) < 0.3).float()
    for _ in range(5):
        optimiser.zero_grad()
        out, _ = model(x)
        out.pow(2).mean().backward()
        optimiser.step()
    assert (layer.weight[~layer.mask] == 0).all()
    assert (layer.weight[layer.mask] != 0).float().mean() > 0.99


def test_mask_is_a_buffer_and_survives_state_dict_round_trip():
    a = DHDense(20, 8, branches=4, mask="grouped", group_size=4, seed=1)
    b = DHDense(20, 8, branches=4, mask="grouped", group_size=4, seed=2)
    assert not torch.equal(a.mask, b.mask)
    assert "mask" in a.state_dict()
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.mask, b.mask) and torch.equal(a.group_index, b.group_index)
    x = torch.rand(5, 2, 20)
    assert torch.equal(a(x)[0], b(x)[0])


def test_param_groups_separate_timing_parameters():
    model = build_network("dh_sfnn", 10, [6], 2, branches=2)
    groups = {g["name"]: g for g in param_groups(model, 1e-2, timing_lr_scale=2.0, weight_decay=1e-3)}
    assert groups["timing"]["lr"] == pytest.approx(2e-2) and groups["timing"]["weight_decay"] == 0.0
    timing_ids = {id(p) for p in groups["timing"]["params"]}
    assert id(model.layers[0].alpha.raw) in timing_ids and id(model.layers[0].soma.beta.raw) in timing_ids
    assert id(model.layers[0].weight) not in timing_ids


def test_faithful_initial_state_is_random():
    layer = DHDense(10, 4, branches=2, faithful=True)
    state = layer.initial_state(3)
    assert (state.u > 0).all() and (state.s > 0).all() and (state.s < 1).all()
    assert (state.i == 0).all()
    zero = DHDense(10, 4, branches=2).initial_state(3)
    assert all((t == 0).all() for t in zero)


@pytest.mark.parametrize(
    "factory,x,message",
    [
        (lambda: DHDense(10, 4), torch.rand(5, 10), r"expected input of shape \[T, B, 10\]"),
        (lambda: DHDense(10, 4), torch.rand(5, 2, 9), r"got \(5, 2, 9\)"),
        (lambda: LIFDense(10, 4), torch.full((5, 2, 10), float("nan")), "contains NaN"),
        (lambda: DHRecurrent(10, 4, branches=2), torch.tensor([[[float("inf")] * 10]]), "contains Inf"),
    ],
)
def test_bad_input_errors(factory, x, message):
    with pytest.raises(ValueError, match=message):
        factory()(x)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(branches=0), "branches must be an integer between 1"),
        (dict(branches=11), "branches must be an integer between 1"),
        (dict(mask="diagonal"), "unknown mask 'diagonal'"),
        (dict(alpha_init="enormous"), "unknown timing init 'enormous'"),
        (dict(beta_init="tiny"), "unknown timing init 'tiny'"),
        (dict(projection="grouped"), "projection='grouped' needs"),
    ],
)
def test_bad_construction_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DHDense(10, 4, **kwargs)


def test_unknown_soma_option_is_a_type_error():
    with pytest.raises(TypeError, match="thresold"):
        LIFDense(3, 2, thresold=1.0)
