"""``spikescale demo``: the main job (what ``make run`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.demo import run_demo


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="DH-SNN vs vanilla SNNs on the spiking XOR tasks (about 10 minutes on 2 cores)",
        description="Train vanilla SFNNs, DH-SFNNs and a DH-SRNN on the multi-timescale and delayed spiking XOR "
        "tasks with a reduced budget, print one comparison table and write run directories with reports.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny budget (under a minute), for smoke tests")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/demo-<timestamp>)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=lambda a: run_demo(quick=a.quick, out=a.out, seed=a.seed, progress=not a.no_progress) and 0)
