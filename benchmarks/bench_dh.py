"""DH-SFNN in the SHD setting: spikescale against the official DH-SNN method, one training step.

Network: 700 inputs → 64 DH-LIF neurons (D = 8 branches, α ~ "large", β ~ "medium", soft reset, θ = 1,
multi-Gaussian surrogate) → 20-unit leaky-integrator readout; T = 1000 (dt = 1 ms), B = 32, Bernoulli input
spikes at 1 %; loss = cross-entropy of the time-mean readout; Adam. Same weights in every variant.

* official: the computation of the official DH-SNN code — a Python loop over steps with autograd, the
  mask multiplied into a dense ``[N·D, M_pad]`` weight, ``F.linear`` on every step.
* spikescale: ``DHDense`` + ``Readout`` with the default settings (fused event path on CPU), for the
  ``random`` mask (the official default) and a ``grouped`` mask (G = 32); and the ``random`` mask on the
  ``torch`` backend (no compiled kernels: the dense masked product and the PyTorch loops).

Each variant runs in its own subprocess; median over ``--repeat`` steps, best of ``--rounds`` rounds
(see ``timing.py``), peak resident memory of the subprocess.
Run: ``python benchmarks/bench_dh.py [--repeat 5] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json

from timing import (
    adam_training_step,
    best_of_rounds,
    held_for_backward_mib,
    load_average,
    median_seconds,
    peak_rss_mib,
    run_isolated,
    tune_malloc,
)

STEPS, BATCH, INPUTS, NEURONS, BRANCHES, CLASSES, DENSITY = 1000, 32, 700, 64, 8, 20, 0.01

VARIANTS = ("official", "spikescale-random", "spikescale-grouped", "spikescale-random-torch")
DESCRIPTIONS = {
    "official": "official method: per-step loop, dense masked N·D×M weight",
    "spikescale-random": "spikescale DHDense, random mask",
    "spikescale-grouped": "spikescale DHDense, grouped mask (G=32)",
    "spikescale-random-torch": "spikescale DHDense, random mask, torch backend",
}


def _model(mask: str):
    from spikescale.nn import DHDense, Network, Readout

    layer = DHDense(INPUTS, NEURONS, branches=BRANCHES, mask=mask, group_size=32, seed=0)
    return Network([layer], Readout(NEURONS, CLASSES))


def _official(model):
    """The official computation with the weights of ``model`` (a one-layer DH-SFNN ``Network``)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from spikescale.functional import get_surrogate, heaviside

    layer, readout = model.layers[0], model.readout
    width = INPUTS + (BRANCHES - INPUTS % BRANCHES) % BRANCHES  # official input padding
    mask = torch.zeros(NEURONS * BRANCHES, width)
    mask[:, :INPUTS] = layer.mask.reshape(-1, INPUTS).float()
    weight = torch.zeros(NEURONS * BRANCHES, width)
    weight[:, :INPUTS] = layer.weight.detach().reshape(-1, INPUTS)
    params = nn.ParameterDict({
        "weight": nn.Parameter(weight),
        "bias": nn.Parameter(layer.bias.detach().reshape(-1).clone()),
        "tau_n": nn.Parameter(layer.alpha.raw.detach().clone()),
        "tau_m": nn.Parameter(layer.soma.beta.raw.detach().clone()),
        "w_out": nn.Parameter(readout.linear.weight.detach().clone()),
        "b_out": nn.Parameter(readout.linear.bias.detach().clone()),
        "tau_out": nn.Parameter(readout.beta.raw.detach().clone()),
    })
    surrogate = get_surrogate("mg")

    def forward(x):
        steps, batch, _ = x.shape
        x = F.pad(x, (0, width - INPUTS))
        w = params["weight"] * mask  # apply_mask(): masked entries stay zero
        alpha, beta = torch.sigmoid(params["tau_n"]), torch.sigmoid(params["tau_m"])
        alpha_out = torch.sigmoid(params["tau_out"])
        d = x.new_zeros(batch, NEURONS, BRANCHES)
        u = x.new_zeros(batch, NEURONS)
        s = x.new_zeros(batch, NEURONS)
        m = x.new_zeros(batch, CLASSES)
        outputs = []
        for t in range(steps):
            current = F.linear(x[t], w, params["bias"]).view(batch, NEURONS, BRANCHES)
            d = alpha * d + (1 - alpha) * current
            u = beta * u + (1 - beta) * d.sum(-1) - s
            s = heaviside(u - 1.0, surrogate)
            m = alpha_out * m + (1 - alpha_out) * F.linear(s, params["w_out"], params["b_out"])
            outputs.append(m)
        return torch.stack(outputs)

    return params, forward


