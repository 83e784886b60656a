import math

import pytest
import torch

from spikescale.functional import delay_kernels
from spikescale.functional import delays as fd
from spikescale.functional.lif import LIFState, lif_sequence

D = torch.float64


def _synapses(out_features=4, in_features=5, count=1, max_delay=7, dtype=D):
    weight = torch.randn(out_features, in_features, count, dtype=dtype).requires_grad_()
    half = max_delay // 2
    positions = ((torch.rand(out_features, in_features, count, dtype=dtype) * 2 - 1) * half).requires_grad_()
    return weight, positions


def _grads(y, inputs, weight):
    return torch.autograd.grad((y * weight).sum(), inputs)


# -- kernel construction -------------------------------------------------------------------------------


def test_gauss_taps_golden_values():
    # K = 5, p = 0.5: centre δ = 2 − 0.5 = 1.5; σ = 0.23 → s = 0.5.
    taps = fd.interpolation_taps(torch.tensor([0.5], dtype=D), 0.23, 5)[0]
    g = torch.tensor([math.exp(-0.5 * ((d - 1.5) / 0.5) ** 2) for d in range(5)], dtype=D)
    assert torch.allclose(taps, g / (g.sum() + 1e-7), atol=1e-15)


def test_taps_match_the_spec_in_tap_order():
    # Spec §1.2: tap k = 0…K−1, centre c = p + ⌊K/2⌋, g_k = exp(−½((k − c)/s)²); delay d = K − 1 − k.
    K, sigma = 25, 3.7
    positions = torch.linspace(-12, 12, 11, dtype=D)
    s = sigma + 0.27
    k = torch.arange(K, dtype=D)
    g = torch.exp(-0.5 * ((k - (positions[:, None] + 12)) / s) ** 2)
    expected = (g / (g.sum(-1, keepdim=True) + 1e-7)).flip(-1)
    assert torch.allclose(fd.interpolation_taps(positions, sigma, K), expected, atol=1e-15)


@pytest.mark.parametrize("interpolation", ["gauss", "linear"])
@pytest.mark.parametrize("sigma", [0.0, 0.23, 2.0, 12.0])
def test_kernel_mass_is_one(interpolation, sigma):
    positions = (torch.rand(50, dtype=D) * 2 - 1) * 12
    taps = fd.interpolation_taps(positions, sigma, 25, interpolation)
    assert (taps >= 0).all()
    assert torch.allclose(taps.sum(-1), torch.ones(50, dtype=D), atol=1e-6)


@pytest.mark.parametrize("dtype, sigma", [(torch.float32, 0.23), (torch.float32, 1.0), (torch.float64, 0.23)])
def test_gauss_kernels_hold_no_subnormal_numbers(dtype, sigma):
    # far taps are exactly zero, so w · ĝ stays normal for weights well above eps (subnormal arithmetic is
    # slow on x86); with the old floor (e · tiny) most far entries of w · ĝ were subnormal
    _, positions = _synapses(out_features=40, in_features=30, max_delay=25, dtype=dtype)
    positions = positions.detach()
    weight = 0.01 * (0.5 + torch.rand(positions.shape, dtype=dtype)) * torch.sign(torch.randn(positions.shape))
    info = torch.finfo(dtype)
    taps = fd.interpolation_taps(positions, sigma, 25)
    far = -0.5 * (fd._distances(positions, 25) / (sigma + fd.SIGMA_FLOOR)) ** 2 <= fd._tap_floor(dtype)
    assert far.any() and (taps[far] == 0).all() and (taps[~far] > 0).all()
    start, count = fd.tap_window(positions, sigma, 25)
    window_values = fd._window_values(weight, positions, sigma, 25, "gauss", start, count)
    for kernel in (fd.delay_kernel(weight, positions, sigma, 25), window_values):
        assert not ((kernel != 0) & (kernel.abs() < info.tiny)).any()


