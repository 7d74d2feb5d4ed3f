"""Vision test fixtures: one intra-op thread per test, and the ImageNet MobileNetV2 from the asset cache."""

from __future__ import annotations

import pytest
import torch

from frieren_rt.assets.paths import AssetMissingError


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread per test: on the shared 2-core machine two contending OpenMP threads made small
    tensor work 30-40x slower (tests/audio/conftest.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mobilenet():
    from frieren_rt.vision.mobilenet_v2 import MobileNetV2

    try:
        return MobileNetV2.from_package()
    except AssetMissingError as err:
        pytest.skip(f"MobileNetV2 weights not in the asset cache (run 'frieren-rt assets fetch'): {err}")
