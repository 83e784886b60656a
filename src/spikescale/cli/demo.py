"""``spikescale demo``: the main job (what ``make run`` runs)."""

from __future__ import annotations

import argparse

from ..experiments.demo import run_demo


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="compare a vanilla SFNN and DH-SFNNs on the multi-timescale spiking XOR",
        description="Build a vanilla SFNN and DH-SFNNs, run them on a multi-timescale spiking XOR batch and "
        "print spike statistics and parameter counts.",
    )
    parser.add_argument("--batch", type=int, default=64, help="samples in the XOR batch (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=lambda args: run_demo(batch=args.batch, seed=args.seed))
