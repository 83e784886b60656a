import pytest
import torch

from spikescale.functional import leaky_integrator, linear_recurrence, linear_recurrence_reference, linear_scan

D = torch.float64


@pytest.mark.parametrize("steps", [1, 3, 17, 64, 101])
@pytest.mark.parametrize("method", ["loop", "chunked"])
def test_scan_matches_reference(steps, method):
    x = torch.randn(steps, 3, 4, 2, dtype=D)
    a = torch.rand(4, 2, dtype=D)
    y0 = torch.randn(3, 4, 2, dtype=D)
    expected = linear_recurrence_reference(x, a, y0, scale_input=False)
    assert torch.allclose(linear_scan(x, a, y0, method=method), expected, atol=1e-12)
    expected_rev = linear_recurrence_reference(x.flip(0), a, y0, scale_input=False).flip(0)
    assert torch.allclose(linear_scan(x, a, y0, reverse=True, method=method), expected_rev, atol=1e-12)


def test_chunked_scan_handles_zero_and_one_factors():
    x = torch.randn(40, 2, 3, dtype=D)
    a = torch.tensor([0.0, 1.0, 0.5], dtype=D)
    assert torch.allclose(linear_scan(x, a, method="chunked"), linear_scan(x, a, method="loop"), atol=1e-12)


def test_golden_trace_leaky_integrator():
    x = torch.tensor([1.0, 0.0, 0.0, 2.0, 0.0], dtype=D).view(5, 1, 1)
    m = leaky_integrator(x, torch.tensor([0.5], dtype=D))
    assert m.flatten().tolist() == [0.5, 0.25, 0.125, 1.0625, 0.53125]


@pytest.mark.parametrize("scale_input", [True, False])
def test_gradcheck_linear_recurrence(scale_input):
    x = torch.randn(9, 2, 3, dtype=D, requires_grad=True)
    a = torch.rand(3, dtype=D, requires_grad=True)
    y0 = torch.randn(2, 3, dtype=D, requires_grad=True)
    fn = lambda x, a, y0: linear_recurrence(x, a, y0, scale_input=scale_input)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, a, y0))


def test_float32_matches_reference():
    x = torch.randn(50, 4, 8)
    a = torch.rand(8)
    assert torch.allclose(linear_recurrence(x, a), linear_recurrence_reference(x, a), atol=1e-6)


def test_factor_shape_is_checked():
    with pytest.raises(ValueError, match="trailing dims"):
        linear_recurrence(torch.randn(5, 2, 3), torch.rand(4))
    with pytest.raises(ValueError, match="unknown scan method"):
        linear_scan(torch.randn(5, 2, 3), torch.rand(3), method="fft")
