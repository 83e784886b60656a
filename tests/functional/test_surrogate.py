import math

import pytest
import torch

from spikescale.functional import get_surrogate, heaviside
from spikescale.functional.surrogate import ATan, FastSigmoid, MultiGaussian, Rectangular


def test_mg_peak_integral_and_sign_change():
    mg = get_surrogate("mg")
    assert mg.grad(torch.tensor(0.0, dtype=torch.float64)).item() == pytest.approx(0.439, abs=5e-4)
    x = torch.linspace(-40, 40, 800_001, dtype=torch.float64)
    g = mg.grad(x)
    assert torch.trapezoid(g, x).item() == pytest.approx(0.425, abs=1e-6)
    positive = x[(x > 0) & (g > 0)]
    assert positive.max().item() == pytest.approx(1.272, abs=2e-3)
    assert g.min().item() == pytest.approx(-0.0157, abs=5e-4)


def test_mg_with_h_zero_is_plain_gaussian():
    g = get_surrogate("mg", h=0.0).grad(torch.tensor(0.0, dtype=torch.float64)).item()
    assert g == pytest.approx(0.5 / (0.5 * math.sqrt(2 * math.pi)), rel=1e-12)  # 0.399


@pytest.mark.parametrize("spec", [ATan(alpha=5.0), FastSigmoid(slope=10.0), Rectangular(width=0.5), MultiGaussian()])
def test_surrogates_peak_at_threshold_and_are_even(spec):
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    g = spec.grad(x)
    assert torch.allclose(g, g.flip(0))
    assert g.argmax().item() == 300 or g[300] == g.max()


def test_heaviside_forward_is_strict_and_backward_is_surrogate():
    x = torch.tensor([-0.1, 0.0, 0.1], requires_grad=True)
    s = heaviside(x, "atan")
    assert s.tolist() == [0.0, 0.0, 1.0]
    s.sum().backward()
    assert torch.allclose(x.grad, ATan().grad(x.detach()))


def test_get_surrogate_by_mapping_and_errors():
    assert get_surrogate({"name": "atan", "alpha": 5}) == ATan(alpha=5.0)
    assert get_surrogate(get_surrogate("rect")).spec() == {"name": "rect", "width": 1.0}
    with pytest.raises(ValueError, match="unknown surrogate 'nope'"):
        get_surrogate("nope")
    with pytest.raises(ValueError, match="has no parameter"):
        get_surrogate("mg", alpha=3)
    with pytest.raises(ValueError, match="needs a 'name'"):
        get_surrogate({"alpha": 3})