def test_centre_mapping_delay_is_half_minus_position():
    K = 25
    positions = torch.arange(-12, 13, dtype=D)
    for interpolation in ("gauss", "linear"):
        taps = fd.interpolation_taps(positions, 0.0, K, interpolation)
        assert torch.equal(taps.argmax(-1), 12 - positions.long())
    one_hot = fd.interpolation_taps(positions, 0.0, K, "linear")
    assert torch.allclose(one_hot, torch.eye(K, dtype=D).flip(0) / (1 + 1e-7))  # p = +12: no delay, p = −12: delay 24
    assert torch.equal(fd.integer_delays(positions, K), 12 - positions.long())


def test_linear_taps_interpolate_between_neighbours():
    taps = fd.interpolation_taps(torch.tensor([0.25], dtype=D), 0.0, 5, "linear")[0]
    # δ = 2 − 0.25 = 1.75: weight 0.25 on delay 1 and 0.75 on delay 2.
    assert torch.allclose(taps, torch.tensor([0, 0.25, 0.75, 0, 0], dtype=D) / (1 + 1e-7))


def test_integer_delays_round_positions_half_to_even_then_map():
    positions = torch.tensor([0.5, 1.5, -0.5, -2.5, 2.49, 12.0, -12.0])
    # torch.round: 0, 2, −0, −2, 2, 12, −12 → δ = 15 − p for K = 31
    assert fd.integer_delays(positions, 31).tolist() == [15, 13, 15, 17, 13, 3, 27]


def test_delay_kernel_sums_copies_and_scales_by_weight():
    weight = torch.tensor([[[2.0, -1.0]]], dtype=D)
    positions = torch.tensor([[[3.0, -3.0]]], dtype=D)
    kernel = fd.delay_kernel(weight, positions, 0.0, 7, "linear")[0, 0]
    expected = torch.zeros(7, dtype=D)
    expected[0], expected[6] = 2.0, -1.0
    assert torch.allclose(kernel, expected / (1 + 1e-7))


# -- convolution semantics -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dense", "fourier", "taps"])
def test_impulse_arrives_after_its_delay(method):
    x = torch.zeros(10, 1, 1, dtype=D)
    x[2, 0, 0] = 1.0
    weight = torch.tensor([[[1.5]]], dtype=D)
    delays = torch.tensor([[[4]]])
    y, _ = fd.integer_delay_conv(x, weight, delays, 7, method=method)
    expected = torch.zeros(13, dtype=D)
    expected[6] = 1.5
    assert y.shape == (13, 1, 1)
    assert torch.allclose(y.flatten(), expected, atol=1e-12)


@pytest.mark.parametrize("length,steps", [("same", 10), ("extend", 13)])
def test_output_length(length, steps):
    weight, positions = _synapses(max_delay=7)
    y, _ = fd.delay_conv(torch.randn(10, 2, 5, dtype=D), weight, positions, 1.0, 7, length=length)
    assert y.shape == (steps, 2, 4)
    assert fd.output_length(10, 7, length) == steps


# -- fast paths against the dense-kernel conv -----------------------------------------------------------


@pytest.mark.parametrize("method", ["fourier", "taps"])
@pytest.mark.parametrize("interpolation", ["gauss", "linear"])
@pytest.mark.parametrize("sigma", [12.0, 2.0, 0.23, 0.0])
@pytest.mark.parametrize("count,length", [(1, "extend"), (2, "same")])
def test_fast_paths_equal_the_dense_kernel_conv(method, interpolation, sigma, count, length):
    K = 9
    x = torch.randn(17, 3, 5, dtype=D).requires_grad_()
    weight, positions = _synapses(count=count, max_delay=K)
    options = dict(interpolation=interpolation, length=length)
    ref, ref_state = fd.delay_conv_reference(x, weight, positions, sigma, K, **options)
    y, state = fd.delay_conv(x, weight, positions, sigma, K, method=method, tolerance=1e-14, **options)
    assert torch.allclose(y, ref, atol=1e-12)
    g = torch.randn_like(ref)
    for a, b in zip(_grads(y, (x, weight, positions), g), _grads(ref, (x, weight, positions), g)):
        assert torch.allclose(a, b, atol=1e-10)
    assert torch.equal(state.history(), ref_state.history())


