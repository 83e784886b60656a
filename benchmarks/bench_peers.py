"""The same spiking network in spikescale, snnTorch, Norse and SpikingJelly: training and inference time.

Network (issue 4): 700-256-256-20, LIF β = 0.9, θ = 1, soft reset, input current not scaled by 1-β,
leaky-integrator readout (β = 0.9, non-spiking, ``m ← βm + (1-β)·Ws``), T = 100, Bernoulli input spikes;
loss = cross-entropy of the time-mean readout; Adam (lr 1e-3). Every library gets the same weights
(uniform ±4/√fan-in from one seed, zero bias; hidden firing rates about 6-8 % at 5 % input), rescaled
where a library's neuron scales its input differently (Norse's LIF box multiplies the current by
dt/τ = 0.1, so its hidden weights are ×10; snnTorch's readout does not scale, so its readout weights
are ×(1-β)). Remaining difference: Norse and SpikingJelly subtract θ in the step of the spike (and
decay it), spikescale and snnTorch subtract θ·s_{t-1} in the next step; the firing rates printed for
each library show the networks behave alike. Surrogates are each library's default, except spikescale
uses ATan (snnTorch's default) instead of its multi-Gaussian.

Each library runs in its own subprocess (fresh interpreter, same settings), built the fastest idiomatic
way it offers: every ``Linear`` is applied to all steps at once and the neurons run layer by layer
(snnTorch ``Leaky`` and Norse ``LIFBoxCell``/``LIBoxCell`` in a Python loop over steps, SpikingJelly
``LIFNode`` in multi-step mode with its default backend, ``NonSpikingLIFNode`` readout).

Reported: median seconds per training step (zero_grad, forward, loss, backward, Adam step) over
``--repeat`` steps after ``--warmup`` steps, median seconds per inference pass (``torch.no_grad``), the
peak resident memory of the subprocess, and ratios to the fastest peer and to the floor (the matrix
products of the same shapes alone: forward, weight gradients, input gradients of layers 2-3). All
variants run ``--rounds`` times in rotated order and each keeps its best round (see ``timing.py``).

Run: ``python benchmarks/bench_peers.py`` (all four settings, about ten minutes on 2 cores) or
``--batch 64 --density 0.05`` for one setting. ``--malloc tuned`` applies ``mallopt`` settings (no mmap
for large blocks, no trimming) to every subprocess alike.
"""

from __future__ import annotations

import argparse
import json
import time

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

STEPS, INPUTS, HIDDEN, CLASSES, BETA, GAIN = 100, 700, 256, 20, 0.9, 4.0

PEERS = ("snntorch", "norse", "spikingjelly")
OURS = ("spikescale", "spikescale-torch", "spikescale-sparse-bwd")
VARIANTS = OURS + PEERS + ("floor",)

DESCRIPTIONS = {
    "spikescale": "spikescale (auto: numba kernels, event input)",
    "spikescale-torch": "spikescale, torch backend (reference loops)",
    "spikescale-sparse-bwd": "spikescale, sparse backward (rect surrogate)",
    "snntorch": "snnTorch Leaky",
    "norse": "Norse LIFBoxCell",
    "spikingjelly": "SpikingJelly LIFNode (multi-step)",
    "floor": "matrix-product floor",
}


# ------------------------------------------------------------------------------------------ workers

def _build_spikescale(variant: str):
    import torch  # noqa: F401

    import spikescale.kernels as kernels
    from spikescale.nn import build_network

    if variant == "spikescale-torch":
        kernels.use_backend("torch")
    options = dict(beta_init=BETA, learn_beta=False, threshold=1.0, reset="soft", scale_input=False, surrogate="atan")
    if variant == "spikescale-sparse-bwd":
        options.update(sparse_backward=True, surrogate="rect")
    model = build_network(
        "sfnn", INPUTS, [HIDDEN, HIDDEN], CLASSES, readout="integrator",
        readout_options=dict(beta_init=BETA, learn_beta=False), **options,
    )
    _load_weights([layer.linear for layer in model.layers] + [model.readout.linear], [1.0, 1.0, 1.0])
    rates = _record_rates(model.layers)

    def forward(x):
        return model(x)[0]

    return model, forward, rates


def _build_snntorch():
    import snntorch as snn
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.ModuleList([nn.Linear(INPUTS, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, CLASSES)])
            self.lif = nn.ModuleList([snn.Leaky(beta=BETA, threshold=1.0, reset_mechanism="subtract") for _ in range(2)])
            self.readout = snn.Leaky(beta=BETA, reset_mechanism="none")

        def forward(self, x):
            h = x
            for fc, lif in zip(self.fc[:2], self.lif):
                current = fc(h)
                mem = lif.init_leaky()
                spikes = []
                for t in range(current.shape[0]):
                    spk, mem = lif(current[t], mem)
                    spikes.append(spk)
                h = torch.stack(spikes)
                lif.last_output = h
            current = self.fc[2](h)
            mem = self.readout.init_leaky()
            out = []
            for t in range(current.shape[0]):
                _, mem = self.readout(current[t], mem)
                out.append(mem)
            return torch.stack(out)

    model = Net()
    _load_weights(list(model.fc), [1.0, 1.0, 1.0 - BETA])
    return model, model, _record_rates(model.lif)


