"""Every backend of ``spikescale.kernels.BACKENDS`` against the plain-autograd references.

Values and all gradients, float32 and float64, every reset mode; ``gradcheck`` for the linear
recurrences (the spiking ones are covered by the smooth-surrogate gradchecks in tests/functional,
which run on the PyTorch loops, and here by agreement with the reference).
"""

import itertools

import pytest
import torch

from spikescale.functional import (
    RESETS,
    LIFState,
    dh_lif_recurrent_sequence,
    dh_lif_recurrent_sequence_reference,
    dh_lif_sequence,
    dh_lif_sequence_reference,
    get_surrogate,
    leaky_integrator,
    lif_sequence,
    lif_sequence_reference,
    linear_recurrence,
    linear_recurrence_reference,
)
from spikescale.functional.dh_lif import dendritic_sum
from spikescale.functional.lif import kernel_for

DTYPES = [torch.float64, torch.float32]
SURROGATES = ["mg", {"name": "mg", "truncate": 1.0}, "atan", "fast_sigmoid", {"name": "rect", "width": 0.8}]


def _tol(dtype):
    return dict(rtol=1e-9, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)


def _grads(outputs, inputs, weights):
    loss = sum((o * w).sum() for o, w in zip(outputs, weights))
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs)]


def _assert_close(fast, ref, dtype):
    for a, b in zip(fast, ref):
        assert torch.allclose(a, b, **_tol(dtype)), (a - b).abs().max().item()


def _lif_inputs(dtype, steps=9, batch=3, neurons=5, per_neuron_theta=True):
    current = (torch.randn(steps, batch, neurons, dtype=dtype) * 2 + 0.8).requires_grad_()
    beta = torch.rand(neurons, dtype=dtype).requires_grad_()
    u0 = torch.rand(batch, neurons, dtype=dtype).requires_grad_()
    s0 = torch.rand(batch, neurons, dtype=dtype).requires_grad_()
    theta = torch.rand(neurons, dtype=dtype) + 0.5 if per_neuron_theta else torch.tensor(1.0, dtype=dtype)
    return current, beta, u0, s0, theta.requires_grad_()


def _lif(fn, options):
    def call(current, beta, u0, s0, theta):
        spikes, state = fn(current, LIFState(u0, s0), beta, theta, **options)
        return spikes, state.u

    return call


@pytest.mark.parametrize(
    "dtype,reset,detach,scale", list(itertools.product(DTYPES, RESETS, [False, True], [True, False]))
)
def test_lif_matches_reference(backend, dtype, reset, detach, scale):
    options = dict(reset=reset, detach_reset=detach, scale_input=scale)
    args = _lif_inputs(dtype)
    fast = _lif(lif_sequence, options)(*args)
    ref = _lif(lif_sequence_reference, options)(*args)
    assert torch.equal(fast[0], ref[0])
    _assert_close(fast[1:], ref[1:], dtype)
    weights = [torch.randn_like(t) for t in fast]
    _assert_close(_grads(fast, args, weights), _grads(ref, args, weights), dtype)


@pytest.mark.parametrize("surrogate", SURROGATES)
def test_lif_surrogates_and_scalar_threshold(backend, surrogate):
    options = dict(surrogate=surrogate)
    args = _lif_inputs(torch.float64, per_neuron_theta=False)
    fast = _lif(lif_sequence, options)(*args)
    ref = _lif(lif_sequence_reference, options)(*args)
    assert torch.equal(fast[0], ref[0])
    weights = [torch.randn_like(t) for t in fast]
    _assert_close(_grads(fast, args, weights), _grads(ref, args, weights), torch.float64)


def test_compiled_surrogate_formulas_equal_torch():
    numba_cpu = pytest.importorskip("spikescale.kernels.numba_cpu")
    u = torch.linspace(-4, 6, 3000, dtype=torch.float64).reshape(3, 1, 1000)
    theta = torch.full((1000,), 1.0, dtype=torch.float64)
    for spec in SURROGATES:
        surrogate = get_surrogate(spec)
        compiled = numba_cpu.surrogate_grad(surrogate, u.numpy(), theta.numpy())
        assert torch.allclose(torch.from_numpy(compiled), surrogate.grad(u - 1.0), rtol=1e-12, atol=1e-15), spec


def test_truncated_mg_is_zero_outside_its_support():
    mg = get_surrogate("mg", truncate=1.5)
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    g = mg.grad(x)
    assert (g[x.abs() >= 1.5] == 0).all()
    inside = x.abs() < 1.5
    assert torch.equal(g[inside], get_surrogate("mg").grad(x)[inside])
    assert mg.support == 1.5 and get_surrogate("mg").support == float("inf")
    assert get_surrogate("rect", width=0.4).support == pytest.approx(0.2)


def test_numba_backend_runs_the_compiled_kernels_and_keeps_uint8_spikes():
    pytest.importorskip("numba")
    from spikescale.kernels import use_backend

    with use_backend("numba"):
        x = torch.randn(5, 2, 3, requires_grad=True)
        assert kernel_for("lif_sequence", x, get_surrogate("mg")) is not None
        spikes, _ = lif_sequence(x, LIFState(torch.zeros(2, 3), torch.zeros(2, 3)), torch.rand(3))
    saved = [t for t in spikes.grad_fn.saved_tensors if t is not None and t.shape == spikes.shape]
    # [T, B, N] tensors kept for the backward pass: the membrane trace (float) and the spikes as uint8;
    # the input current is not kept (beta needs no gradient here).
    assert sorted(str(t.dtype) for t in saved) == ["torch.float32", "torch.uint8"]


def test_custom_spike_forward_runs_on_the_pytorch_loops(smooth_spike):
    assert kernel_for("lif_sequence", torch.zeros(1), smooth_spike) is None