def test_taps_truncation_stays_within_its_tolerance():
    K, tol = 25, 1e-4
    x = torch.rand(60, 4, 8, dtype=D)
    weight, positions = _synapses(out_features=6, in_features=8, max_delay=K)
    ref, _ = fd.delay_conv_reference(x, weight, positions, 0.23, K)
    y, _ = fd.delay_conv(x, weight, positions, 0.23, K, method="taps", tolerance=tol)
    start, taps = fd.tap_window(positions, 0.23, K, tolerance=tol)
    assert taps == 5  # R² = 1/4 + 2·0.5²·ln(1e4) → R = 2.2 → 5 taps instead of 25
    bound = tol * (K - taps) * weight.detach().abs().sum((1, 2)) * x.max()
    assert ((y - ref).abs() <= bound).all()
    assert (y - ref).abs().max() > 0  # the truncation is real, not hidden by a dense fallback


def test_tap_window_covers_the_interpolation_support():
    positions = (torch.rand(200, dtype=D) * 2 - 1) * 12
    for interpolation, sigma in (("linear", 0.0), ("linear", 1.3), ("gauss", 0.23), ("gauss", 1.0)):
        start, taps = fd.tap_window(positions, sigma, 25, interpolation, tolerance=1e-6)
        full = fd.interpolation_taps(positions, sigma, 25, interpolation)
        inside = torch.zeros_like(full, dtype=torch.bool)
        inside.scatter_(-1, start[:, None] + torch.arange(taps), True)
        limit = 0.0 if interpolation == "linear" else 1e-6
        assert full[~inside].max() <= limit
    assert fd.tap_window(positions, 0.0, 25, "linear")[1] == 2
    assert fd.tap_window(positions, 0.23, 25, "gauss")[1] == 6
    assert fd.tap_window(positions, 12.0, 25, "gauss")[1] == 25


def test_float32_paths_agree_at_the_benchmark_kernel_size():
    K = 25
    x = (torch.rand(60, 8, 32) < 0.05).float()
    weight, positions = _synapses(out_features=16, in_features=32, max_delay=K, dtype=torch.float32)
    for sigma in (12.0, 0.23):
        ref, _ = fd.delay_conv_reference(x, weight, positions, sigma, K)
        for method in ("fourier", "taps"):
            y, _ = fd.delay_conv(x, weight, positions, sigma, K, method=method)
            assert (y - ref).abs().max() <= 1e-4 * ref.abs().max()


@pytest.mark.parametrize("method", ["fourier", "taps"])
def test_gradcheck(method):
    x = torch.randn(6, 2, 3, dtype=D, requires_grad=True)
    weight, positions = _synapses(out_features=2, in_features=3, count=2, max_delay=5)

    def run(x, weight, positions):
        return fd.delay_conv(x, weight, positions, 0.4, 5, method=method, tolerance=1e-14)[0]

    assert torch.autograd.gradcheck(run, (x, weight, positions))


def test_gradcheck_with_history():
    weight, positions = _synapses(out_features=2, in_features=3, max_delay=5)
    history = torch.randn(5, 2, 3, dtype=D, requires_grad=True)

    def run(x, history, weight, positions):
        state = fd.DelayState(history, torch.tensor(3))
        return fd.delay_conv(x, weight, positions, 0.7, 5, method="taps", tolerance=1e-14, state=state)[0]

    assert torch.autograd.gradcheck(run, (torch.randn(4, 2, 3, dtype=D, requires_grad=True), history, weight, positions))


@pytest.mark.parametrize("method", ["dense", "fourier", "taps"])
def test_chunked_sequence_equals_whole_sequence(method):
    weight, positions = _synapses(max_delay=7)
    x = torch.randn(20, 3, 5, dtype=D)
    whole, final = fd.delay_conv(x, weight, positions, 0.8, 7, length="same", method=method)
    state, parts = None, []
    for chunk in (x[:3], x[3:11], x[11:]):
        y, state = fd.delay_conv(chunk, weight, positions, 0.8, 7, length="same", method=method, state=state)
        parts.append(y)
    assert torch.allclose(torch.cat(parts), whole, atol=1e-12)
    assert torch.equal(state.history(), final.history())