def _build_norse():
    import torch
    from norse.torch import LIBoxCell, LIFBoxCell
    from norse.torch.functional.leaky_integrator_box import LIBoxParameters
    from norse.torch.functional.lif_box import LIFBoxParameters
    from norse.torch.functional.reset import reset_subtract
    from torch import nn

    tau_inv = (1.0 - BETA) / 1e-3  # v ← v + dt/τ (i - v): factor 1 - dt/τ = β with dt = 1 ms

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.ModuleList([nn.Linear(INPUTS, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, CLASSES)])
            p = LIFBoxParameters(tau_mem_inv=torch.tensor(tau_inv), v_th=torch.tensor(1.0), reset_method=reset_subtract)
            self.lif = nn.ModuleList([LIFBoxCell(p) for _ in range(2)])
            self.readout = LIBoxCell(LIBoxParameters(tau_mem_inv=torch.tensor(tau_inv)))

        def forward(self, x):
            h = x
            for fc, lif in zip(self.fc[:2], self.lif):
                current = fc(h)
                state, spikes = None, []
                for t in range(current.shape[0]):
                    z, state = lif(current[t], state)
                    spikes.append(z)
                h = torch.stack(spikes)
                lif.last_output = h
            current = self.fc[2](h)
            state, out = None, []
            for t in range(current.shape[0]):
                v, state = self.readout(current[t], state)
                out.append(v)
            return torch.stack(out)

    model = Net()
    unscale = 1.0 / (1e-3 * tau_inv)  # undo the box's dt/τ factor on the hidden currents
    _load_weights(list(model.fc), [unscale, unscale, 1.0])
    return model, model, _record_rates(model.lif)


def _build_spikingjelly():
    import torch
    from spikingjelly.activation_based import functional, layer, neuron
    from torch import nn

    tau = 1.0 / (1.0 - BETA)
    model = nn.Sequential(
        layer.Linear(INPUTS, HIDDEN, step_mode="m"),
        neuron.LIFNode(tau=tau, decay_input=False, v_threshold=1.0, v_reset=None, step_mode="m"),
        layer.Linear(HIDDEN, HIDDEN, step_mode="m"),
        neuron.LIFNode(tau=tau, decay_input=False, v_threshold=1.0, v_reset=None, step_mode="m"),
        layer.Linear(HIDDEN, CLASSES, step_mode="m"),
        neuron.NonSpikingLIFNode(tau=tau),
    )
    _load_weights([model[0], model[2], model[4]], [1.0, 1.0, 1.0])

    def forward(x):
        functional.reset_net(model)
        return torch.stack(model(x))

    return model, forward, _record_rates([model[1], model[3]])


def _load_weights(linears, factors) -> None:
    """The benchmark's weights (same seed for every library), times a per-layer factor; zero biases."""
    import math

    import torch

    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for linear, factor in zip(linears, factors):
            fan_in = linear.weight.shape[1]
            uniform = torch.rand(linear.weight.shape, generator=generator) * 2 - 1
            linear.weight.copy_(uniform * (GAIN / math.sqrt(fan_in)) * factor)
            linear.bias.zero_()


def _record_rates(modules):
    """Firing rate of each module's last output (forward hooks, or ``last_output`` set by hand)."""
    for module in modules:
        module.register_forward_hook(lambda mod, args, out: setattr(mod, "last_output", out[0] if isinstance(out, tuple) else out))

    def rates():
        return [float(m.last_output.detach().float().mean()) for m in modules]

    return rates


def _floor(batch: int):
    """Matrix products of one training step (and of one inference pass) for these shapes."""
    import torch

    rows = STEPS * batch
    shapes = [(INPUTS, HIDDEN, False), (HIDDEN, HIDDEN, True), (HIDDEN, CLASSES, True)]
    mats = [(torch.rand(rows, m), torch.randn(m, n), torch.randn(rows, n), dgrad) for m, n, dgrad in shapes]

    def train():
        for a, w, g, dgrad in mats:
            torch.mm(a, w)
            torch.mm(a.t(), g)
            if dgrad:
                torch.mm(g, w.t())

    def infer():
        for a, w, _, _ in mats:
            torch.mm(a, w)

    return train, infer


