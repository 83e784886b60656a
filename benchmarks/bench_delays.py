"""Delay benchmark (issue 6): the DCLS network 140-256-256-20, K=25, T=100, B=64, 5 %-dense input spikes.

(a) Training step (forward, summed-softmax cross-entropy, backward) at σ = 12 (start of the schedule)
    and σ = 0.23 (the last three quarters of training): spikescale's automatic method against the
    official computation (dense Gaussian kernel, ``conv1d`` over all K taps), with each method shown.
(b) Inference with integer delays (eval mode): the automatic method against the same dense conv on
    one-hot kernels and against the same network without delays (Linear → BN → LIF, no padding).

Every variant runs the same network object (only ``DelayedDense.method`` changes); medians over rounds in
which the variants take turns in shuffled order (each turn: one untimed call, then the timed one) are
reported. On a shared machine use ``--threads 1 --clock cpu`` (CPU time of the measuring thread).
``--calibrate`` times every method on the network's three layers for several window widths and fits the
constants of ``spikescale.functional.delays.estimate_cost`` (``CostConstants``) to them.
Run: ``python benchmarks/bench_delays.py [--threads N] [--repeat R]``; ratios > 1 mean spikescale is faster.
"""

from __future__ import annotations

import argparse
import random
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
    changes) affects all of them alike, in an order shuffled each round (seeded), so that no variant always
    follows the same one (in seven comparisons from five runs with a fixed order, the variant timed right after
    the official one took up to 17 % longer, median 7 %, than the same computation timed elsewhere in the
    round); each turn starts with ``warmup`` untimed calls, so that every
    variant is timed in its own steady state (memory it allocates reused, not faulted in again after
    another variant's large buffers were returned to the system).
    """
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names, order = list(variants), random.Random(0)
    for _ in range(repeat):
        order.shuffle(names)
        for name in names:
            fn = variants[name]
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


# (steps, in, out, input gradient) of the benchmark network's three delay layers.
CALIBRATION_LAYERS = ((100, 140, 256, False), (112, 256, 256, True), (124, 256, 20, True))
# Window widths W: integer delays, linear interpolation at σ = 0 and 0.6, gauss at σ = 0.23, 1 and 3.
CALIBRATION_WINDOWS = {1: None, 2: ("linear", 0.0), 4: ("linear", 0.6), 6: ("gauss", 0.23), 14: ("gauss", 1.0),
                       25: ("gauss", 3.0)}


def calibrate(repeat: int) -> None:
    """Fit ``fd.CostConstants`` to timings of every method on the benchmark network's layers, then print
    the fitted constants and, for each layer, window and mode, the fastest method and ``auto``'s choice
    under the fitted and the current constants."""
    times = _calibration_times(repeat)
    fitted = _fit_costs(times)
    print("\nfitted cost constants (unit: Fourier forward per multiply-add); current in brackets")
    for name, value in fitted._asdict().items():
        print(f"  {name:26s} {value:6.2f}  ({getattr(fd.COSTS, name):.2f})")
    print(f"\n  {'layer':16s} {'W':>3s} {'mode':8s} {'fastest':8s} {'fitted':>16s} {'current':>16s}"
          "  (pick, time / fastest)")
    for (steps, inputs, outputs, input_grad), taps, training in sorted({key[:3] for key in times}):
        layer = steps, inputs, outputs, input_grad
        measured = {m: times[layer, taps if m == "taps" else 14, training, m] for m in fd.METHODS[1:]}
        fastest = min(measured, key=measured.get)
        picks = []
        for constants in (fitted, fd.COSTS):
            pick = min(measured, key=lambda m: _estimate(m, *layer, taps, training, constants))
            picks.append(f"{pick} {measured[pick] / measured[fastest]:.2f}")
        print(f"  {inputs:>4d}→{outputs:<4d} T={steps:<4d} {taps:3d} {'train' if training else 'infer':8s} "
              f"{fastest:8s} {picks[0]:>16s} {picks[1]:>16s}")


def _estimate(method, steps, inputs, outputs, input_grad, taps, training, constants):
    return fd.estimate_cost(method, steps=steps, batch=BATCH, in_features=inputs, out_features=outputs,
                            max_delay=K, taps=taps, training=training, input_grad=input_grad, constants=constants)


def _calibration_times(repeat: int) -> dict:
    """Median seconds keyed ``(layer, W, training, method)``; dense and Fourier (whose work does not depend on
    W) are timed once per layer and mode, with W = 14."""
    variants = {}
    for layer in CALIBRATION_LAYERS:
        steps, inputs, outputs, input_grad = layer
        x = (torch.rand(steps, BATCH, inputs) < 0.2).float().requires_grad_(input_grad)
        weight = (torch.randn(outputs, inputs, 1) * 0.1).requires_grad_()
        positions = ((torch.rand(outputs, inputs, 1) * 2 - 1) * (K // 2)).requires_grad_()
        for taps, interpolation in CALIBRATION_WINDOWS.items():
            for method in fd.METHODS[1:] if taps == 14 else ("taps",):
                for training in (False, True):
                    variants[layer, taps, training, method] = _calibration_call(
                        x, weight, positions, interpolation, method, training)
    return measure(variants, repeat)


def _calibration_call(x, weight, positions, interpolation, method, training):
    def call() -> None:
        with torch.set_grad_enabled(training):
            if interpolation is None:
                y = fd.integer_delay_conv(x, weight, fd.integer_delays(positions, K), K, method=method)[0]
            else:
                kind, sigma = interpolation
                y = fd.delay_conv(x, weight, positions, sigma, K, interpolation=kind, method=method)[0]
            if training:
                y.backward(torch.ones_like(y))
    return call


def _fit_costs(times: dict, iterations: int = 2000) -> fd.CostConstants:
    """Least squares on log time: ``time ≈ scale · estimate_cost`` (the Fourier forward constant stays 1),
    by L-BFGS from the current constants."""
    logs = torch.tensor(fd.COSTS, dtype=torch.float64).log()
    keys, seconds = list(times), torch.tensor(list(times.values()), dtype=torch.float64).log()

    def residuals(logs: torch.Tensor) -> torch.Tensor:
        constants = fd.CostConstants(*logs.exp())
        predicted = torch.stack([torch.log(_estimate(method, *layer, taps, training, constants) * 1e-12)
                                 for layer, taps, training, method in keys])
        error = predicted - seconds
        return error - error.mean()  # the best scale

    logs.requires_grad_()
    optimiser = torch.optim.LBFGS([logs], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = residuals(logs).square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    error = residuals(logs.detach())
    print(f"\nfit: RMS error of log time {error.square().mean().sqrt():.3f} over {len(times)} timings")
    return fd.CostConstants(*logs.detach().exp().tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--calibrate", action="store_true",
                        help="only fit and print the constants of the automatic choice")
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
