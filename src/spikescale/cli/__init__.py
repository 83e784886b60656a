"""The ``spikescale`` command. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from .. import __version__
from . import data, demo

__all__ = ["main", "build_parser"]

SUBCOMMANDS = [demo, data]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikescale",
        description="Spiking neural networks that learn across timescales (DH-SNN, learnable delays, sparse TTFS).",
    )
    parser.add_argument("--version", action="version", version=f"spikescale {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"spikescale {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spikescale {args.command}: interrupted", file=sys.stderr)
        return 130
