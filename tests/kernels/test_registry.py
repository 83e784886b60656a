import pytest
import torch

import spikescale.kernels as kernels
from spikescale.kernels import BACKENDS, CHOICES, OPS, Backend, backend_setting, select, use_backend


def test_table_lists_backends_with_known_operations():
    assert set(CHOICES) == {"auto", *BACKENDS}
    assert BACKENDS["torch"].module is None and "cuda" in BACKENDS["torch"].devices
    for backend in BACKENDS.values():
        assert set(backend.ops) <= set(OPS)
        assert backend.install and backend.summary


def test_use_backend_is_a_setter_and_a_context_manager():
    assert backend_setting() == "auto"
    with use_backend("torch"):
        assert backend_setting() == "torch"
        assert select("lif_sequence", torch.device("cpu")) is None
    assert backend_setting() == "auto"
    use_backend("torch")
    try:
        assert backend_setting() == "torch"
    finally:
        use_backend("auto")


def test_auto_picks_numba_on_cpu_and_torch_on_cuda():
    pytest.importorskip("numba")
    assert select("lif_sequence", torch.device("cpu")).__name__ == "spikescale.kernels.numba_cpu"
    assert select("lif_sequence", torch.device("cuda")) is None
    with use_backend("numba"):  # CUDA tensors always run on PyTorch ops
        assert select("dendritic_sum", torch.device("cuda")) is None


def test_unknown_names_raise_value_error():
    with pytest.raises(ValueError, match="unknown backend 'cuda-magic'"):
        use_backend("cuda-magic")
    with pytest.raises(ValueError, match="unknown kernel operation 'fft'"):
        select("fft", torch.device("cpu"))


def test_missing_backend_raises_import_error_with_install_hint(monkeypatch):
    ghost = Backend("ghost", "spikescale.kernels.ghost", ("cpu",), ("lif_sequence",), "no_such_package_xyz",
                    "pip install no-such-package-xyz", "test only")
    monkeypatch.setitem(BACKENDS, "ghost", ghost)
    monkeypatch.setattr(kernels, "CHOICES", (*kernels.CHOICES, "ghost"))
    with pytest.raises(ImportError, match="pip install no-such-package-xyz"):
        use_backend("ghost")
    assert backend_setting() == "auto"


def test_kernels_follow_and_keep_torch_thread_count():
    numba = pytest.importorskip("numba")
    from spikescale.functional import LIFState, lif_sequence

    previous = torch.get_num_threads()
    large = torch.randn(100, 32, 32)  # above the size where kernels run on one thread

    def run(current):
        with use_backend("numba"):
            lif_sequence(current, LIFState(torch.zeros(current.shape[1:]), torch.zeros(current.shape[1:])), torch.rand(32))

    try:
        torch.set_num_threads(1)
        run(large)
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
        torch.set_num_threads(2)
        run(large)
        assert torch.get_num_threads() == 2 and numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
        run(torch.randn(5, 2, 32))  # small: one thread, PyTorch's count unchanged
        assert torch.get_num_threads() == 2 and numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
