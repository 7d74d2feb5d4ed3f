"""Arguments shared by the benchmarks that generate world clips with a weights folder (gate_sweep.py,
false_onsets.py): which weights, which model variant, how many clips of which split."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_run_args(ap: argparse.ArgumentParser) -> None:
    """--weights, --variant, --clips, --split."""
    ap.add_argument("--weights", type=Path, default=None, help="weights or run folder (default: shipped)")
    ap.add_argument("--variant", default="distill", help="model variant (default: distill)")
    ap.add_argument("--clips", type=int, default=30, help="clips of the split (default 30)")
    ap.add_argument("--split", default="val", choices=["val", "test"], help="world split (default: val)")