# -- integer delays ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dense", "fourier", "taps"])
def test_integer_mode_equals_the_one_hot_conv(method):
    K = 7
    x = torch.randn(15, 3, 5, dtype=D).requires_grad_()
    weight, positions = _synapses(count=2, max_delay=K)
    delays = fd.integer_delays(positions, K)
    y, _ = fd.integer_delay_conv(x, weight, delays, K, method=method)
    ref, _ = fd.kernel_conv(x, fd.one_hot_kernel(weight, delays, K), method="dense")
    assert torch.allclose(y, ref, atol=1e-12)
    g = torch.randn_like(ref)
    for a, b in zip(_grads(y, (x, weight), g), _grads(ref, (x, weight), g)):
        assert torch.allclose(a, b, atol=1e-12)
    # The official evaluation: "max" (linear) kernel at σ = 0 on rounded positions, normalised with +1e-7.
    rounded = torch.round(positions.detach()).clamp(-(K // 2), K // 2)
    official, _ = fd.delay_conv_reference(x, weight, rounded, 0.0, K, interpolation="linear")
    assert torch.allclose(y, official, rtol=1e-6, atol=1e-6)


def test_integer_mode_gradcheck():
    x = torch.randn(6, 2, 3, dtype=D, requires_grad=True)
    weight = torch.randn(2, 3, 2, dtype=D, requires_grad=True)
    delays = torch.randint(0, 4, (2, 3, 2))
    run = lambda x, w: fd.integer_delay_conv(x, w, delays, 4, method="taps", length="same")[0]  # noqa: E731
    assert torch.autograd.gradcheck(run, (x, weight))


@pytest.mark.skipif(not delay_kernels.available(), reason="numba is not installed")
def test_compiled_kernel_equals_densified_fourier_with_history():
    values = torch.randn(6, 4, 2, 3, dtype=D, requires_grad=True)
    start = torch.randint(0, 6, (6, 4, 2))
    x = torch.randn(5 + 11, 3, 4, dtype=D, requires_grad=True)  # 8 history rows
    y = delay_kernels.sparse_tap_conv(x, values, start, 8, 14)
    ref = fd._fourier_core(x, 8, fd._densify(values, start, 9), 14)
    assert torch.allclose(y, ref, atol=1e-12)
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, (x, values), g), _grads(ref, (x, values), g)):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.skipif(not delay_kernels.available(), reason="numba is not installed")
@pytest.mark.parametrize("batch, inputs, outputs, taps", [(20, 35, 18, 3), (32, 16, 16, 1), (16, 17, 33, 11),
                                                          (3, 4, 2, 37)])
def test_compiled_kernel_on_full_and_partial_vector_blocks(batch, inputs, outputs, taps):
    # 16 samples × 16 channels form one register block; shapes mix whole blocks with remainders; 37 taps
    # take two passes of the value gradient (at most 32 taps each)
    max_delay = taps + 10
    values = torch.randn(outputs, inputs, 2, taps, dtype=D, requires_grad=True)
    start = torch.randint(0, max_delay + 1 - taps, (outputs, inputs, 2))
    x = torch.randn(3 + 21, batch, inputs, dtype=D, requires_grad=True)  # 3 history rows
    y = delay_kernels.sparse_tap_conv(x, values, start, 3, 26)
    ref = fd._fourier_core(x, 3, fd._densify(values, start, max_delay), 26)
    assert torch.allclose(y, ref, atol=1e-11)
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, (x, values), g), _grads(ref, (x, values), g)):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.skipif(not delay_kernels.available(), reason="numba is not installed")
@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-13), (torch.float32, 1e-6)])
@pytest.mark.parametrize("sigma", [0.23, 1.0, 12.0])
def test_compiled_gauss_window_equals_the_gathered_taps(dtype, atol, sigma):
    # 300 synapses: one whole task of 256 synapses and a remainder
    weight, positions = _synapses(out_features=20, in_features=15, max_delay=25, dtype=dtype)
    start, taps = fd.tap_window(positions, sigma, 25)
    window = start.unsqueeze(-1) + torch.arange(taps)
    ref = weight.unsqueeze(-1) * fd.interpolation_taps(positions, sigma, 25).gather(-1, window)
    values = delay_kernels.gauss_window(
        weight, positions, start, taps, sigma + fd.SIGMA_FLOOR, 25, fd.NORM_EPS, fd._tap_floor(dtype)
    )
    assert values.dtype == dtype and torch.allclose(values, ref, rtol=0, atol=atol)
    g = torch.randn_like(ref)
    for a, b in zip(_grads(values, (weight, positions), g), _grads(ref, (weight, positions), g)):
        assert torch.allclose(a, b, rtol=0, atol=10 * atol)


