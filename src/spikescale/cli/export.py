"""``spikescale export``: write a trained run's model to a neuromorphic exchange format."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.runner import load_run_model
from ..export.nir import write_nir


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="export a trained run to NIR",
        description="Export the selected (best) model of a run directory. Example:\n"
        "  spikescale export runs/xor-delayed-dh --format nir --out model.nir",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", type=Path, help="run directory")
    parser.add_argument("--format", choices=["nir"], default="nir")
    parser.add_argument("--out", type=Path, required=True, help="output file")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--dt", type=float, help="step length in seconds (default: the run's data step, else 1 ms)")
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    model, _, shape = load_run_model(args.run, args.checkpoint)
    dt = args.dt if args.dt is not None else (shape.get("dt_ms") or 1.0) * 1e-3
    path = write_nir(model, args.out, dt=dt)
    print(f"wrote {path} (dt = {dt:g} s)")
    return 0
