"""Audio encoding benchmark: all Free Spoken Digit Dataset recordings through the cochlear encoder.

For each channel count, encodes every FSDD file (3,000 by default) into one SHD-schema file, as the
``fsdd`` data source does on first use, and prints the wall time, files per second and the mean firing
rate per channel. ``--threads`` sets torch's intra-op threads (on a busy machine 1 can be faster).

Run: ``python benchmarks/bench_encoding.py --channels 64 700``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from timing import peak_rss_mib

from spikescale.data.audio import CochlearEncoder, encode_files
from spikescale.data.heidelberg import SpikeFile
from spikescale.data.speech import fsdd_recordings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 700])
    parser.add_argument("--root", default=None, help="FSDD folder (default: ../shared/data/fsdd)")
    parser.add_argument("--files", type=int, default=None, help="encode only the first N recordings")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recordings, _ = fsdd_recordings(args.root)
    recordings = recordings[: args.files] if args.files else recordings
    seconds_of_audio = sum(r.path.stat().st_size - 44 for r in recordings) / 2 / 8000  # 16-bit mono at 8 kHz
    print(f"{len(recordings)} recordings, {seconds_of_audio:.0f} s of audio, torch threads {torch.get_num_threads()}")
    print(f"  {'channels':>8s} {'seconds':>9s} {'files/s':>8s} {'spikes/channel/s':>17s}")
    with tempfile.TemporaryDirectory() as tmp:
        for channels in args.channels:
            encoder = CochlearEncoder(channels=channels, sample_rate=8000)
            out = Path(tmp) / f"fsdd{channels}.h5"
            start = time.perf_counter()
            encode_files([r.path for r in recordings], out, encoder, [r.label for r in recordings], progress=False)
            elapsed = time.perf_counter() - start
            events = np.diff(SpikeFile(out).read_all()[2]).sum()
            print(f"  {channels:8d} {elapsed:9.1f} {len(recordings) / elapsed:8.1f} {events / seconds_of_audio / channels:17.1f}")
    print(f"peak memory {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