def test_taps_with_bfloat16_synapses_run_on_a_float32_input():
    weight, positions = _synapses(out_features=6, in_features=5, max_delay=25, dtype=torch.float32)
    x = (torch.rand(30, 4, 5) < 0.3).float()
    low = (weight.detach().bfloat16(), positions.detach().bfloat16())
    y, _ = fd.delay_conv(x, *low, 0.23, 25, method="taps")
    ref, _ = fd.delay_conv_reference(x, *(t.float() for t in low), 0.23, 25)
    assert y.dtype == torch.float32
    # tap values computed in bfloat16 (8 significant bits; exp, normaliser, product and cast each round)
    assert (y - ref).abs().max() <= 0.05 * ref.abs().max()


@pytest.mark.skipif(not delay_kernels.available(), reason="numba is not installed")
def test_compiled_gauss_window_gradcheck():
    weight, positions = _synapses(out_features=3, in_features=2, count=2, max_delay=5)
    start, taps = fd.tap_window(positions, 0.4, 5, tolerance=1e-14)

    def run(weight, positions):
        floor = fd._tap_floor(weight.dtype)
        return delay_kernels.gauss_window(weight, positions, start, taps, 0.4 + fd.SIGMA_FLOOR, 5, fd.NORM_EPS, floor)

    assert torch.autograd.gradcheck(run, (weight, positions))


@pytest.mark.skipif(not delay_kernels.available(), reason="numba is not installed")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch, inputs, outputs, taps", [(20, 35, 18, 1), (16, 16, 33, 4), (3, 5, 2, 1)])
def test_spike_inputs_take_the_bit_mask_path_with_equal_results(monkeypatch, dtype, batch, inputs, outputs, taps):
    values = torch.randn(outputs, inputs, 2, taps, dtype=dtype)
    start = torch.randint(0, 14 - taps, (outputs, inputs, 2))
    spikes = (torch.rand(3 + 21, batch, inputs) < 0.3).to(dtype)
    ref = fd._fourier_core(spikes, 3, fd._densify(values, start, 13), 26)
    calls = []
    monkeypatch.setattr(delay_kernels, "_spike_tap_conv",
                        lambda *args, original=delay_kernels._spike_tap_conv: calls.append(1) or original(*args))
    with torch.no_grad():
        y = delay_kernels.sparse_tap_conv(spikes, values, start, 3, 26)
    assert calls == [1]
    assert torch.allclose(y, ref, atol=1e-11 if dtype == D else 1e-4)


@pytest.mark.skipif(not delay_kernels.available(), reason="numba is not installed")
@pytest.mark.parametrize("odd", [0.5, 2.0, float("nan")])
def test_inputs_other_than_zero_and_one_take_the_vector_path(monkeypatch, odd):
    values = torch.randn(4, 3, 1, 1, dtype=D)
    start = torch.randint(0, 5, (4, 3, 1))
    x = (torch.rand(10, 17, 3) < 0.5).to(D)
    x[7, 16, 2] = odd  # one value in the last, partial group of 16 samples
    monkeypatch.setattr(delay_kernels, "_spike_tap_conv", lambda *args: pytest.fail("took the spike path"))
    with torch.no_grad():
        y = delay_kernels.sparse_tap_conv(x, values, start, 0, 12)
    if math.isnan(odd):  # the NaN reaches the sample's outputs, and only them
        assert y[:, 16].isnan().any() and not y[:, :16].isnan().any()
        return
    ref = fd._fourier_core(x, 0, fd._densify(values, start, 5), 12)
    assert torch.allclose(y, ref, atol=1e-11)


