"""The demo: vanilla SFNN vs DH-SFNN on a multi-timescale spiking XOR batch."""

from __future__ import annotations

import torch

from ..data.xor import multiscale_xor
from ..nn import SpikeMonitor, build_network, count_parameters

MODELS = {
    "vanilla SFNN": dict(kind="sfnn"),
    "DH-SFNN, 1 branch": dict(kind="dh_sfnn", branches=1, alpha_init="large"),
    "DH-SFNN, 2 branches (beneficial)": dict(kind="dh_sfnn", branches=2, mask="contiguous", alpha_init=["large", "small"]),
    "DH-SRNN, 1 branch": dict(kind="dh_srnn", branches=1, alpha_init="medium"),
}


def run_demo(batch: int = 64, seed: int = 0) -> None:
    torch.manual_seed(seed)
    data = multiscale_xor(batch, generator=torch.Generator().manual_seed(seed))
    print(f"multi-timescale spiking XOR batch: x {tuple(data.x.shape)} [T, B, C], input density {data.x.mean():.3f}")
    print(f"{'model':36s} {'params':>7s} {'spikes/neuron':>14s} {'rate':>7s} {'synops/sample':>14s}")
    for name, spec in MODELS.items():
        spec = dict(spec)
        kind = spec.pop("kind")
        model = build_network(kind, 40, [16], 2, readout="linear", seed=seed, **spec)
        with torch.no_grad(), SpikeMonitor(model) as monitor:
            model(data.x)
        hidden = monitor.summary()["layers.0"]
        print(
            f"{name:36s} {count_parameters(model):7d} {hidden['spikes_per_neuron']:14.2f} "
            f"{hidden['firing_rate']:7.3f} {monitor.synops_per_sample():14.0f}"
        )