def _dh_args(recurrent, branches, dtype, steps=7, batch=2, neurons=4):
    current = (torch.randn(steps, batch, neurons, branches, dtype=dtype) * 2 + 0.8).requires_grad_()
    args = [
        current,
        torch.rand(neurons, branches, dtype=dtype).requires_grad_(),
        torch.rand(neurons, dtype=dtype).requires_grad_(),
        (torch.rand(neurons, dtype=dtype) + 0.5).requires_grad_(),
        torch.rand(batch, neurons, branches, dtype=dtype).requires_grad_(),
        torch.rand(batch, neurons, dtype=dtype).requires_grad_(),
        torch.rand(batch, neurons, dtype=dtype).requires_grad_(),
    ]
    if recurrent:
        args.insert(1, (torch.randn(neurons * branches, neurons, dtype=dtype) * 0.7).requires_grad_())
    return tuple(args)


DH = {
    False: (dh_lif_sequence, dh_lif_sequence_reference),
    True: (dh_lif_recurrent_sequence, dh_lif_recurrent_sequence_reference),
}


@pytest.mark.parametrize(
    "recurrent,dtype,reset,detach",
    list(itertools.product([False, True], DTYPES, RESETS, [False, True])),
)
@pytest.mark.parametrize("branches", [1, 3])
def test_dh_lif_matches_reference(backend, recurrent, dtype, reset, detach, branches, dh_call):
    fast_fn, ref_fn = DH[recurrent]
    options = dict(reset=reset, detach_reset=detach, scale_input=reset != "none")
    args = _dh_args(recurrent, branches, dtype)
    fast = dh_call(recurrent, fast_fn, options)(*args)
    ref = dh_call(recurrent, ref_fn, options)(*args)
    assert torch.equal(fast[0], ref[0])
    _assert_close(fast[1:], ref[1:], dtype)
    weights = [torch.randn_like(t) for t in fast]
    _assert_close(_grads(fast, args, weights), _grads(ref, args, weights), dtype)


def test_dendritic_sum_gradcheck(backend):
    current = torch.randn(6, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    alpha = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    i0 = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dendritic_sum, (current, alpha, i0))


@pytest.mark.parametrize("scale_input", [True, False])
@pytest.mark.parametrize("shape", [(11, 3, 4), (8, 2, 3, 2)])
def test_linear_recurrence_gradcheck_and_reference(backend, scale_input, shape):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    a = torch.rand(*shape[2:], dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(*shape[1:], dtype=torch.float64, requires_grad=True)
    fn = lambda x, a, y0: linear_recurrence(x, a, y0, scale_input=scale_input)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, a, y0))
    assert torch.allclose(fn(x, a, y0), linear_recurrence_reference(x, a, y0, scale_input=scale_input), atol=1e-12)


def test_leaky_integrator_float32(backend):
    x = torch.randn(50, 4, 8, requires_grad=True)
    beta = torch.rand(8, requires_grad=True)
    fast = leaky_integrator(x, beta)
    ref = linear_recurrence_reference(x, beta)
    assert torch.allclose(fast, ref, atol=1e-6)
    w = torch.randn_like(fast)
    _assert_close(_grads([fast], (x, beta), [w]), _grads([ref], (x, beta), [w]), torch.float32)


def test_vectorisable_exp_matches_math_exp():
    numba_cpu = pytest.importorskip("spikescale.kernels.numba_cpu")
    import math

    import numpy as np
    from numba import njit

    @njit
    def evaluate(xs, out):
        for k in range(xs.size):
            out[k] = numba_cpu._exp(xs[k])

    xs = np.concatenate([np.linspace(-700.0, 700.0, 200_001), np.linspace(-3.0, 3.0, 10_001)])
    out = np.empty_like(xs)
    evaluate(xs, out)
    expected = np.array([math.exp(v) for v in xs])
    assert np.max(np.abs(out - expected) / expected) < 1e-15


def test_custom_surrogate_formula_is_compiled_too():
    numba_cpu = pytest.importorskip("spikescale.kernels.numba_cpu")
    from dataclasses import dataclass
    from typing import Any, ClassVar

    from spikescale.functional.surrogate import Surrogate

    def triangle(x, exp, box, width):
        return box(x, width) * (1.0 - abs(x) / width) / width

    @dataclass(frozen=True)
    class Triangle(Surrogate):
        name: ClassVar[str] = "triangle_test"
        width: float = 0.7
        formula: ClassVar[Any] = staticmethod(triangle)

    u = torch.linspace(-2, 3, 400, dtype=torch.float64).reshape(4, 1, 100)
    theta = torch.full((100,), 0.8, dtype=torch.float64)
    compiled = numba_cpu.surrogate_grad(Triangle(), u.numpy(), theta.numpy())
    assert torch.allclose(torch.from_numpy(compiled), Triangle().grad(u - 0.8), atol=1e-15)
    args = _lif_inputs(torch.float64)
    fast = _lif(lif_sequence, dict(surrogate=Triangle()))(*args)
    ref = _lif(lif_sequence_reference, dict(surrogate=Triangle()))(*args)
    weights = [torch.randn_like(t) for t in fast]
    _assert_close(_grads(fast, args, weights), _grads(ref, args, weights), torch.float64)


@pytest.mark.parametrize("reset", RESETS)
def test_lif_without_gradients_gives_the_same_values(backend, reset):
    args = _lif_inputs(torch.float32, steps=30, batch=4, neurons=6)
    with_grad = _lif(lif_sequence, dict(reset=reset))(*args)
    with torch.no_grad():
        without = _lif(lif_sequence, dict(reset=reset))(*args)
    assert torch.equal(with_grad[0], without[0]) and torch.equal(with_grad[1], without[1])
