"""Where the shared reference fixtures live (../shared/fixtures beside the repository, or $FRIEREN_RT_FIXTURES)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def official_fixtures() -> Path:
    """The frieren_official fixture folder; skips the calling test with a clear reason when absent."""
    env = os.environ.get("FRIEREN_RT_FIXTURES")
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "frieren_official"
    if not (root / "manifest.json").is_file():
        pytest.skip(f"official parity fixtures not found at {root} (set FRIEREN_RT_FIXTURES)")
    return root
