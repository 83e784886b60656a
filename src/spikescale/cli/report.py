"""``spikescale report``: rebuild run reports and compare runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..report.report import compare_runs, tradeoff, write_report


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="rebuild report.md and plots of run directories and compare them",
        description="Rebuild each run's report from its directory, then print one comparison table "
        "(runs that differ only by seed are merged into mean ± std).",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (or folders holding them)")
    parser.add_argument("--out", type=Path, help="also write the comparison table to this Markdown file")
    parser.add_argument("--tradeoff", type=Path, metavar="PNG",
                        help="also plot test accuracy against hidden spikes per neuron (one curve per recipe)")
    parser.set_defaults(func=_report)


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories among ``paths`` and below them (a run directory holds ``config.yaml``)."""
    found = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"no such run directory: {path}")
        if (path / "config.yaml").is_file():
            found.append(path)
        else:
            found.extend(sorted(p.parent for p in path.rglob("config.yaml")))
    if not found:
        raise FileNotFoundError(f"no run directories (folders with config.yaml) under {', '.join(map(str, paths))}")
    return found


def _report(args: argparse.Namespace) -> int:
    runs = find_runs(args.runs)
    for run in runs:
        write_report(run)
    table = compare_runs(runs)
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    if args.tradeoff:
        print(f"plot: {tradeoff(runs, args.tradeoff)}")
    return 0
