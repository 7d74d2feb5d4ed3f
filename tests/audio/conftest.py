"""Audio test fixtures: one intra-op thread per test, and HiFi-GAN universal from the asset cache."""

from __future__ import annotations

import pytest
import torch

from frieren_rt.assets.paths import AssetMissingError


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test on one intra-op thread.

    On the shared 2-core machine, two OpenMP threads competing with other jobs made small-tensor steps 30-40x
    slower (15 VAE steps: 0.22 s on 1 thread, 7-13 s on 2), so these tests pin 1 thread and restore it after.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def universal_hifigan():
    from frieren_rt.audio.hifigan import HifiganGenerator

    try:
        return HifiganGenerator.from_package()
    except AssetMissingError as err:
        pytest.skip(f"HiFi-GAN universal not in the asset cache (run 'frieren-rt assets fetch'): {err}")
