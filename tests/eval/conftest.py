"""Eval tests need the fetched asset cache (world sound pool, aisfx checkpoint); without it they skip with the
command that provides it. Fixtures render TRUE world audio only (no frames: frieren_rt.eval.truth)."""

from __future__ import annotations

import pytest

from frieren_rt.assets.fetch import is_fetched
from frieren_rt.assets.licences import MANIFEST_NAME
from frieren_rt.assets.paths import cache_root
from frieren_rt.assets.sources import SOURCES


def _assets_ready() -> bool:
    root = cache_root()
    return (root / MANIFEST_NAME).is_file() and all(is_fetched(s, root) for s in SOURCES if not s.optional)


def _aisfx_ready() -> bool:
    return (cache_root() / "pypi/aisfx-0.1.2/aisfx/models/checkpoint.pth").is_file()


requires_assets = pytest.mark.skipif(
    not _assets_ready(), reason=f"asset cache {cache_root()} is absent: run 'frieren-rt assets fetch' first")
requires_aisfx = pytest.mark.skipif(
    not (_assets_ready() and _aisfx_ready()),
    reason=f"aisfx checkpoint not in the asset cache {cache_root()}: run 'frieren-rt assets fetch' first")

TEST_SEEDS = range(200_000, 200_030)  # test split
TRAIN_SEEDS = range(300)  # train split


@pytest.fixture(scope="session")
def test_clips():
    from frieren_rt.eval.truth import true_audio

    return [true_audio(s) for s in TEST_SEEDS]


@pytest.fixture(scope="session")
def train_clips():
    from frieren_rt.eval.truth import true_audio

    return [true_audio(s) for s in TRAIN_SEEDS]
