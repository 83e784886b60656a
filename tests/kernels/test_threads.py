"""numba's thread pool must not change PyTorch's thread count, whichever compiled kernel starts it."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")

_FIRST_KERNEL = {
    "delay kernels": """
        from spikescale.functional import delays
        x = (torch.rand(30, 16, 32) < 0.2).float()
        delays.delay_conv(x, torch.randn(32, 32, 1), torch.zeros(32, 32, 1), 0.23, 5, method="taps")
    """,
    "LIF kernel": """
        from spikescale.functional import LIFState, lif_sequence
        current = torch.randn(100, 32, 32)
        lif_sequence(current, LIFState(torch.zeros(32, 32), torch.zeros(32, 32)), torch.rand(32))
    """,
}


@pytest.mark.parametrize("first", sorted(_FIRST_KERNEL))
def test_first_kernel_call_keeps_one_thread(first):
    # A fresh interpreter: the pool starts at most once per process.
    script = "import torch\ntorch.set_num_threads(1)\n" + textwrap.dedent(_FIRST_KERNEL[first]) + textwrap.dedent("""
        import numba
        print(torch.get_num_threads(), numba.get_num_threads())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]
