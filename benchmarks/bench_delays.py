"""Delay benchmark (issue 6): the DCLS network 140-256-256-20, K=25, T=100, B=64, 5 %-dense input spikes.

(a) Training step (forward, summed-softmax cross-entropy, backward) at σ = 12 (start of the schedule)
    and σ = 0.23 (the last three quarters of training): spikescale's automatic method against the
    official computation (dense Gaussian kernel, ``conv1d`` over all K taps), with each method shown.
(b) Inference with integer delays (eval mode): the automatic method against the same dense conv on
    one-hot kernels and against the same network without delays (Linear → BN → LIF, no padding).

Every variant runs the same network object (only ``DelayedDense.method`` changes); medians over rounds in
which the variants take turns (each turn: one untimed call, then the timed one) are reported. On a shared
machine use ``--threads 1 --clock cpu`` (CPU time of the measuring thread).
``--calibrate`` prints the per-layer multiply-add throughput of each method (the constants of
``spikescale.functional.delays.estimate_cost``).
Run: ``python benchmarks/bench_delays.py [--threads N] [--repeat R]``; ratios > 1 mean spikescale is faster.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from timing import peak_rss_mib

from spikescale.functional import delays as fd
from spikescale.nn import DelayedDense, build_delay_network

STEPS, BATCH, SIZES, K = 100, 64, (140, 256, 256, 20), 25


CLOCK = time.perf_counter


def measure(variants: dict[str, Callable[[], object]], repeat: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each variant over ``repeat`` rounds.

    The variants take turns within each round, so that a drift in the machine's speed (other jobs, clock
    changes) affects all of them alike; each turn starts with ``warmup`` untimed calls, so that every
    variant is timed in its own steady state (memory it allocates reused, not faulted in again after
    another variant's large buffers were returned to the system).
    """
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            for _ in range(warmup):
                fn()
            start = CLOCK()
            fn()
            samples[name].append(CLOCK() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def set_method(model: torch.nn.Module, method: str) -> None:
    for module in model.modules():
        if isinstance(module, DelayedDense):
            module.method = method


def loss_of(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The DCLS loss: cross-entropy on the sum over time of the per-step softmax."""
    return F.cross_entropy(out.softmax(-1).sum(0), target)


def bench_training(repeat: int, x: torch.Tensor, target: torch.Tensor) -> None:
    model = build_delay_network(SIZES[0], list(SIZES[1:-1]), SIZES[-1], max_delay=K, seed=0)
    plain = build_delay_network(SIZES[0], list(SIZES[1:-1]), SIZES[-1], max_delay=K, seed=0, delays="none")

    def step(net: torch.nn.Module, method: str) -> Callable[[], None]:
        def run() -> None:
            set_method(net, method)
            net.zero_grad(set_to_none=True)
            out, _ = net(x)
            loss_of(out, target).backward()
        return run

    for sigma in (12.0, 0.23):
        for module in model.modules():
            if isinstance(module, DelayedDense):
                module.set_sigma(sigma)
        chosen = _chosen_methods(model, x, sigma)
        times = measure(
            {
                "official: dense kernel, conv1d over all K taps": step(model, "dense"),
                "spikescale auto": step(model, "auto"),
                "spikescale fourier": step(model, "fourier"),
                "spikescale taps": step(model, "taps"),
                "same network without delays": step(plain, "auto"),
            },
            repeat,
        )
        reference = times["official: dense kernel, conv1d over all K taps"]
        print(f"\n(a) training step, σ = {sigma:g} (taps per synapse: {chosen['taps']}; auto chose {chosen['auto']})")
        _table(times, reference)
        print(f"  speed-up of auto over the official computation: {reference / times['spikescale auto']:.2f}×")


def _chosen_methods(model: torch.nn.Module, x: torch.Tensor, sigma: float) -> dict[str, object]:
    layers = [m for m in model.modules() if isinstance(m, DelayedDense)]
    _, taps = fd.tap_window(layers[0].positions, sigma, K, tolerance=layers[0].tolerance)
    steps = x.shape[0]
    chosen = []
    for layer in layers:
        chosen.append(fd.choose_method(steps=steps, batch=x.shape[1], in_features=layer.in_features,
                                       out_features=layer.out_features, max_delay=K, taps=taps))
        steps = fd.output_length(steps, K, layer.length)
    return {"taps": taps, "auto": ", ".join(chosen)}


def with_batch_statistics(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Set BatchNorm running statistics to this input's (cumulative average over a few passes), then eval()."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.momentum = None
    with torch.no_grad():
        for _ in range(3):
            model(x)
    return model.eval()


def bench_inference(repeat: int, x: torch.Tensor) -> None:
    model = with_batch_statistics(build_delay_network(SIZES[0], list(SIZES[1:-1]), SIZES[-1], max_delay=K, seed=0), x)
    plain = with_batch_statistics(
        build_delay_network(SIZES[0], list(SIZES[1:-1]), SIZES[-1], max_delay=K, seed=0, delays="none"), x
    )
    rates = [f"{spikes.mean().item():.1%}" for spikes in model.hidden_spikes(x)]

    def run(net: torch.nn.Module, method: str) -> Callable[[], None]:
        def call() -> None:
            set_method(net, method)
            with torch.no_grad():
                net(x)
        return call

    times = measure(
        {
            "dense conv on one-hot kernels": run(model, "dense"),
            "spikescale auto (integer delays)": run(model, "auto"),
            "spikescale fourier (one-hot kernels)": run(model, "fourier"),
            "spikescale taps (one tap per synapse)": run(model, "taps"),
            "same network without delays": run(plain, "auto"),
        },
        repeat,
    )
    reference = times["dense conv on one-hot kernels"]
    print(f"\n(b) inference with integer delays (hidden firing rates {', '.join(rates)} per step)")
    _table(times, reference)
    auto = times["spikescale auto (integer delays)"]
    print(f"  auto vs dense conv: {reference / auto:.2f}× faster; "
          f"auto / no-delay network: {auto / times['same network without delays']:.2f}")


def _table(times: dict[str, float], reference: float) -> None:
    print(f"  {'variant':50s} {'ms':>9s} {'speed-up':>9s}")
    for name, seconds in times.items():
        print(f"  {name:50s} {seconds * 1e3:9.1f} {reference / seconds:8.2f}×")


def calibrate(repeat: int) -> None:
    """Implied forward/backward constants of ``estimate_cost`` on the 256→256 layer: integer delays (one tap)
    and interpolated delays at σ = 0.23 and σ = 1 (the few-tap windows W of the default tolerance)."""
    x = (torch.rand(STEPS, BATCH, 256) < 0.1).float().requires_grad_()
    weight = (torch.randn(256, 256, 1) * 0.1).requires_grad_()
    positions = ((torch.rand(256, 256, 1) * 2 - 1) * 12).requires_grad_()
    delays = fd.integer_delays(positions, K)
    methods = ("dense", "fourier", "taps")
    cases = {"integer": None, "σ=0.23": 0.23, "σ=1": 1.0}

    def call(sigma, method):
        if sigma is None:
            return fd.integer_delay_conv(x, weight, delays, K, method=method)[0]
        return fd.delay_conv(x, weight, positions, sigma, K, method=method)[0]

    def forward(sigma, method):
        with torch.no_grad():
            call(sigma, method)

    def training(sigma, method):
        call(sigma, method).backward(torch.ones(fd.output_length(STEPS, K), BATCH, 256))

    variants = {(case, m, grad): (lambda s=sigma, m=m, g=grad: (training if g else forward)(s, m))
                for case, sigma in cases.items() for m in methods for grad in (False, True)}
    times = measure(variants, repeat)
    print("\ncalibration: 256→256 layer, T=100, B=64, 10 %-dense input spikes (unit: Fourier forward per MAC)")
    for case, sigma in cases.items():
        taps = 1 if sigma is None else fd.tap_window(positions, sigma, K)[1]
        shape = dict(steps=STEPS, batch=BATCH, in_features=256, out_features=256, max_delay=K, taps=taps,
                     length="extend", delays_per_synapse=1)
        unit = times[(case, "fourier", False)] / fd._macs("fourier", **shape)
        for m in methods:
            macs = fd._macs(m, **shape)
            fwd, both = times[(case, m, False)], times[(case, m, True)]
            print(f"  {case:8s} W={taps:2d} {m:8s} forward {fwd * 1e3:7.1f} ms, forward+backward {both * 1e3:7.1f} ms;"
                  f" implied ({fwd / macs / unit:.2f}, {(both - fwd) / macs / unit:.2f}), now {fd._time_per_mac(m, taps)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--calibrate", action="store_true", help="only print the per-method throughput")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or the CPU time of this thread (robust to other load; needs --threads 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # the compiled kernels follow torch's thread count
    if args.clock == "cpu":
        if torch.get_num_threads() != 1:
            parser.error("--clock cpu measures one thread: add --threads 1")
        global CLOCK
        CLOCK = time.thread_time
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock; "
          f"compiled taps kernels: {fd.delay_kernels.available()}")
    if args.calibrate:
        calibrate(args.repeat)
        return
    x = (torch.rand(STEPS, BATCH, SIZES[0]) < 0.05).float()
    target = torch.randint(0, SIZES[-1], (BATCH,))
    if not args.skip_training:
        bench_training(args.repeat, x, target)
    bench_inference(args.repeat, x)
    print(f"\npeak memory of this process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
