"""The ``frieren-rt`` command: a thin argparse front over library functions.

Each subcommand lives in its own module of this package with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (a callable taking the parsed namespace and returning an exit code). Modules are
imported lazily by name so ``frieren-rt --help`` stays fast and a subcommand's heavy imports load only when it
runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules in the order --help lists them. Only commands that exist are listed.
SUBCOMMANDS: tuple[str, ...] = ("serve", "demo", "live", "capture", "profile", "generate", "eval", "world", "assets", "train", "info")

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frieren-rt",
        description="Real-time video-to-audio sound effects (Foley) on the Frieren rectified-flow design.",
        epilog="Run 'frieren-rt COMMAND --help' for the options of one command.",
    )
    from frieren_rt import __version__  # noqa: PLC0415

    parser.add_argument("--version", action="version", version=f"frieren-rt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"frieren_rt.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError) as exc:  # user errors: one clear line, no traceback
        print(f"frieren-rt {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