def worker(variant: str, batch: int, density: float, repeat: int, warmup: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)

    torch.manual_seed(0)
    x = (torch.rand(STEPS, batch, INPUTS) < density).float()
    target = torch.randint(0, CLASSES, (batch,))
    rates = list  # the floor has no neurons
    if variant == "floor":
        train, infer = _floor(batch)
    else:
        builders = {"snntorch": _build_snntorch, "norse": _build_norse, "spikingjelly": _build_spikingjelly}
        model, forward, rates = builders[variant]() if variant in builders else _build_spikescale(variant)
        loss, train = adam_training_step(model.parameters(), forward, x, target)

        def infer():
            with torch.no_grad():
                forward(x)

    baseline = peak_rss_mib()
    infer()
    initial_rates = rates()  # of the untrained network, identical weights in every library
    t_train = median_seconds(train, repeat, warmup)
    t_infer = median_seconds(infer, repeat, warmup)
    cpu_train = median_seconds(train, max(3, repeat // 2), 0, time.process_time)
    held = held_for_backward_mib(loss) if variant != "floor" else 0.0
    peak = peak_rss_mib()
    return {
        "train": t_train, "infer": t_infer, "cpu_train": cpu_train, "peak_mib": peak, "setup_mib": baseline,
        "held_mib": held,
        "threads": torch.get_num_threads(), "rates": initial_rates,
    }


# --------------------------------------------------------------------------------------------- main

def run_worker(variant: str, batch: int, density: float, args) -> dict:
    arguments = [
        "--worker", variant, "--batch", str(batch), "--density", str(density), "--repeat", str(args.repeat),
        "--warmup", str(args.warmup), "--malloc", args.malloc, "--threads", str(args.threads),
    ]
    return run_isolated(__file__, arguments, args.timeout)


def print_table(batch: int, density: float, results: dict) -> None:
    ok = {k: v for k, v in results.items() if "error" not in v}
    peers = [k for k in PEERS if k in ok]
    floor = ok.get("floor")
    best = {mode: min((ok[k][mode] for k in peers), default=None) for mode in ("train", "infer", "cpu_train")}
    print(f"\nB={batch}, input density {density:.0%}, T={STEPS}, 700-256-256-20")
    header = (
        f"  {'variant':46s} {'train ms':>9s} {'infer ms':>9s} {'peer/train':>10s} {'peer/infer':>10s} "
        f"{'train/floor':>11s} {'cpu ms':>7s} {'peer/cpu':>8s} {'peak MiB':>9s} {'held MiB':>8s}  hidden rates"
    )
    print(header)
    for name in VARIANTS:
        if name not in results:
            continue
        r = results[name]
        if "error" in r:
            print(f"  {DESCRIPTIONS[name]:46s} not run: {r['error']}")
            continue
        speed_train = f"{best['train'] / r['train']:.2f}×" if best["train"] and name != "floor" else ""
        speed_infer = f"{best['infer'] / r['infer']:.2f}×" if best["infer"] and name != "floor" else ""
        to_floor = f"{r['train'] / floor['train']:.2f}" if floor else ""
        speed_cpu = f"{best['cpu_train'] / r['cpu_train']:.2f}×" if best["cpu_train"] and name != "floor" else ""
        rates = " ".join(f"{v:.3f}" for v in r["rates"])
        print(
            f"  {DESCRIPTIONS[name]:46s} {r['train'] * 1e3:9.1f} {r['infer'] * 1e3:9.1f} {speed_train:>10s} "
            f"{speed_infer:>10s} {to_floor:>11s} {r['cpu_train'] * 1e3:7.1f} {speed_cpu:>8s} {r['peak_mib']:9.0f} "
            f"{r['held_mib']:8.1f}  {rates}"
        )
    print(
        "  (peer/…: fastest peer's time ÷ this variant's time, higher is faster; train/floor: ÷ floor time;\n"
        "   cpu ms: CPU time of a training step, all threads (robust to other jobs on the machine);\n"
        "   peak MiB: peak resident memory of the subprocess, libraries included; held MiB: memory allocated\n"
        "   by the forward pass and still held for the backward pass at the loss)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, nargs="*", default=[64, 32])
    parser.add_argument("--density", type=float, nargs="*", default=[0.05, 0.01])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="repeat all variants; keep each one's best round")
    parser.add_argument("--threads", type=int, default=2, help="torch (and kernel) threads in every subprocess")
    parser.add_argument("--malloc", choices=["default", "tuned"], default="default")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if args.malloc == "tuned":
        tune_malloc()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch[0], args.density[0], args.repeat, args.warmup, args.threads)))
        return
    import torch

    print(
        f"torch {torch.__version__}, {args.threads} threads, malloc {args.malloc}; per cell: median of "
        f"{args.repeat} steps after {args.warmup} warm-up steps in a fresh subprocess, best of {args.rounds} rounds; "
        f"load average at start {load_average()}"
    )
    for batch in args.batch:
        for density in args.density:
            results = best_of_rounds(
                lambda name: run_worker(name, batch, density, args), args.variants, args.rounds,
                ("train", "infer", "cpu_train"),
            )
            print_table(batch, density, results)
    print(f"load average at end {load_average()}")


if __name__ == "__main__":
    main()
