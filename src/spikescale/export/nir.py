r"""Export to NIR (Neuromorphic Intermediate Representation) and a reference simulator for NIR graphs.

NIR neurons are continuous-time: :math:`\tau \dot v = (v_{leak} - v) + R I`. Integrated with forward Euler
at step :math:`\Delta t` this is :math:`v_t = (1 - \Delta t/\tau) v_{t-1} + (\Delta t/\tau) R I_t`, which is
exactly a spikescale neuron with factor :math:`a = 1 - \Delta t/\tau` when

.. math:: \tau = \frac{\Delta t}{1 - a}, \qquad R = 1 \ \text{(input scaled by } 1-a\text{)} \quad\text{or}\quad
          R = \frac{1}{1 - a} \ \text{(unscaled input)}, \qquad v_{leak} = 0.

Mapping of the layers:

* ``LIFDense`` → ``Affine`` → ``LIF``;
* ``DHDense`` → for each branch ``d``: ``Affine`` (mask written into the weights) → ``LI`` (the dendrite,
  τ from α) — all branches converge on one soma ``LIF`` (converging edges sum);
* ``DHRecurrent`` → the same, plus for each branch a recurrent ``Affine`` from the soma back to the
  branch (edges that close a cycle carry the previous step's output);
* ``Readout`` → ``Affine`` → ``LI`` (integrator), ``Affine`` (linear) or ``Affine`` → ``LIF`` (spike count);
* DCLS ``DelayBlock`` / ``DelayReadout`` (integer delays, as evaluated) → ``Delay`` nodes: axonal delays
  directly on the inputs, dendritic delays after the weights, synaptic delays through an explicit expansion
  into one ``Delay`` + ``Affine`` pair per distinct delay value; an evaluation-mode BatchNorm is folded into
  the affine maps; then ``LIF`` (hidden) or ``LI`` (readout).

NIR's ``LIF`` resets to ``v_reset`` (a hard reset). A soft reset (subtract θ) and no reset cannot be
expressed in NIR: every ``LIF`` node carries ``metadata["reset"]`` (``"hard"``, ``"subtract"`` or
``"none"``), which :func:`simulate_nir` honours but other NIR tools may ignore (they would then simulate a
hard reset). The graph metadata records ``dt`` and the discretisation.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..nn.base import Soma
from ..nn.delays import DelayBlock, DelayedDense, DelayReadout
from ..nn.layers import DHDense, DHRecurrent, LIFDense
from ..nn.network import Network
from ..nn.readout import Readout

__all__ = ["to_nir", "write_nir", "simulate_nir", "require_nir"]


def require_nir():
    try:
        import nir
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("NIR export needs the nir package: pip install 'spikescale[export]'") from err
    return nir


def _array(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()


def _neuron_constants(factor: Tensor, dt: float, scaled: bool) -> tuple[np.ndarray, np.ndarray]:
    """(τ, R) of an NIR neuron equal to the discrete factor ``factor`` at step ``dt``."""
    leak = 1.0 - _array(factor)
    if np.any(leak <= 0):
        raise ValueError("a timing factor of 1 (no leak) cannot be written as a finite NIR time constant")
    tau = dt / leak
    resistance = np.ones_like(tau) if scaled else 1.0 / leak
    return tau, resistance


def _lif(nir, soma: Soma, dt: float):
    tau, r = _neuron_constants(soma.beta(), dt, soma.scale_input)
    threshold = np.broadcast_to(_array(soma.threshold), tau.shape).copy()
    reset = {"hard": "hard", "soft": "subtract", "none": "none"}[soma.reset]
    zeros = np.zeros_like(tau)
    return nir.LIF(tau=tau, r=r, v_leak=zeros, v_threshold=threshold, v_reset=zeros, metadata={"reset": reset})


def _li(nir, factor: Tensor, dt: float, scaled: bool = True):
    tau, r = _neuron_constants(factor, dt, scaled)
    return nir.LI(tau=tau, r=r, v_leak=np.zeros_like(tau))


def _delay_nodes(nir, delayed: DelayedDense, prefix: str, dt: float, target: str, scale=None, shift=None):
    """Nodes and edges computing ``Σ_j w_ij x_j[t - d_ij]`` (integer delays) into ``target``.

    Axonal and no delays: ``Delay`` on the inputs → one ``Affine``; dendritic: ``Affine`` → ``Delay``; synaptic
    (and dense kernels): one ``Delay`` + ``Affine`` pair per distinct delay value, converging on ``target``.
    ``scale``/``shift`` fold an evaluation-mode BatchNorm into the affine maps (the shift is added once).
    """
    entry = delayed.export()
    nodes, edges, entries = {}, [], []
    scale = np.ones(delayed.out_features) if scale is None else scale

    def affine(name: str, weight: np.ndarray, with_shift: bool):
        bias = shift if (with_shift and shift is not None) else np.zeros(weight.shape[0])
        nodes[name] = nir.Affine(weight=weight * scale[:, None], bias=bias)

    def delay(name: str, steps: np.ndarray):
        nodes[name] = nir.Delay(delay=steps.astype(np.float64) * dt)

    if entry["mode"] == "dense" or entry["kind"] == "synaptic":
        if entry["mode"] == "dense":  # kernel [out, in, K] in delay order: tap d is delay d
            kernel = _array(entry["kernel"])
            groups = {d: kernel[:, :, d] for d in range(kernel.shape[2]) if np.any(kernel[:, :, d])}
        else:
            weight, steps = _array(entry["weight"]), entry["delay"].cpu().numpy()
            weight, steps = weight.reshape(*weight.shape[:2], -1), steps.reshape(*steps.shape[:2], -1)
            groups = {}
            for d in np.unique(steps):
                groups[int(d)] = (weight * (steps == d)).sum(-1)
        for k, (d, weight) in enumerate(sorted(groups.items())):
            delay(f"{prefix}.delay{d}", np.full(delayed.in_features, d))
            affine(f"{prefix}.affine{d}", weight, with_shift=k == 0)
            edges += [(f"{prefix}.delay{d}", f"{prefix}.affine{d}"), (f"{prefix}.affine{d}", target)]
            entries.append(f"{prefix}.delay{d}")
    elif entry["kind"] == "axonal" or entry["mode"] == "none":
        weight = _array(entry["weight"]).reshape(delayed.out_features, delayed.in_features)
        steps = entry["delay"].cpu().numpy() if entry["mode"] != "none" else np.zeros(delayed.in_features)
        delay(f"{prefix}.delay", np.broadcast_to(steps, (delayed.in_features,)))
        affine(f"{prefix}.affine", weight, with_shift=True)
        edges += [(f"{prefix}.delay", f"{prefix}.affine"), (f"{prefix}.affine", target)]
        entries.append(f"{prefix}.delay")
    else:  # dendritic: one delay per output neuron, after the weights
        affine(f"{prefix}.affine", _array(entry["weight"]).reshape(delayed.out_features, delayed.in_features), with_shift=True)
        delay(f"{prefix}.delay", entry["delay"].cpu().numpy())
        edges += [(f"{prefix}.affine", f"{prefix}.delay"), (f"{prefix}.delay", target)]
        entries.append(f"{prefix}.affine")
    return nodes, edges, entries


def _batch_norm_fold(norm) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``y = scale·z + shift`` of an evaluation-mode BatchNorm (running statistics)."""
    if norm is None:
        return None, None
    std = torch.sqrt(norm.running_var + norm.eps)
    gamma = norm.weight if norm.affine else torch.ones_like(std)
    beta = norm.bias if norm.affine else torch.zeros_like(std)
    return _array(gamma / std), _array(beta - gamma * norm.running_mean / std)


