"""Shared fixtures: a smooth test surrogate that makes spike Functions differentiable for gradcheck."""

from __future__ import annotations

import pytest
import torch

from spikescale.functional.surrogate import Surrogate


class SmoothSpike(Surrogate):
    """Test-only surrogate whose forward is ``sigmoid(k·x)`` and whose grad is its exact derivative.

    With it, the hand-written BPTT of every spiking Function computes the true gradient of a smooth
    function, so ``torch.autograd.gradcheck`` can compare it with finite differences (the Heaviside
    forward is piecewise constant and has no useful finite-difference gradient).
    """

    name = "smooth_test"
    slope = 4.0

    def spike(self, u, threshold, out=None):
        value = torch.sigmoid(self.slope * (u - threshold))
        if out is None:
            return value
        return out.copy_(value)

    def grad(self, x):
        s = torch.sigmoid(self.slope * x)
        return self.slope * s * (1 - s)


@pytest.fixture
def smooth_spike() -> Surrogate:
    return SmoothSpike()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def _backend_params():
    from spikescale.kernels import BACKENDS, is_available

    return [
        pytest.param(name, marks=() if is_available(name) else pytest.mark.skip(reason=f"{name} not installed"))
        for name in BACKENDS
    ]


@pytest.fixture(params=_backend_params())
def backend(request):
    """Run the test once per backend of ``spikescale.kernels.BACKENDS`` (skipping uninstalled ones)."""
    from spikescale.kernels import use_backend

    with use_backend(request.param):
        yield request.param


@pytest.fixture
def dh_call():
    """``dh_call(recurrent, fn, options)``: the DH-LIF sequence Function ``fn`` (feed-forward, or recurrent with
    ``w_rec``) as ``call(current, [w_rec,] alpha, beta, theta, i0, u0, s0) -> (spikes, i, u)``, so fast paths
    and references take the same flat tensor arguments (for comparisons and ``gradcheck``)."""
    from spikescale.functional.dh_lif import DHLIFState

    def make(recurrent, fn, options):
        def call(current, *rest):
            if recurrent:
                w_rec, alpha, beta, theta, i0, u0, s0 = rest
                spikes, state = fn(current, DHLIFState(i0, u0, s0), w_rec, alpha, beta, theta, **options)
            else:
                alpha, beta, theta, i0, u0, s0 = rest
                spikes, state = fn(current, DHLIFState(i0, u0, s0), alpha, beta, theta, **options)
            return spikes, state.i, state.u

        return call

    return make


@pytest.fixture
def mnist_folder(tmp_path):
    """``make(height, width)``: ``tmp_path`` holding gzipped MNIST-format IDX files — 40 training and 10 test
    images of random pixels, labels cycling through 0–3."""
    import gzip
    import struct

    import numpy as np

    def write(path, array):
        header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        with gzip.open(path, "wb") as handle:
            handle.write(header + array.astype(np.uint8).tobytes())

    def make(height, width):
        rng = np.random.default_rng(0)
        for prefix, n in (("train", 40), ("t10k", 10)):
            write(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, height, width)))
            write(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 4)
        return tmp_path

    return make