@pytest.mark.parametrize("method", ["dense", "fourier", "taps"])
def test_an_initial_state_equals_no_state(method):
    # the zero history of a fresh state is skipped on CPU instead of concatenated: same outputs, states, gradients
    x = torch.randn(9, 3, 5, dtype=D, requires_grad=True)
    weight, positions = _synapses(max_delay=7)
    fresh = fd.initial_delay_state(7, 3, 5, dtype=D)
    y0, s0 = fd.delay_conv(x, weight, positions, 0.4, 7, method=method, tolerance=1e-14)
    y1, s1 = fd.delay_conv(x, weight, positions, 0.4, 7, method=method, tolerance=1e-14, state=fresh)
    assert torch.allclose(y0, y1, atol=1e-12)
    assert torch.equal(s0.history(), s1.history())
    g = torch.randn_like(y0)
    for a, b in zip(_grads(y0, (x, weight, positions), g), _grads(y1, (x, weight, positions), g)):
        assert torch.allclose(a, b, atol=1e-12)


def test_taps_without_the_compiled_kernels_equal_the_reference(monkeypatch):
    monkeypatch.setattr(delay_kernels, "available", lambda: False)
    x = torch.randn(12, 2, 5, dtype=D, requires_grad=True)
    weight, positions = _synapses(count=2, max_delay=7)
    ref, _ = fd.delay_conv_reference(x, weight, positions, 0.3, 7)
    y, _ = fd.delay_conv(x, weight, positions, 0.3, 7, method="taps", tolerance=1e-14)
    assert torch.allclose(y, ref, atol=1e-12)
    g = torch.randn_like(ref)
    for a, b in zip(_grads(y, (x, weight, positions), g), _grads(ref, (x, weight, positions), g)):
        assert torch.allclose(a, b, atol=1e-10)
    assert fd.choose_method(steps=100, batch=8, in_features=16, out_features=16, max_delay=7, taps=1) != "taps"


# -- streaming -------------------------------------------------------------------------------------------------


def _run_steps(step, x, extra, state):
    xs = torch.cat([x, x.new_zeros(extra, *x.shape[1:])])
    outs = []
    for t in range(xs.shape[0]):
        y, state = step(xs[t], state)
        outs.append(y)
    return torch.stack(outs), state


@pytest.mark.parametrize("length", ["same", "extend"])
def test_streaming_equals_sequence(length):
    K = 7
    x = torch.randn(12, 3, 5, dtype=D)
    weight, positions = _synapses(count=2, max_delay=K)
    extra = fd.output_length(12, K, length) - 12
    start = fd.initial_delay_state(K, 3, 5, dtype=D)

    seq, final = fd.delay_conv(x, weight, positions, 1.1, K, length=length)
    kernel = fd.delay_kernel(weight, positions, 1.1, K)
    steps, state = _run_steps(lambda x_t, s: fd.delay_step(x_t, kernel, s), x, extra, start)
    assert torch.allclose(steps, seq, atol=1e-12)
    assert torch.equal(state.history(), final.history())

    delays = fd.integer_delays(positions, K)
    seq, final = fd.integer_delay_conv(x, weight, delays, K, length=length)
    steps, state = _run_steps(lambda x_t, s: fd.integer_delay_step(x_t, weight, delays, s), x, extra, start)
    assert torch.allclose(steps, seq, atol=1e-12)
    assert torch.equal(state.history(), final.history())

    taps = fd.interpolation_taps(positions[0, :, 0], 1.1, K)
    seq, final = fd.depthwise_delay_conv(x, taps, length=length)
    steps, state = _run_steps(lambda x_t, s: fd.depthwise_delay_step(x_t, taps, s), x, extra, start)
    assert torch.allclose(steps, seq, atol=1e-12)
    assert torch.equal(state.history(), final.history())


def test_streaming_continues_a_sequence_state():
    weight, positions = _synapses(max_delay=7)
    x = torch.randn(15, 2, 5, dtype=D)
    whole, _ = fd.delay_conv(x, weight, positions, 0.5, 7, length="same")
    head, state = fd.delay_conv(x[:9], weight, positions, 0.5, 7, length="same")
    kernel = fd.delay_kernel(weight, positions, 0.5, 7)
    tail, _ = _run_steps(lambda x_t, s: fd.delay_step(x_t, kernel, s), x[9:], 0, state)
    assert torch.allclose(torch.cat([head, tail]), whole, atol=1e-12)