def _affine(nir, weight: Tensor, bias: Optional[Tensor]):
    weight = _array(weight)
    bias = np.zeros(weight.shape[0]) if bias is None else _array(bias)
    return nir.Affine(weight=weight, bias=bias)


def _layer_nodes(nir, layer, prefix: str, dt: float) -> tuple[dict, list, str, str]:
    """Nodes and internal edges of one layer; returns (nodes, edges, entry node(s) prefix, exit node)."""
    nodes: dict = {}
    edges: list = []
    if isinstance(layer, LIFDense):
        nodes[f"{prefix}.affine"] = _affine(nir, layer.linear.weight, layer.linear.bias)
        nodes[f"{prefix}.soma"] = _lif(nir, layer.soma, dt)
        edges.append((f"{prefix}.affine", f"{prefix}.soma"))
        return nodes, edges, [f"{prefix}.affine"], f"{prefix}.soma"
    if isinstance(layer, (DHDense, DHRecurrent)):
        if layer.soma.faithful:
            raise ValueError(f"{prefix}: faithful layers start from a random state, which NIR cannot describe")
        weight = layer.weight * layer.mask
        alpha = layer.alpha()
        soma = f"{prefix}.soma"
        nodes[soma] = _lif(nir, layer.soma, dt)
        entries = []
        for d in range(layer.branches):
            bias = None if layer.bias is None else layer.bias[:, d]
            branch = f"{prefix}.branch{d}"
            nodes[f"{branch}.affine"] = _affine(nir, weight[:, d, : layer.in_features], bias)
            nodes[f"{branch}.dendrite"] = _li(nir, alpha[:, d], dt)
            edges += [(f"{branch}.affine", f"{branch}.dendrite"), (f"{branch}.dendrite", soma)]
            entries.append(f"{branch}.affine")
            if isinstance(layer, DHRecurrent):
                nodes[f"{branch}.recurrent"] = _affine(nir, weight[:, d, layer.in_features:], None)
                edges += [(soma, f"{branch}.recurrent"), (f"{branch}.recurrent", f"{branch}.dendrite")]
        return nodes, edges, entries, soma
    if isinstance(layer, DelayBlock):
        soma = f"{prefix}.soma"
        nodes[soma] = _lif(nir, layer.soma, dt)
        scale, shift = _batch_norm_fold(layer.norm)
        more, more_edges, entries = _delay_nodes(nir, layer.delay, prefix, dt, soma, scale, shift)
        nodes.update(more)
        return nodes, edges + more_edges, entries, soma
    if isinstance(layer, DelayReadout):
        membrane = f"{prefix}.membrane"
        nodes[membrane] = _li(nir, layer.beta(), dt, scaled=False)
        more, more_edges, entries = _delay_nodes(nir, layer.delay, prefix, dt, membrane)
        nodes.update(more)
        return nodes, edges + more_edges, entries, membrane
    if isinstance(layer, Readout):
        nodes[f"{prefix}.affine"] = _affine(nir, layer.linear.weight, layer.linear.bias)
        if layer.mode == "linear":
            return nodes, edges, [f"{prefix}.affine"], f"{prefix}.affine"
        if layer.mode == "integrator":
            if layer.faithful:
                raise ValueError(f"{prefix}: a faithful readout starts from a random state, which NIR cannot describe")
            nodes[f"{prefix}.membrane"] = _li(nir, layer.beta(), dt)
        else:
            nodes[f"{prefix}.membrane"] = _lif(nir, layer.soma, dt)
        edges.append((f"{prefix}.affine", f"{prefix}.membrane"))
        return nodes, edges, [f"{prefix}.affine"], f"{prefix}.membrane"
    raise ValueError(f"{prefix}: NIR export does not support {type(layer).__name__}")


