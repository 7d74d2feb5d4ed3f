"""World tests need the fetched asset cache; without it they skip with the command that provides it."""

import pytest

from frieren_rt.assets.fetch import is_fetched
from frieren_rt.assets.licences import MANIFEST_NAME
from frieren_rt.assets.paths import cache_root
from frieren_rt.assets.sources import SOURCES


def assets_ready() -> bool:
    root = cache_root()
    return (root / MANIFEST_NAME).is_file() and all(is_fetched(s, root) for s in SOURCES if not s.optional)


requires_assets = pytest.mark.skipif(
    not assets_ready(), reason=f"asset cache {cache_root()} is absent: run 'frieren-rt assets fetch' first")
