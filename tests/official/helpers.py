"""Shared helpers for the official-component parity tests: fixture location, tolerance, io running."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

# The fixtures sit beside the repository (../shared/fixtures/frieren_official); FRIEREN_RT_FIXTURES overrides.
DEFAULT_FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "frieren_official"


def fixtures_dir() -> Path:
    """The frieren_official fixture folder; skips the calling test with the reason when it is absent."""
    env = os.environ.get("FRIEREN_RT_FIXTURES")
    root = Path(env) if env else DEFAULT_FIXTURES
    if not (root / "manifest.json").is_file():
        pytest.skip(f"official parity fixtures not found at {root} (set FRIEREN_RT_FIXTURES to their folder)")
    return root


def spec(name: str) -> dict[str, Any]:
    """A fixture JSON (e.g. ``vae_reduced``)."""
    return _read_json(fixtures_dir() / f"{name}.json")


@cache
def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def io_tensors(component: str, size: str) -> dict[str, torch.Tensor]:
    """``{component}_{size}_io.safetensors``; official io files are held back, so their tests skip here."""
    path = fixtures_dir() / f"{component}_{size}_io.safetensors"
    if not path.is_file():
        pytest.skip(f"{path.name} is not in the fixture folder (official-size io files are held back)")
    return load_file(str(path))


def tolerance(ref: torch.Tensor) -> float:
    # Fixture README: max |a - b| <= 1e-4 * max(1, max |ref|) in fp32 on CPU.
    return 1e-4 * max(1.0, ref.abs().max().item())


def assert_close(out: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    err = (out - ref).abs().max().item()
    assert err <= tolerance(ref), f"{name}: max error {err:.3g} > {tolerance(ref):.3g}"


def assert_checksum(got: dict[str, Any], ref: dict[str, Any], key: str) -> None:
    """Checksums agree up to float32 rounding: exp() may differ by 1 ulp between CPU vector paths."""
    scale = max(1.0, ref["abs_sum"])
    assert abs(got["sum"] - ref["sum"]) <= 1e-6 * scale, f"{key}: sum {got['sum']} != {ref['sum']}"
    assert abs(got["abs_sum"] - ref["abs_sum"]) <= 1e-6 * scale, f"{key}: abs_sum {got} != {ref}"
    for a, b in zip(got["first"], ref["first"], strict=False):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(b)), f"{key}: first values {got['first']} != {ref['first']}"
