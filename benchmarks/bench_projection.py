"""Exact methods of the input projection, timed against the input density (forward + backward).

(a) ``LIFDense`` 700→256, T=100, B=64: dense ``F.linear`` vs the event path (events gathered from the
    input, one weight row per event, weight gradient from the events).
(b) ``DHDense`` 700→64, D=8, T=100, B=32, projection + dendritic sum: dense masked ``[N·D, M]`` product,
    grouped block products, a sparse CSR weight (``torch.sparse``, the connected entries only) and the
    fused event path, for ``random`` and ``grouped`` (G=32) masks.

The crossover densities set the defaults of ``spikescale.nn.projection`` (``EVENT_DENSITY``).
Run: ``python benchmarks/bench_projection.py [--threads 2] [--repeat 5]``.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from timing import median_seconds

from spikescale.functional.dh_lif import dendritic_sum
from spikescale.functional.events import SparseWeight, event_dendritic_sum, event_linear, find_events
from spikescale.nn import DHDense
from spikescale.nn.projection import grouped_projection

DENSITIES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def bench_linear(repeat: int) -> None:
    steps, batch, inputs, outputs = 100, 64, 700, 256
    weight = torch.randn(outputs, inputs, requires_grad=True)
    bias = torch.randn(outputs, requires_grad=True)
    print(f"\n(a) 700→256 projection, T={steps}, B={batch}: forward + weight gradient, ms")
    print(f"  {'density':>8s} {'dense':>8s} {'event':>8s}")
    for density in DENSITIES:
        x = (torch.rand(steps, batch, inputs) < density).float()
        g = torch.randn(steps, batch, outputs)

        def dense():
            torch.autograd.grad((F.linear(x, weight, bias) * g).sum(), (weight, bias))

        def event():
            out = event_linear(x, weight, bias, find_events(x))
            torch.autograd.grad((out * g).sum(), (weight, bias))

        print(f"  {density:8.3f} {median_seconds(dense, repeat) * 1e3:8.1f} {median_seconds(event, repeat) * 1e3:8.1f}")


def bench_dendritic(repeat: int) -> None:
    steps, batch, inputs, neurons, branches = 100, 32, 700, 64, 8
    for kind in ("random", "grouped"):
        layer = DHDense(inputs, neurons, branches=branches, mask=kind, group_size=32)
        weight, bias, mask = layer.weight, layer.bias, layer.mask
        alpha = layer.alpha().detach().requires_grad_()
        i0 = torch.zeros(batch, neurons, branches)
        structure = SparseWeight(mask)
        rows = steps * batch
        print(f"\n(b) DH-SFNN 700→64, D=8, {kind} mask, T={steps}, B={batch}: projection + dendritic sum, fwd + bwd, ms")
        columns = ["dense masked", "sparse CSR", "event fused"] + (["grouped blocks"] if kind == "grouped" else [])
        print(f"  {'density':>8s} " + " ".join(f"{c:>14s}" for c in columns))
        for density in DENSITIES:
            x = (torch.rand(steps, batch, inputs) < density).float()
            g = torch.randn(steps, batch, neurons)
            params = (weight, bias, alpha)

            def finish(current):
                total, _ = dendritic_sum(current.reshape(steps, batch, neurons, branches), alpha, i0)
                torch.autograd.grad((total * g).sum(), params)

            def dense():
                finish(F.linear(x, (weight * mask).reshape(-1, inputs), bias.reshape(-1)))

            def sparse_csr():
                values = weight.reshape(-1)[structure.source]
                index = torch.stack([torch.from_numpy(structure.rows).long(), _inputs(structure)])
                w = torch.sparse_coo_tensor(index, values, (neurons * branches, inputs)).coalesce()
                finish((torch.sparse.mm(w, x.reshape(rows, inputs).t()).t() + bias.reshape(-1)))

            def event():
                total, _ = event_dendritic_sum(x, weight, bias, alpha, i0, find_events(x), structure)
                torch.autograd.grad((total * g).sum(), params)

            def blocks():
                finish(grouped_projection(x.reshape(rows, inputs), weight, layer.group_index) + bias)

            methods = [dense, sparse_csr, event] + ([blocks] if kind == "grouped" else [])
            times = [median_seconds(m, repeat, 1) * 1e3 for m in methods]
            print(f"  {density:8.3f} " + " ".join(f"{t:14.1f}" for t in times))


def _inputs(structure) -> torch.Tensor:
    counts = torch.from_numpy(structure.colptr).diff()
    return torch.repeat_interleave(torch.arange(structure.inputs), counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_linear(args.repeat)
    bench_dendritic(args.repeat)


if __name__ == "__main__":
    main()
