import pytest
import torch
import torch.nn.functional as F

from spikescale.data.batch import Batch
from spikescale.train.objective import StepResult
from spikescale.train.ssr import Regulariser
from spikescale.train.ttfs_objective import TTFSObjective, build_ttfs


def blobs(n=96, features=12, classes=3, seed=0):
    """Separable synthetic intensities: class k lights up its own third of the inputs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.rand(n, features, generator=g) * 0.3
    block = features // classes
    for k in range(classes):
        x[y == k, k * block:(k + 1) * block] += 0.6
    x[torch.rand(n, features, generator=g) < 0.2] = 0.0
    return Batch(x.clamp(0, 1), y)


def test_build_rejects_unknown_keys_by_name():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hidden', 'lr'\]"):
        build_ttfs({"hidden": 400, "lr": 0.1, "sigma": 0.2})
    with pytest.raises(ValueError, match=r"regularisers\[0\] \(m_ssr\): unknown key\(s\) \['strength'\]"):
        build_ttfs({"regularisers": [{"name": "m_ssr", "strength": 1.0}]})
    with pytest.raises(ValueError, match=r"regularisers\[1\].*unknown regulariser 'ssr'"):
        build_ttfs({"regularisers": [{"name": "m_ssr"}, {"name": "ssr"}]})
    with pytest.raises(ValueError, match="gamma has 3 values but the network has 2 layers"):
        build_ttfs({"sizes": [4, 3, 2], "regularisers": [{"name": "m_ssr", "gamma": [1.0, 1.0, 1.0]}]})
    with pytest.raises(ValueError, match="silent_output"):
        build_ttfs({"silent_output": "ignore"})
    with pytest.raises(ValueError, match="once"):
        TTFSObjective(regularisers=[Regulariser("m_ssr"), Regulariser("m_ssr")])


def test_build_defaults_and_options():
    model, objective = build_ttfs({"sizes": [12, 8, 3], "sigma": 0.5, "regularisers": [{"name": "f_ssr", "gamma": 1e-3}]})
    assert model.sizes == [12, 8, 3] and model.window == "global"
    assert objective.sigma == 0.5 and objective.regularisers[0].name == "f_ssr"
    assert "f_ssr" in repr(objective)


def test_step_result_loss_accuracy_and_extras():
    torch.manual_seed(0)
    model, objective = build_ttfs({"sizes": [12, 8, 3], "silent_penalty": 0.0, "regularisers": [{"name": "m_ssr", "gamma": 1e-2}]})
    batch = blobs()
    result = objective(model, batch)
    assert isinstance(result, StepResult) and result.count == 96
    out = model(batch.x)
    times = objective.finite_times(out.traces[-1])
    ce = F.cross_entropy(-times / objective.sigma, batch.y)
    reg = Regulariser("m_ssr", gamma=1e-2)(out.traces)
    assert result.loss.item() == pytest.approx((ce + reg.loss).item(), rel=1e-6)
    prediction = out.times.argmin(1)
    spiked = torch.isfinite(out.times).any(1)
    assert result.correct.item() == ((prediction == batch.y) & spiked).sum().item()
    extras = result.extras
    fired = [t.output.fired for t in out.traces]
    assert extras["spikes_per_neuron_layer1"].item() == pytest.approx(fired[0].sum().item() / 8)
    assert extras["spikes_per_neuron_layer2"].item() == pytest.approx(fired[1].sum().item() / 3)
    assert extras["spikes_per_neuron_hidden"].item() == pytest.approx(fired[0].sum().item() / 8)
    assert extras["spikes_per_neuron_input"].item() == pytest.approx(torch.isfinite(out.inputs).sum().item() / 12)
    assert extras["reg_m_ssr"].item() == pytest.approx(reg.batch_sum.item())
    assert extras["cross_entropy"].item() == pytest.approx(ce.item() * 96, rel=1e-6)
    synops = torch.isfinite(out.inputs).sum().item() * 8 + (fired[0] & (out.traces[0].output.times <= 3.0)).sum().item() * 3
    assert extras["synops"].item() == pytest.approx(synops)
    assert extras["synops_causal"].item() == pytest.approx(sum(t.output.count.sum().item() for t in out.traces))
    first = out.times.min(1).values
    assert extras["decision_time"].item() == pytest.approx(torch.where(torch.isfinite(first), first, torch.full_like(first, 3.0)).sum().item())
    result.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("silent_output", ["clamp", "extrapolate"])
def test_silent_outputs_give_finite_loss_and_gradients(silent_output):
    torch.manual_seed(0)
    model, objective = build_ttfs({"sizes": [12, 8, 3], "weight_mean": [2.0, -3.0], "silent_output": silent_output, "silent_penalty": 0.0})
    batch = blobs(n=16)
    result = objective(model, batch)
    assert result.extras["spikes_per_neuron_layer1"].item() > 0
    assert result.extras["no_output_spike"].item() == 16 and result.correct.item() == 0
    assert result.extras["silent_label"].item() == 16
    assert torch.isfinite(result.loss)
    result.loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(torch.isfinite(g).all() for g in grads)
    output_grad = model.layers[-1].weight.grad.abs().sum().item()
    if silent_output == "clamp":
        assert output_grad == 0.0  # clamped silent outputs carry no gradient
    else:
        assert output_grad > 0.0  # extrapolated times push the label neuron towards firing


def test_extrapolated_time_is_continuous_at_the_firing_boundary():
    torch.manual_seed(0)
    model, objective = build_ttfs({"sizes": [4, 2]})
    x = torch.tensor([[0.5, 0.0, 0.0, 0.0]], dtype=torch.float64)  # one input at t = 0.5; T = 2
    model = model.double()
    with torch.no_grad():
        model.layers[0].weight.zero_()
        model.layers[0].weight[0, 0] = 1.0 / 1.5 + 1e-9  # reaches ϑ = 1 just before T
        model.layers[0].weight[0, 1] = 1.0 / 1.5 - 1e-9  # stays just below
    trace = model(x).traces[-1]
    assert trace.output.fired.tolist() == [[True, False]]
    times = objective.finite_times(trace)
    assert times[0, 0].item() == pytest.approx(2.0, abs=1e-6)
    assert times[0, 1].item() == pytest.approx(2.0, abs=1e-6)
    with torch.no_grad():
        model.layers[0].weight[0, 1] = 0.2  # ṽ(T) = 0.3 → T + (1 − 0.3)·2/1
    assert objective.finite_times(model(x).traces[-1])[0, 1].item() == pytest.approx(3.4)


def test_time_penalty_is_added():
    torch.manual_seed(0)
    model, plain = build_ttfs({"sizes": [12, 8, 3]})
    _, penalised = build_ttfs({"sizes": [12, 8, 3], "time_penalty": 0.1, "time_penalty_scale": 2.0})
    batch = blobs(n=16)
    out = model(batch.x)
    label_time = plain.finite_times(out.traces[-1]).gather(1, batch.y[:, None]).squeeze(1)
    expected = plain(model, batch).loss + 0.1 * torch.expm1(label_time / 2.0).mean()
    assert penalised(model, batch).loss.item() == pytest.approx(expected.item(), rel=1e-6)


def _train(config, steps=40, seed=0):
    torch.manual_seed(seed)
    model, objective = build_ttfs(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = blobs(n=96)
    for _ in range(steps):
        optimiser.zero_grad()
        result = objective(model, batch)
        result.loss.backward()
        optimiser.step()
        model.after_optimizer_step()
    with torch.no_grad():
        result = objective(model, blobs(n=96, seed=1))
    return result.correct.item() / result.count, result.extras["spikes_per_neuron_hidden"].item() / result.count


def test_training_learns_and_m_ssr_cuts_hidden_spikes():
    base = {"sizes": [12, 16, 3], "sigma": 0.2}
    accuracy, spikes = _train(base)  # measured: 0.92 accuracy, 0.85 hidden spikes per neuron
    reg_accuracy, reg_spikes = _train(base | {"regularisers": [{"name": "m_ssr", "gamma": 0.01}]})
    assert accuracy > 0.8 and reg_accuracy > 0.7  # chance: 1/3
    assert reg_spikes < 0.85 * spikes  # measured: 0.63


def test_objective_rejects_sequence_batches():
    model, objective = build_ttfs({"sizes": [12, 3]})
    with pytest.raises(ValueError, match=r"x \[B, C\]"):
        objective(model, Batch(torch.rand(5, 4, 12), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"labels y \[B\] in 0..2"):
        objective(model, Batch(torch.rand(4, 12), torch.tensor([0, 1, 2, 3])))


def test_silent_penalty_pushes_only_silent_label_neurons():
    torch.manual_seed(0)
    config = {"sizes": [12, 8, 3], "weight_mean": [2.0, -3.0]}
    model, plain = build_ttfs(config | {"silent_penalty": 0.0})
    _, penalised = build_ttfs(config | {"silent_penalty": 0.5})
    batch = blobs(n=16)
    trace = model(batch.x).traces[-1]
    assert not trace.output.fired.any()
    late = (TTFSObjective.extrapolated_times(trace) - 3.0).gather(1, batch.y[:, None]).mean()
    assert penalised(model, batch).loss.item() == pytest.approx((plain(model, batch).loss + 0.5 * late).item(), rel=1e-6)
    loud, _ = build_ttfs({"sizes": [12, 8, 3], "weight_mean": 6.0})
    assert loud(batch.x).traces[-1].output.fired.all()
    assert penalised(loud, batch).loss.item() == pytest.approx(plain(loud, batch).loss.item())
    with pytest.raises(ValueError, match="silent_penalty"):
        TTFSObjective(silent_penalty=-1.0)