def worker(variant: str, repeat: int, warmup: int, threads: int) -> dict:
    import time

    import torch

    torch.set_num_threads(threads)
    import spikescale.kernels as kernels

    torch.manual_seed(0)
    x = (torch.rand(STEPS, BATCH, INPUTS) < DENSITY).float()
    target = torch.randint(0, CLASSES, (BATCH,))
    mask = "grouped" if variant == "spikescale-grouped" else "random"
    model = _model(mask)
    if variant == "official":
        module, forward = _official(model)
    else:
        if variant.endswith("-torch"):
            kernels.use_backend("torch")
        module = model

        def forward(x):
            return model(x)[0]

    loss, train = adam_training_step(module.parameters(), forward, x, target)
    seconds = median_seconds(train, repeat, warmup)
    cpu = median_seconds(train, max(2, repeat // 2), 0, time.process_time)
    return {"train": seconds, "cpu_train": cpu, "peak_mib": peak_rss_mib(), "held_mib": held_for_backward_mib(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch (and kernel) threads in every subprocess")
    parser.add_argument("--malloc", choices=["default", "tuned"], default="default")
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    if args.malloc == "tuned":
        tune_malloc()
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeat, args.warmup, args.threads)))
        return
    import torch

    print(
        f"torch {torch.__version__}, {args.threads} threads, malloc {args.malloc}; median of {args.repeat} "
        f"training steps after {args.warmup} warm-up steps per subprocess, best of {args.rounds} rounds; "
        f"load average at start {load_average()}"
    )

    def run(name):
        arguments = [
            "--worker", name, "--repeat", str(args.repeat), "--warmup", str(args.warmup), "--malloc", args.malloc,
            "--threads", str(args.threads),
        ]
        return run_isolated(__file__, arguments, args.timeout)

    results = best_of_rounds(run, args.variants, args.rounds, ("train", "cpu_train"))
    official = results.get("official", {}).get("train")
    official_cpu = results.get("official", {}).get("cpu_train")
    print(f"\nDH-SFNN 700→64 (D=8) → 20, T={STEPS}, B={BATCH}, {DENSITY:.0%} input: one training step")
    print(
        f"  {'variant':58s} {'ms':>9s} {'speed-up':>9s} {'cpu ms':>8s} {'cpu ×':>6s} {'peak MiB':>9s} {'held MiB':>8s}"
        "  rounds (ms)"
    )
    for name in args.variants:
        r = results[name]
        if "error" in r:
            print(f"  {DESCRIPTIONS[name]:58s} not run: {r['error']}")
            continue
        speed = f"{official / r['train']:.1f}×" if official else ""
        speed_cpu = f"{official_cpu / r['cpu_train']:.1f}×" if official_cpu else ""
        rounds = " ".join(f"{v * 1e3:.0f}" for v in r["train_all"])
        print(
            f"  {DESCRIPTIONS[name]:58s} {r['train'] * 1e3:9.1f} {speed:>9s} {r['cpu_train'] * 1e3:8.1f} {speed_cpu:>6s} "
            f"{r['peak_mib']:9.0f} {r['held_mib']:8.1f}  {rounds}"
        )
    print(
        "  (cpu ms: CPU time of a training step, all threads; held MiB: memory allocated by the forward pass\n"
        "   and still held for the backward pass at the loss)"
    )
    print(f"load average at end {load_average()}")


if __name__ == "__main__":
    main()
