"""Event-driven and block-product projections give the dense path's values and gradients."""

import pytest
import torch

from spikescale.kernels import use_backend
from spikescale.nn import DHDense, DHRecurrent, LIFDense
from spikescale.nn.projection import grouped_projection, input_events

pytest.importorskip("numba")

D = torch.float64

FAST = dict(alpha_init="small")  # quickly charging dendrites, so that the layers spike within the test

LAYERS = {
    "lif": lambda: LIFDense(30, 7),
    "dh_random": lambda: DHDense(30, 6, branches=4, **FAST),
    "dh_grouped": lambda: DHDense(30, 8, branches=3, mask="grouped", group_size=4, **FAST),
    "dh_contiguous": lambda: DHDense(30, 5, branches=2, mask="contiguous", **FAST),
    "dh_sparsity": lambda: DHDense(30, 5, branches=3, sparsity=0.5, **FAST),
    "dh_recurrent": lambda: DHRecurrent(30, 6, branches=2, **FAST),
}


def _spike_input(steps=40, batch=3, channels=30, density=0.08, counts=False):
    x = (torch.rand(steps, batch, channels, dtype=D) < density).to(D)
    if counts:  # small integer counts, not only 0/1
        x = x * torch.randint(1, 4, x.shape).to(D)
    return x


def _boosted(factory):
    torch.manual_seed(3)
    layer = factory().double()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("weight"):
                p.abs_().mul_(4.0)
    return layer


def _run(layer, path, x):
    layer.input_path = path
    layer.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out, state = layer(x)
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=D).view_as(out)).sum() + sum(s.sum() for s in state)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters()}
    return out.detach(), [s.detach() for s in state], grads, x.grad


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("counts", [False, True])
def test_event_path_equals_dense_path(name, counts):
    layer = _boosted(LAYERS[name])
    x = _spike_input(counts=counts)
    dense = _run(layer, "dense", x)
    event = _run(layer, "event", x)
    assert dense[0].sum() > 0, "the layer should spike"
    assert torch.equal(dense[0], event[0])
    for a, b in zip(dense[1], event[1]):
        assert torch.allclose(a, b, atol=1e-10)
    for key in dense[2]:
        assert torch.allclose(dense[2][key], event[2][key], atol=1e-9), key
    assert torch.allclose(dense[3], event[3], atol=1e-9)


def test_event_path_float32_agrees_with_dense():
    torch.manual_seed(0)
    layer = DHDense(700, 64, branches=8, mask="grouped", group_size=32)
    x = (torch.rand(60, 4, 700) < 0.02).float()
    dense = _run_f32(layer, "dense", x)
    event = _run_f32(layer, "event", x)
    for a, b in zip(dense, event):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def _run_f32(layer, path, x):
    layer.input_path = path
    layer.zero_grad(set_to_none=True)
    total, _ = layer(x)
    (total * torch.linspace(-1, 1, total.numel()).view_as(total)).sum().backward()
    return [total.detach()] + [p.grad.clone() for p in layer.parameters()]


def test_auto_takes_the_event_path_below_the_density_threshold():
    sparse = _spike_input(density=0.02)
    dense = torch.rand(10, 3, 30, dtype=D)
    assert input_events(sparse, "auto", 0.1) is not None
    assert input_events(dense, "auto", 0.1) is None
    assert input_events(dense, "event", 0.1) is not None
    assert input_events(sparse, "dense", 0.1) is None
    # Block products for grouped masks are cheaper than a dense product, so events must be sparser.
    grouped = DHDense(30, 8, branches=2, mask="grouped", group_size=4)
    assert grouped.event_density < DHDense(30, 4, branches=4).event_density == LIFDense(30, 4).event_density


def test_forced_event_path_needs_an_event_backend():
    layer = LIFDense(30, 4, input_path="event")
    with use_backend("torch"), pytest.raises(ValueError, match="input_path='event' needs a backend"):
        layer(_spike_input().float())
    with use_backend("torch"):  # auto falls back to the dense product
        LIFDense(30, 4)(_spike_input().float())


@pytest.mark.parametrize("kwargs,message", [
    (dict(input_path="sparse"), "unknown input_path 'sparse'"),
    (dict(event_density=1.5), "event_density must lie in"),
])
def test_bad_input_path_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LIFDense(5, 3, **kwargs)
    with pytest.raises(ValueError, match=message):
        DHDense(5, 3, branches=2, **kwargs)


def test_grouped_projection_in_row_chunks_equals_dense_masked_product():
    layer = DHDense(25, 12, branches=4, mask="grouped", group_size=4).double()
    x = torch.randn(9000, 25, dtype=D, requires_grad=True)  # more rows than one chunk
    grouped = grouped_projection(x, layer.weight, layer.group_index)
    dense = torch.nn.functional.linear(x, (layer.weight * layer.mask).reshape(-1, 25)).view(-1, 12, 4)
    assert torch.allclose(grouped, dense, atol=1e-12)
    w = torch.randn_like(dense)
    g1 = torch.autograd.grad((grouped * w).sum(), (x, layer.weight))
    g2 = torch.autograd.grad((dense * w).sum(), (x, layer.weight))
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(g1, g2))


def test_state_dict_round_trip_refreshes_the_event_structure():
    a = DHDense(20, 6, branches=2, seed=1).double()
    b = DHDense(20, 6, branches=2, seed=2).double()
    x = _spike_input(channels=20, density=0.1)
    b(x)  # builds b's structure from its own mask
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x)[0], b(x)[0])


SPARSE = dict(beta_init=0.9, learn_beta=False, learn_threshold=True)


@pytest.mark.parametrize("surrogate", ["rect", {"name": "mg", "truncate": 1.0}])
@pytest.mark.parametrize("reset,detach", [("soft", False), ("soft", True), ("none", False)])
@pytest.mark.parametrize("path", ["dense", "event"])
def test_sparse_backward_equals_dense_backward(backend, surrogate, reset, detach, path):
    if path == "event" and backend == "torch":
        pytest.skip("the event path needs the numba backend")
    options = dict(SPARSE, surrogate=surrogate, reset=reset, detach_reset=detach, input_path=path)
    torch.manual_seed(5)
    dense = LIFDense(30, 7, **options).double()
    with torch.no_grad():
        dense.linear.weight.abs_().mul_(3.0)
    sparse = LIFDense(30, 7, sparse_backward=True, **options).double()
    sparse.load_state_dict(dense.state_dict())
    x = _spike_input(density=0.2)
    a = _run(dense, path, x)
    b = _run(sparse, path, x)
    assert 0 < a[0].mean() < 1
    assert torch.equal(a[0], b[0])
    for key in a[2]:
        assert torch.allclose(a[2][key], b[2][key], atol=1e-10), key
    assert torch.allclose(a[3], b[3], atol=1e-10)


def test_sparse_backward_needs_bounded_support_soft_reset_and_fixed_beta():
    with pytest.raises(ValueError, match="bounded support"):
        LIFDense(5, 3, sparse_backward=True, beta_init=0.9, learn_beta=False, surrogate="mg")
    with pytest.raises(ValueError, match="reset 'soft' or 'none'"):
        LIFDense(5, 3, sparse_backward=True, beta_init=0.9, learn_beta=False, surrogate="rect", reset="hard")
    with pytest.raises(ValueError, match="fixed shared beta"):
        LIFDense(5, 3, sparse_backward=True, beta_init=0.9, surrogate="rect")
    with pytest.raises(ValueError, match="one shared beta"):
        LIFDense(5, 3, sparse_backward=True, learn_beta=False, surrogate="rect")
