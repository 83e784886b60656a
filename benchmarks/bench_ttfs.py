"""TTFS benchmark: one training epoch of a 784-400-10 TTFS network on Fashion-MNIST against the floor.

The floor is the time of the dense matrix products of the same shapes that any training step of a
784-400-10 network needs (forward ``x W₁ᵀ``, ``h W₂ᵀ``; backward ``g₂ᵀ h``, ``g₂ W₂``, ``g₁ᵀ x``). It is
timed right after every training step, on that step's batch, so that a busy (shared) machine slows
both sides alike; the epoch's ratio is (sum of step times) / (sum of floor times), and the ratio of the
medians is printed too.

The epoch is the real thing: shuffled batches, the default :func:`~spikescale.train.ttfs_objective.build_ttfs`
model and objective (sort-based exact spike times, ``backend="auto"``), backward pass and an Adam step.
Variants: with M-SSR (the regulariser adds no pass over the inputs), and a few batches of each
back-end and of each phase (first-layer search, first-layer backward) as multiples of the floor.

Run: ``python benchmarks/bench_ttfs.py`` (``--batches N`` for a shorter epoch). Without Fashion-MNIST
(``apt-get install dataset-fashion-mnist``) it uses random images with the same share of zero pixels
and says so.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from timing import median_seconds, peak_rss_mib, print_table

from spikescale.data.batch import Batch
from spikescale.data.static_images import StaticImageSet
from spikescale.functional.ttfs import ttfs_dense, ttfs_encode
from spikescale.train.ttfs_objective import build_ttfs


def load_images() -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        train = StaticImageSet("train")
        return train.images, train.labels, "Fashion-MNIST train split (54,000 images)"
    except FileNotFoundError:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(54000, 784, generator=g)
        x[torch.rand(54000, 784, generator=g) < 0.5] = 0.0
        return x, torch.randint(0, 10, (54000,), generator=g), "random images, 50 % zero pixels (Fashion-MNIST not installed)"


def floor_step(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor) -> None:
    h = x @ w1.t()
    h @ w2.t()
    g2.t() @ h
    g2 @ w2
    g1.t() @ x


def run_epoch(config: dict, x: torch.Tensor, y: torch.Tensor, batch_size: int, batches: int) -> tuple[list[float], list[float]]:
    """Per-step times of ``batches`` training steps and of the floor timed after each of them."""
    torch.manual_seed(0)
    model, objective = build_ttfs(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    w1, w2 = torch.randn(400, 784) / 28, torch.randn(10, 400) / 20
    g1, g2 = torch.randn(batch_size, 400), torch.randn(batch_size, 10)
    steps, floors = [], []
    for index in range(batches):
        idx = order[index * batch_size:(index + 1) * batch_size]
        xb = x[idx]
        tick = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        result = objective(model, Batch(xb, y[idx]))
        result.loss.backward()
        optimiser.step()
        model.after_optimizer_step()
        steps.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        floor_step(xb, w1, w2, g1[: xb.shape[0]], g2[: xb.shape[0]])
        floors.append(time.perf_counter() - tick)
    return steps, floors


def report(name: str, steps: list[float], floors: list[float], batch_size: int) -> None:
    epoch, floor = sum(steps), sum(floors)
    ratio_of_medians = statistics.median(steps) / statistics.median(floors)
    print(f"{name}: epoch {epoch:.2f} s ({len(steps) * batch_size / epoch:,.0f} samples/s), floor {floor:.2f} s; "
          f"epoch / floor = {epoch / floor:.2f}; median step {statistics.median(steps) * 1e3:.1f} ms / "
          f"median floor {statistics.median(floors) * 1e3:.2f} ms = {ratio_of_medians:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=None, help="batches per epoch (default: the whole split)")
    parser.add_argument("--repeat", type=int, default=50, help="repetitions of the floor and phase timings")
    args = parser.parse_args()
    x, y, source = load_images()
    batches = args.batches or x.shape[0] // args.batch_size
    b = args.batch_size
    print(f"data: {source}; batch {b}; {batches} batches; torch threads {torch.get_num_threads()}")

    steps, floors = run_epoch({}, x, y, b, batches)
    report("\none training epoch, 784-400-10, Adam", steps, floors, b)
    reg_steps, reg_floors = run_epoch({"regularisers": [{"name": "m_ssr", "gamma": 1.3e-5, "batch_reduction": "sum"}]}, x, y, b, batches)
    report("the same with M-SSR (γ = 1.3e-5, sums)", reg_steps, reg_floors, b)

    torch.manual_seed(0)
    w1, w2 = torch.randn(400, 784) / 28, torch.randn(10, 400) / 20
    g1, g2 = torch.randn(b, 400), torch.randn(b, 10)
    xb = x[:b]
    floor_batch = median_seconds(lambda: floor_step(xb, w1, w2, g1, g2), args.repeat)

    # Phases and back-ends on one batch, as multiples of the per-batch floor.
    model, _ = build_ttfs({})
    leaf = model.layers[0].weight.detach().clone().requires_grad_()  # [784, 400], input-major
    weight = leaf.t()
    t_in = ttfs_encode(xb)
    grad = torch.randn(b, 400)  # phases below: medians, as multiples of a floor timed just before them
    rows = []
    for backend in ("numba", "torch"):
        try:
            ttfs_dense(t_in, weight, 1.0, 3.0, backend=backend)
        except ImportError:
            continue
        repeat = args.repeat if backend == "numba" else 3

        def forward():
            with torch.no_grad():
                ttfs_dense(t_in, weight, 1.0, 3.0, backend=backend)

        def forward_backward():
            out = ttfs_dense(t_in, weight, 1.0, 3.0, backend=backend)
            torch.where(out.fired, out.times, torch.zeros(())).mul(grad).sum().backward()

        rows.append((f"first layer 784→400, forward ({backend})", median_seconds(forward, repeat)))
        rows.append((f"first layer 784→400, forward + backward ({backend})", median_seconds(forward_backward, repeat)))
    print_table(f"per batch of {b}", rows, floor_batch)
    print(f"\npeak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
