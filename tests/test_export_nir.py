import numpy as np
import pytest
import torch

from spikescale.cli import main
from spikescale.export import simulate_nir, to_nir, write_nir
from spikescale.nn import DHDense, DHRecurrent, LIFDense, Network, Readout, build_network

nir = pytest.importorskip("nir")


def _excite(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                p.abs_().mul_(2.0)
    return model.double()


CASES = {
    "lif-hard": lambda: Network([LIFDense(6, 5, reset="hard")], Readout(5, 3)),
    "lif-soft": lambda: Network([LIFDense(6, 5)], Readout(5, 3, mode="linear")),
    "lif-none-unscaled": lambda: Network([LIFDense(6, 5, reset="none", scale_input=False)], Readout(5, 3)),
    "dh-sfnn": lambda: build_network("dh_sfnn", 6, [5, 4], 3, branches=2, reset="hard"),
    "dh-srnn": lambda: build_network("dh_srnn", 6, [5], 3, branches=3),
    "spike-count": lambda: Network([DHDense(6, 5, branches=2)], Readout(5, 3, mode="spike_count", threshold=0.5)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulated_nir_graph_matches_the_model(name, tmp_path):
    torch.manual_seed(0)
    model = _excite(CASES[name]())
    x = (torch.rand(40, 3, 6, dtype=torch.float64) < 0.5).double()
    with torch.no_grad():
        expected, _ = model(x)
    path = write_nir(model, tmp_path / "model.nir", dt=1e-3)
    graph = nir.read(path)
    assert float(graph.metadata["dt"]) == pytest.approx(1e-3)
    hidden = model.hidden_spikes(x)
    assert any(h.sum() > 0 for h in hidden)  # the comparison is not trivially all-silent
    simulated = simulate_nir(graph, x.numpy())
    np.testing.assert_allclose(simulated, expected.numpy(), atol=1e-9)


def test_dh_layer_becomes_branches_converging_on_a_soma():
    model = build_network("dh_sfnn", 8, [4], 2, branches=2, reset="hard")
    graph = to_nir(model)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds["layers.0.branch0.affine"] == "Affine" and kinds["layers.0.branch1.dendrite"] == "LI"
    assert kinds["layers.0.soma"] == "LIF" and kinds["readout.membrane"] == "LI"
    into_soma = [src for src, dst in graph.edges if dst == "layers.0.soma"]
    assert sorted(into_soma) == ["layers.0.branch0.dendrite", "layers.0.branch1.dendrite"]
    weights = graph.nodes["layers.0.branch0.affine"].weight
    assert np.count_nonzero(weights) == int(model.layers[0].mask[:, 0].sum())  # mask written into the weights
    assert graph.nodes["layers.0.soma"].metadata["reset"] == "hard"


def test_soft_reset_is_marked_in_metadata(tmp_path):
    path = write_nir(build_network("sfnn", 3, [2], 2), tmp_path / "soft.nir")
    assert nir.read(path).nodes["layers.0.soma"].metadata["reset"] == "subtract"


def test_faithful_models_are_refused():
    with pytest.raises(ValueError, match="random state"):
        to_nir(build_network("dh_sfnn", 3, [2], 2, branches=1, faithful=True))


def test_cli_export(tmp_path, capsys):
    args = ["train", "xor-delayed-dh", "--out", str(tmp_path), "--set", "train.epochs=1", "--set", "data.batches_per_epoch=1",
            "--set", "data.batch_size=8", "--set", "data.eval_samples=8", "--set", "train.progress=false", "--set", "report.plots=false"]
    assert main(args) == 0
    out = tmp_path / "model.nir"
    assert main(["export", str(tmp_path / "xor-delayed-dh"), "--format", "nir", "--out", str(out)]) == 0
    graph = nir.read(out)
    assert "layers.0.branch0.dendrite" in graph.nodes
    assert main(["export", str(tmp_path / "nothing"), "--out", str(out)]) == 2


@pytest.mark.parametrize("kind", ["synaptic", "axonal", "dendritic"])
@pytest.mark.parametrize("delays", ["learned", "none"])
def test_delay_network_exports_to_delay_nodes(kind, delays, tmp_path):
    torch.manual_seed(1)
    model = build_network("delays", 6, [5], 3, max_delay=7, delay_kind=kind, delays=delays, dropout=0.0, tau=1.5,
                          reset="hard", length="same").double()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics, then evaluate with integer delays
        model.train()
        model((torch.rand(30, 8, 6, dtype=torch.float64) < 0.5).double())
        for name, p in model.named_parameters():
            if name.endswith("weight") and "norm" not in name:
                p.abs_()
    model.eval()
    x = (torch.rand(25, 2, 6, dtype=torch.float64) < 0.5).double()
    with torch.no_grad():
        expected, _ = model(x)
    graph = nir.read(write_nir(model, tmp_path / "delays.nir"))
    if delays == "learned":
        assert any(type(node).__name__ == "Delay" for node in graph.nodes.values())
    assert any(h.sum() > 0 for h in model.hidden_spikes(x))
    np.testing.assert_allclose(simulate_nir(graph, x.numpy()), expected.numpy(), atol=1e-9)
