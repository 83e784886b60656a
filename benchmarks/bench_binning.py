"""Binning benchmark: a generated SHD-sized training file (8,156 samples, ~8,000 events each, 700 units).

Times, on one generated file in the SHD schema (times stored as float16, sorted per sample; uint16 units):

* reading all events from the HDF5 file (``SpikeFile.read_all``),
* vectorised binning (``bin_events``) at dt = 1 ms (DH-SNN: 1 s, binary; the same with the faithful
  official rule; per-sample length counts) and the DCLS setting (10 ms, first spike, 700 → 140),
* the end-to-end cached dataset build (read + bin + write the cache) and one epoch of item reads,
* the official DH-SNN conversion (a per-sample loop over 1000 steps, each searching and deleting the
  used events) on a subset, extrapolated linearly to the whole file — labelled as an extrapolation.

Run: ``python benchmarks/bench_binning.py`` (``--samples 500`` for a quick run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from timing import peak_rss_mib

from spikescale.data.events import EventBinning, bin_events
from spikescale.data.heidelberg import SpikeFile, SpikeFileDataset


def write_shd_sized(path: Path, samples: int, mean_events: int, seed: int = 0) -> int:
    """Write ``samples`` samples of ~``mean_events`` events (±25 %) over ≤ 1.2 s; returns the event count."""
    rng = np.random.default_rng(seed)
    total = 0
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (samples,), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (samples,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(samples):
            n = int(rng.integers(int(0.75 * mean_events), int(1.25 * mean_events)))
            duration = rng.uniform(0.6, 1.2)
            times[i] = np.sort(rng.uniform(0.0, duration, n)).astype(np.float16)
            units[i] = rng.integers(0, 700, n).astype(np.uint16)
            total += n
        f.create_dataset("labels", data=rng.integers(0, 20, samples).astype(np.uint16))
        f.create_dataset("extra/speaker", data=rng.integers(0, 10, samples).astype(np.uint16))
    return total


def official_dh_snn_conversion(times: np.ndarray, units: np.ndarray, dt: float = 1e-3, steps: int = 1000) -> np.ndarray:
    """The official DH-SNN per-sample conversion, written out from its description (spec dh-snn §5.1)."""
    frames = np.zeros((steps, 700))
    for i in range(steps):
        now = np.argwhere(times <= i * dt).flatten()
        used = units[now]
        used = used[used > 0]
        frames[i, 700 - used] = 1
        times = np.delete(times, now)
        units = np.delete(units, now)
    return frames


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8156)
    parser.add_argument("--events", type=int, default=8000, help="mean events per sample")
    parser.add_argument("--reference-samples", type=int, default=20, help="samples converted the official way")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shd_train.h5"
        seconds, total = timed(lambda: write_shd_sized(path, args.samples, args.events))
        print(f"generated {path.name}: {args.samples} samples, {total:,} events, "
              f"{path.stat().st_size / 2**20:.0f} MiB in {seconds:.1f} s")

        source = SpikeFile(path)
        read_s, (times, units, offsets) = timed(source.read_all)
        rows = [("read all events (h5py)", read_s)]
        settings = {
            "dt=1 ms, 1 s, binary (DH-SNN clean)": EventBinning(dt_ms=1.0, duration_ms=1000.0, binary=True),
            "dt=1 ms, 1 s, binary, faithful official rule": EventBinning(dt_ms=1.0, duration_ms=1000.0, binary=True, faithful=True),
            "dt=1 ms, per-sample length, counts": EventBinning(dt_ms=1.0),
            "dt=10 ms, first spike, 700→140 counts (DCLS)": EventBinning(dt_ms=10.0, align="first_spike", pool=5),
        }
        warm = min(10, args.samples)
        bin_events(times[: offsets[warm]], units[: offsets[warm]], offsets[: warm + 1], EventBinning())  # warm-up
        for name, binning in settings.items():
            seconds, frames = timed(lambda: bin_events(times, units, offsets, binning))
            rows.append((f"bin_events {name}", seconds))
        dh = settings["dt=1 ms, 1 s, binary (DH-SNN clean)"]
        build_s, data = timed(lambda: SpikeFileDataset(path, dh, cache_dir=Path(tmp) / "cache"))
        rows.append(("cached dataset build (checksum + read + bin + write)", build_s))
        epoch_s, _ = timed(lambda: sum(data[i][1] for i in range(len(data))))
        rows.append((f"one epoch of item reads ({len(data)} dense [1000, 700] frames)", epoch_s))

        k = min(args.reference_samples, args.samples)
        faithful = settings["dt=1 ms, 1 s, binary, faithful official rule"]
        ref_s, ref = timed(lambda: [official_dh_snn_conversion(times[offsets[i]:offsets[i + 1]], units[offsets[i]:offsets[i + 1]])
                                    for i in range(k)])
        ours = bin_events(times, units, offsets, faithful)
        assert all(np.array_equal(ours.dense(i).numpy(), ref[i]) for i in range(k)), "faithful binning differs from the official loop"
        official_total = ref_s / k * args.samples

    print(f"\n  {'step':66s} {'seconds':>8s}")
    for name, seconds in rows:
        print(f"  {name:66s} {seconds:8.2f}")
    print(f"  {'official DH-SNN loop, extrapolated from ' + str(k) + ' samples':66s} {official_total:8.1f}")
    fast = dict(rows)["bin_events dt=1 ms, 1 s, binary, faithful official rule"]
    print(f"\nfaithful vectorised binning equals the official loop on {k} samples; "
          f"speed-up {official_total / fast:.0f}x (extrapolated)")
    print(f"peak memory {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