@torch.no_grad()
def to_nir(model: Network, dt: float = 1e-3):
    """The NIR graph of a :class:`~spikescale.nn.network.Network` (``dt``: step length in seconds)."""
    nir = require_nir()
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt}")
    nodes = {"input": nir.Input(input_type={"input": np.array([model.in_features])})}
    edges = []
    previous = "input"
    for index, layer in enumerate([*model.layers, model.readout]):
        prefix = f"layers.{index}" if index < len(model.layers) else "readout"
        layer_nodes, layer_edges, entries, exit_node = _layer_nodes(nir, layer, prefix, dt)
        nodes.update(layer_nodes)
        edges += layer_edges + [(previous, entry) for entry in entries]
        previous = exit_node
    nodes["output"] = nir.Output(output_type={"output": np.array([model.out_features])})
    edges.append((previous, "output"))
    metadata = {
        "dt": dt,
        "discretisation": "forward Euler at step dt: v_t = (1 - dt/tau) v_{t-1} + (dt/tau) (v_leak + R I_t)",
        "cycles": "an edge u->v with depth(v) <= depth(u) (shortest path from the input) carries u's output of the previous step",
        "producer": "spikescale",
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(model: Network, path: Union[str, Path], dt: float = 1e-3) -> Path:
    """Export ``model`` to a NIR file (HDF5)."""
    nir = require_nir()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(path, to_nir(model, dt))
    return path


def _order(graph) -> tuple[list[str], set]:
    """Evaluation order and delayed edges.

    Nodes are ordered by their shortest-path distance from the input. An edge ``u → v`` with
    ``depth(v) = depth(u) + 1`` is immediate; one with ``depth(v) <= depth(u)`` closes a cycle and carries
    ``u``'s output of the previous step (e.g. a DH-SRNN soma feeding its own dendrites).
    """
    children = defaultdict(list)
    for src, dst in graph.edges:
        children[src].append(dst)
    depth = {name: 0 for name, node in graph.nodes.items() if type(node).__name__ == "Input"}
    frontier = list(depth)
    while frontier:
        following = []
        for node in frontier:
            for child in children[node]:
                if child not in depth:
                    depth[child] = depth[node] + 1
                    following.append(child)
        frontier = following
    unreachable = sorted(set(graph.nodes) - set(depth))
    if unreachable:
        raise ValueError(f"simulate_nir: nodes {unreachable} cannot be reached from the input")
    back = {(src, dst) for src, dst in graph.edges if depth[dst] <= depth[src]}
    return sorted(depth, key=depth.get), back


def simulate_nir(graph, x: np.ndarray) -> np.ndarray:
    """Run a NIR graph of ``Input/Affine/Linear/Delay/LI/LIF/Output`` nodes on ``x [T, B, C]`` (forward Euler, dt
    from the graph metadata); returns the output node's values ``[T, B, K]``.

    Neurons start at rest (v = 0). A node's input is the sum over its incoming edges; an edge that closes a
    cycle (see :func:`_order`) delivers its source's output of the previous step.
    """
    dt = float(graph.metadata["dt"])
    order, back = _order(graph)
    incoming = defaultdict(list)
    for src, dst in graph.edges:
        incoming[dst].append((src, (src, dst) in back))
    steps, batch = x.shape[:2]
    outputs: dict[str, np.ndarray] = {}
    previous: dict[str, np.ndarray] = {}
    state: dict[str, np.ndarray] = {}
    result = []
    for t in range(steps):
        for name in order:
            node = graph.nodes[name]
            kind = type(node).__name__
            if kind == "Input":
                outputs[name] = x[t]
                continue
            total = 0.0
            for src, delayed in incoming[name]:
                value = previous.get(src) if delayed else outputs[src]
                if value is not None:
                    total = total + value
            outputs[name] = _step(kind, node, name, np.asarray(total, dtype=np.float64), state, dt, batch)
        result.append(outputs["output"].copy())
        previous = dict(outputs)
    return np.stack(result)


def _step(kind: str, node, name: str, current: np.ndarray, state: dict, dt: float, batch: int) -> np.ndarray:
    if kind == "Output":
        return current
    if kind == "Affine":
        return current @ node.weight.T + node.bias
    if kind == "Delay":  # per element: output at t = input at t - round(delay/dt) (zeros before the start)
        steps = np.rint(np.asarray(node.delay, dtype=np.float64) / dt).astype(int)
        history = state.setdefault(name, [])
        history.append(np.broadcast_to(current, (batch,) + steps.shape).copy())
        depth = int(steps.max(initial=0)) + 1
        del history[:-depth]
        out = np.zeros((batch,) + steps.shape)
        for lag in np.unique(steps):
            if lag < len(history):
                chosen = steps == lag
                out[:, chosen] = history[-1 - lag][:, chosen]
        return out
    if kind == "Linear":
        return current @ node.weight.T
    if kind in ("LI", "LIF"):
        tau = np.asarray(node.tau, dtype=np.float64)
        v = state.get(name, np.zeros((batch,) + tau.shape))
        v = v + (dt / tau) * (node.v_leak - v + node.r * current)
        if kind == "LI":
            state[name] = v
            return v
        reset = node.metadata.get("reset", "hard")
        if reset == "subtract":  # θ·s_{t-1}, subtracted after the decay (not itself decayed)
            v = v - state.get(name + ".carry", 0.0)
        spikes = (v > node.v_threshold).astype(np.float64)
        if reset == "hard":
            v = np.where(spikes > 0, node.v_reset, v)
        elif reset == "subtract":
            state[name + ".carry"] = spikes * node.v_threshold
        state[name] = v
        return spikes
    raise ValueError(f"simulate_nir: node {name!r} of type {kind} is not supported")
