"""Mixed precision: bf16 synaptic products, float32 neuron dynamics."""

import pytest
import torch

from spikescale.experiments.config import load_recipe
from spikescale.experiments.runner import run_recipe
from spikescale.nn import build_network

TINY = ["data.options={steps: 30}", "data.batch_size=64", "data.batches_per_epoch=10", "data.eval_samples=128",
        "train.epochs=3", "train.progress=false", "report.plots=false", "report.gradient_flow=false", "report.raster_samples=0"]


@pytest.mark.parametrize("kind", ["sfnn", "dh_sfnn", "dh_srnn"])
def test_dynamics_stay_float32_under_bf16_autocast(kind):
    torch.manual_seed(0)
    model = build_network(kind, 12, [8], 3, **({"branches": 2} if kind != "sfnn" else {}))
    x = (torch.rand(20, 4, 12) < 0.3).float()
    reference, _ = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = model(x)
    assert out.dtype == torch.float32 and all(t.dtype == torch.float32 for t in state[0])
    assert torch.allclose(out, reference, atol=0.05)
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bf16_training_tracks_float32(tmp_path):
    full = run_recipe(load_recipe("xor-delayed-dh", TINY), tmp_path / "fp32")
    mixed = run_recipe(load_recipe("xor-delayed-dh", TINY + ["train.amp=bf16"]), tmp_path / "bf16")
    assert abs(mixed["train_loss"] - full["train_loss"]) < 0.05


def test_fp16_needs_cuda():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        from spikescale.train.trainer import TrainConfig

        TrainConfig(amp="fp16")