# -- costs -----------------------------------------------------------------------------------------------------


def test_auto_never_picks_taps_when_the_window_is_the_whole_kernel():
    shape = dict(steps=100, batch=64, in_features=256, out_features=256, max_delay=25)
    assert fd.choose_method(taps=25, **shape) != "taps"
    costs = [fd.estimate_cost("taps", taps=w, **shape) for w in (1, 2, 6, 25)]
    assert costs == sorted(costs)


# -- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda w, p, x: fd.delay_conv(x, w, p, 1.0, 0), "max_delay .* must be an integer >= 1"),
        (lambda w, p, x: fd.delay_conv(x, w, p, 1.0, 6), "max_delay must be odd"),
        (lambda w, p, x: fd.delay_conv(x, w, p * 3, 1.0, 7), r"positions must lie in \[-3, 3\]"),
        (lambda w, p, x: fd.delay_conv(x, w, p, 1.0, 7, method="magic"), "unknown delay method 'magic'"),
        (lambda w, p, x: fd.delay_conv(x, w, p, 1.0, 7, interpolation="cubic"), "unknown interpolation 'cubic'"),
        (lambda w, p, x: fd.delay_conv(x, w, p, 1.0, 7, length="full"), "unknown output length 'full'"),
        (lambda w, p, x: fd.delay_conv(x[..., :4], w, p, 1.0, 7), r"expected input of shape \[T, B, 5\]"),
        (lambda w, p, x: fd.delay_conv(x, w[..., :1, :], p, 1.0, 7), "must both have shape"),
        (lambda w, p, x: fd.delay_conv(x, w, p, 1.0, 7, method="taps", tolerance=0.0), "tolerance must lie in"),
        (lambda w, p, x: fd.integer_delay_conv(x, w, torch.full(w.shape, 7), 7), r"integer delays must lie in \[0, 6\]"),
        (lambda w, p, x: fd.integer_delay_conv(x, w, p, 7), "must be an integer tensor"),
    ],
)
def test_bad_arguments(call, message):
    weight, positions = _synapses(max_delay=7)
    with torch.no_grad():
        positions.clamp_(-3, 3)
    with pytest.raises(ValueError, match=message):
        call(weight, positions, torch.randn(5, 2, 5, dtype=D))


@pytest.mark.skipif(not delay_kernels.available(), reason="numba is not installed")
def test_integer_delay_lif_is_the_delay_the_affine_and_the_lif_in_one_pass():
    torch.manual_seed(6)
    weight = torch.randn(9, 7, 2, dtype=D)
    delays = torch.randint(0, 11, (9, 7, 2))
    x = (torch.rand(25, 18, 7) < 0.4).to(D)
    gain, bias = torch.rand(9, dtype=D) + 0.5, torch.randn(9, dtype=D) * 0.2
    beta, threshold = torch.rand(9, dtype=D) * 0.9, torch.rand(9, dtype=D) + 0.5  # per-neuron θ
    start = LIFState(torch.randn(18, 9, dtype=D), (torch.rand(18, 9) < 0.5).to(D))
    options = dict(reset="soft", scale_input=True)
    spikes, state, lif = fd.integer_delay_lif(
        x, weight, delays, 11, start, beta, threshold, gain=gain, bias=bias, length="same", **options
    )
    y, ref_state = fd.integer_delay_conv(x, weight, delays, 11, length="same", method="taps")
    ref, ref_lif = lif_sequence(gain * y + bias, start, beta, threshold, **options)
    assert torch.equal(spikes, ref) and torch.equal(state.buffer, ref_state.buffer)
    assert torch.allclose(lif.u, ref_lif.u, rtol=0, atol=1e-12) and torch.equal(lif.s, ref_lif.s)
    learned_gain = gain.clone().requires_grad_()  # a gradient is asked for: the caller must run the steps
    assert fd.integer_delay_lif(x, weight, delays, 11, start, beta, threshold, gain=learned_gain) is None
