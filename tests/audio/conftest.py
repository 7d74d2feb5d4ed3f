"""Audio test fixtures: the HiFi-GAN universal generator from the asset cache, loaded once per session."""

from __future__ import annotations

import pytest

from frieren_rt.assets.paths import AssetMissingError


@pytest.fixture(scope="session")
def universal_hifigan():
    from frieren_rt.audio.hifigan import HifiganGenerator

    try:
        return HifiganGenerator.from_package()
    except AssetMissingError as err:
        pytest.skip(f"HiFi-GAN universal not in the asset cache (run 'frieren-rt assets fetch'): {err}")
