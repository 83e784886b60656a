import math

import pytest
import torch

from spikescale.nn import TimingFactor


@pytest.mark.parametrize("preset,low,high", [("small", 0.018, 0.5), ("medium", 0.5, 0.982), ("large", 0.881, 0.9975)])
def test_presets_cover_their_factor_ranges(preset, low, high):
    factor = TimingFactor((20000,), preset)()
    assert factor.min() >= low - 1e-3 and factor.max() <= high + 1e-3
    assert factor.min() < low + 0.02 and factor.max() > high - 0.005


def test_per_branch_presets():
    factor = TimingFactor((500, 2), ["large", "small"])()
    assert factor[:, 0].min() > 0.88 and factor[:, 1].max() <= 0.5


def test_exp_parameterisation_matches_and_moves_with_dt():
    torch.manual_seed(0)
    sig = TimingFactor((100,), "medium")()
    torch.manual_seed(0)
    exp = TimingFactor((100,), "medium", param="exp", dt=1.0)
    assert torch.allclose(exp(), sig, atol=1e-6)
    tau = torch.exp(exp.log_tau)
    exp.dt = 2.0
    assert torch.allclose(exp(), torch.exp(-2.0 / tau))
    assert torch.allclose(exp(), sig ** 2, atol=1e-5)


def test_fixed_factor_is_a_buffer():
    fixed = TimingFactor((3,), 0.9, learnable=False)
    assert list(fixed.parameters()) == [] and "raw" in fixed.state_dict()
    assert torch.allclose(fixed(), torch.full((3,), 0.9))


@pytest.mark.parametrize("init,message", [("huge", "unknown timing init 'huge'"), (1.5, "must lie in"), ((3, 1), "low <= high"), (["large"], "has 1 entries")])
def test_timing_errors(init, message):
    with pytest.raises(ValueError, match=message):
        TimingFactor((4, 2), init)


def test_unknown_parameterisation():
    with pytest.raises(ValueError, match="unknown timing parameterisation"):
        TimingFactor((2,), param="tanh")
    assert math.isfinite(TimingFactor((2,), param="exp")().sum().item())
