"""Core benchmark (issue 2): forward+backward of spikescale layers vs the official per-step method and the floor.

(a) DH-SFNN layer 700→64, D=8, T=1000, B=32, 1 %-dense input spikes, grouped masks (G=32), against the
    official computation (a per-time-step autograd loop with the mask applied to a dense N·D×M weight);
    spikescale with its default input path (fused event path on CPU) and with ``input_path="dense"``
    (grouped block products + compiled dendrite loop).
(b) Vanilla SFNN 700-256-256-20, T=100, B=64, 5 %-dense input, against a per-step autograd loop.

The floor is the time of the model's matrix products alone (forward and the gradients it needs).
Run: ``python benchmarks/bench_core.py`` (or ``make bench``); ratios are printed, lower is better.
Whole training steps against snnTorch, Norse and SpikingJelly: ``bench_peers.py``; the DH-SFNN SHD
setting with readout and Adam: ``bench_dh.py``; projection methods against density: ``bench_projection.py``.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from timing import load_average, median_seconds, peak_rss_mib, print_table

from spikescale.functional import get_surrogate, heaviside
from spikescale.nn import DHDense, build_network

MG = get_surrogate("mg")


def official_dh_step_loop(x, weight_dense, bias, alpha, beta, neurons, branches):
    """DH-SFNN as the official code computes it: per step, dense N·D×M_pad product and autograd ops."""
    steps, batch, _ = x.shape
    pad = weight_dense.shape[1] - x.shape[2]
    x = F.pad(x, (0, pad))
    i = x.new_zeros(batch, neurons, branches)
    u = x.new_zeros(batch, neurons)
    s = x.new_zeros(batch, neurons)
    out = []
    for t in range(steps):
        current = F.linear(x[t], weight_dense, bias).view(batch, neurons, branches)
        i = alpha * i + (1 - alpha) * current
        u = beta * u + (1 - beta) * i.sum(-1) - s
        s = heaviside(u - 1.0, MG)
        out.append(s)
    return torch.stack(out)


def bench_dh(repeat: int) -> None:
    steps, batch, inputs, neurons, branches = 1000, 32, 700, 64, 8
    x = (torch.rand(steps, batch, inputs) < 0.01).float()
    layer = DHDense(inputs, neurons, branches=branches, mask="grouped", group_size=32)
    readout_w = torch.randn(steps, batch, neurons)

    def spikescale_step():
        layer.zero_grad(set_to_none=True)
        spikes, _ = layer(x)
        (spikes * readout_w).sum().backward()

    def blocks_step():
        layer.input_path = "dense"
        try:
            spikescale_step()
        finally:
            layer.input_path = "auto"

    # Official layout: W [N·D, M_pad] with the mask multiplied in, α/β through sigmoid each call.
    width = 704
    w_off = torch.zeros(neurons * branches, width)
    w_off[:, :inputs] = (layer.weight * layer.mask).detach().reshape(-1, inputs)
    w_off.requires_grad_()
    b_off = layer.bias.detach().reshape(-1).clone().requires_grad_()
    a_raw = layer.alpha.raw.detach().clone().requires_grad_()
    b_raw = layer.soma.beta.raw.detach().clone().requires_grad_()

    def official_step():
        for p in (w_off, b_off, a_raw, b_raw):
            p.grad = None
        spikes = official_dh_step_loop(x, w_off, b_off, torch.sigmoid(a_raw), torch.sigmoid(b_raw), neurons, branches)
        (spikes * readout_w).sum().backward()

    x2d = x.reshape(-1, inputs)
    w_eq = torch.randn(inputs, neurons)
    g_out = torch.randn(steps * batch, neurons)

    def floor():  # the N×M product of one vanilla-sized layer, forward and weight gradient
        torch.mm(x2d, w_eq)
        torch.mm(x2d.t(), g_out)

    t_floor = median_seconds(floor, repeat)
    rows = [
        ("spikescale DHDense (auto: fused event path)", median_seconds(spikescale_step, repeat)),
        ("spikescale DHDense, input_path='dense' (block products)", median_seconds(blocks_step, repeat)),
        ("official method: per-step loop, dense masked N·D×M weight", median_seconds(official_step, max(3, repeat // 3), 1)),
    ]
    print_table(f"(a) DH-SFNN 700→64, D=8, T=1000, B=32, 1% input; floor {t_floor * 1e3:.1f} ms", rows, t_floor)
    print(f"  speed-up over the official method: {rows[2][1] / rows[0][1]:.1f}× (event path), "
          f"{rows[2][1] / rows[1][1]:.1f}× (block products)")


def per_step_vanilla(x, weights, biases, betas, readout_w, readout_b, readout_beta):
    steps, batch, _ = x.shape
    states = [(x.new_zeros(batch, w.shape[0]), x.new_zeros(batch, w.shape[0])) for w in weights]
    m = x.new_zeros(batch, readout_w.shape[0])
    out = []
    for t in range(steps):
        h = x[t]
        new_states = []
        for (u, s), w, b, beta in zip(states, weights, biases, betas):
            u = beta * u + (1 - beta) * F.linear(h, w, b) - s
            s = heaviside(u - 1.0, MG)
            new_states.append((u, s))
            h = s
        states = new_states
        m = readout_beta * m + (1 - readout_beta) * F.linear(h, readout_w, readout_b)
        out.append(m)
    return torch.stack(out)


def bench_vanilla(repeat: int) -> None:
    steps, batch = 100, 64
    x = (torch.rand(steps, batch, 700) < 0.05).float()
    model = build_network("sfnn", 700, [256, 256], 20)
    target = torch.randint(0, 20, (batch,))

    def spikescale_step():
        model.zero_grad(set_to_none=True)
        out, _ = model(x)
        F.cross_entropy(out.mean(0), target).backward()

    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    # parameter order: l0 weight, bias, beta raw; l1 ...; readout weight, bias, beta raw
    weights, biases, betas_raw = params[0:6:3], params[1:6:3], params[2:6:3]
    rw, rb, rbeta = params[6:9]

    def loop_step():
        for p in params:
            p.grad = None
        out = per_step_vanilla(x, weights, biases, [torch.sigmoid(b) for b in betas_raw], rw, rb, torch.sigmoid(rbeta))
        F.cross_entropy(out.mean(0), target).backward()

    shapes = [(700, 256, False), (256, 256, True), (256, 20, True)]
    mats = [(torch.rand(steps * batch, m), torch.randn(m, n), torch.randn(steps * batch, n), dgrad) for m, n, dgrad in shapes]

    def floor():
        for a, w, g, dgrad in mats:
            torch.mm(a, w)
            torch.mm(a.t(), g)
            if dgrad:
                torch.mm(g, w.t())

    t_floor = median_seconds(floor, repeat)
    rows = [
        ("spikescale (auto: event input, compiled BPTT)", median_seconds(spikescale_step, repeat)),
        ("plain per-step autograd loop", median_seconds(loop_step, repeat)),
    ]
    print_table(f"(b) vanilla SFNN 700-256-256-20, T=100, B=64, 5% input; floor {t_floor * 1e3:.1f} ms", rows, t_floor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load_average()}")
    bench_dh(args.repeat)
    bench_vanilla(args.repeat)
    print(f"\npeak memory of this process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
