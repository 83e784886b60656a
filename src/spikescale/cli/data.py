"""``spikescale data``: download SHD/SSC, encode audio into spikes, inspect spike files, list data sources."""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

import numpy as np

EXAMPLES = """examples:
  spikescale data download shd --root ~/data/shd
  spikescale data encode-audio --in ../shared/data/fsdd/recordings --out fsdd64.h5 --channels 64
  spikescale data info fsdd64.h5
  spikescale data list
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data",
        help="download, encode and inspect data sets",
        description="Download SHD/SSC, encode audio into SHD-schema spike files, inspect them, list data sources.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    get = actions.add_parser("download", help="fetch SHD or SSC from the official host (resumable)")
    get.add_argument("dataset", choices=["shd", "ssc"])
    get.add_argument("--root", required=True, type=Path, help="folder for the .h5 files")
    get.add_argument("--url", default=None, help="mirror base URL (default: the official zenkelab.org host)")
    get.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds (default 10)")
    get.set_defaults(func=_download)

    enc = actions.add_parser(
        "encode-audio",
        help="encode WAV files into an SHD-schema spike file",
        description="Encode WAV files with the cochlear encoder. Labels come from the folder layout "
        "(one sub-folder per class), from FSDD names {digit}_{speaker}_{index}.wav, or are all 0.",
    )
    enc.add_argument("--in", dest="inputs", nargs="+", required=True, type=Path, help="folders and/or .wav files")
    enc.add_argument("--out", required=True, type=Path, help="output .h5 file")
    enc.add_argument("--labels", choices=["auto", "folders", "fsdd", "none"], default="auto",
                     help="where labels come from (default auto: fsdd names, else class folders, else none)")
    enc.add_argument("--channels", type=int, default=700, help="filters / output units (default 700, like SHD)")
    enc.add_argument("--sample-rate", type=int, default=16000, help="resample audio to this rate in Hz (default 16000)")
    enc.add_argument("--scale", choices=["erb", "mel"], default="erb", help="centre-frequency spacing (default erb)")
    enc.add_argument("--spikes", choices=["lif", "crossing"], default="lif", help="spike generator (default lif)")
    enc.add_argument("--gain", type=float, default=4.5, help="envelope gain driving the spike generator (default 4.5)")
    enc.add_argument("--step-ms", type=float, default=0.5, help="spike-time resolution in ms (default 0.5)")
    enc.add_argument("--threads", type=int, default=None,
                     help="torch threads for the encoding (default: torch's; 1 is often faster on a busy machine)")
    enc.set_defaults(func=_encode)

    info = actions.add_parser("info", help="summarise an SHD-schema spike file")
    info.add_argument("file", type=Path)
    info.set_defaults(func=_info)

    listing = actions.add_parser("list", help="data sources for recipes and their options")
    listing.set_defaults(func=_list)


def _download(args) -> int:
    from ..data.download import OFFICIAL_URL, DownloadError, download

    try:
        paths = download(args.dataset, args.root, base_url=args.url or OFFICIAL_URL, timeout=args.timeout)
    except DownloadError as err:
        print(f"spikescale data download: error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


_FSDD = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def _collect(inputs: list[Path]) -> list[tuple[Path, str]]:
    """``(file, class folder name)`` of every WAV named by ``inputs``."""
    files = []
    for item in inputs:
        if item.is_dir():
            files.extend((p, p.parent.name if p.parent != item else "") for p in sorted(item.rglob("*.wav")))
        elif item.is_file():
            files.append((item, ""))
        else:
            raise FileNotFoundError(f"--in {item}: no such file or folder")
    if not files:
        raise ValueError(f"--in {' '.join(map(str, inputs))}: no .wav files found")
    return files


def _labels(files: list[tuple[Path, str]], mode: str):
    """``(labels, class names, speakers or None, speaker names or None)``."""
    names = [p.name for p, _ in files]
    fsdd = all(_FSDD.match(n) for n in names)
    if mode == "fsdd" or (mode == "auto" and fsdd):
        if not fsdd:
            bad = next(n for n in names if not _FSDD.match(n))
            raise ValueError(f"--labels fsdd: {bad} is not named {{digit}}_{{speaker}}_{{index}}.wav")
        matches = [_FSDD.match(n) for n in names]
        speaker_names = sorted({m.group(2) for m in matches})
        return ([int(m.group(1)) for m in matches], [str(d) for d in range(10)],
                [speaker_names.index(m.group(2)) for m in matches], speaker_names)
    folders = [folder for _, folder in files]
    if mode == "folders" or (mode == "auto" and all(folders)):
        if not all(folders):
            raise ValueError("--labels folders: give folders holding one sub-folder of .wav files per class")
        classes = sorted(set(folders))
        return [classes.index(f) for f in folders], classes, None, None
    return [0] * len(files), ["unlabelled"], None, None


def _encode(args) -> int:
    import torch

    from ..data.audio import CochlearEncoder, encode_files

    if args.threads:
        torch.set_num_threads(args.threads)

    encoder = CochlearEncoder(
        channels=args.channels, sample_rate=args.sample_rate, scale=args.scale, spikes=args.spikes,
        gain=args.gain, step_ms=args.step_ms,
    )
    files = _collect(args.inputs)
    labels, classes, speakers, speaker_names = _labels(files, args.labels)
    encode_files(
        [p for p, _ in files], args.out, encoder, labels, speakers=speakers, class_names=classes,
        speaker_names=speaker_names, names=[str(p) for p, _ in files],
    )
    print(f"wrote {args.out}: {len(files)} recordings, {len(classes)} classes, {args.channels} channels")
    return 0


def _info(args) -> int:
    from ..data.heidelberg import SpikeFile

    source = SpikeFile(args.file)
    times, units, offsets = source.read_all()
    counts = np.diff(offsets)
    last = np.array([times[a:b].max() if b > a else 0.0 for a, b in zip(offsets[:-1], offsets[1:])])
    print(f"{source.path}: {len(source)} samples, {source.classes} classes, "
          f"{'no speakers' if source.speakers is None else f'{len(np.unique(source.speakers))} speakers'}")
    print(f"  events per sample: mean {counts.mean():.0f}, min {counts.min()}, max {counts.max()}")
    print(f"  last spike: mean {last.mean():.3f} s, max {last.max():.3f} s; units 0..{int(units.max(initial=0))}")
    print(f"  labels: {np.bincount(source.labels).tolist()}")
    for key, value in source.attrs.items():
        print(f"  {key}: {value}")
    return 0


def _list(args) -> int:
    from ..data.registry import DATASETS, list_datasets

    for name, options in list_datasets().items():
        doc = (inspect.getdoc(DATASETS[name]) or "").split("\n")[0]
        print(f"{name}: {doc}")
        text = ", ".join(f"{k}" if v is inspect.Parameter.empty else f"{k}={v!r}" for k, v in options.items())
        print(f"    {text}")
    return 0
