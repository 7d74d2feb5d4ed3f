"""Contracts of the injected stages and the per-hop timing record.

Real stages (the image encoder in frieren_rt.vision, the VAE decoder and vocoder in frieren_rt.audio, the
VectorField) satisfy these protocols; tests inject tiny stand-ins. Nothing here imports those modules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = [
    "FeatureExtractor",
    "VelocityModel",
    "VelocityFn",
    "Sampler",
    "LatentDecoder",
    "Vocoder",
    "HopTimings",
    "euler_sampler",
    "stopwatch",
]


class FeatureExtractor(Protocol):
    """Decoded video frames (any pixel arrays, one per frame) -> (N, D) per-frame features."""

    def __call__(self, frames: Sequence[Any]) -> torch.Tensor: ...


class VelocityModel(Protocol):
    """``frieren_rt.model.VectorField``'s contract: x (B, C, T), t (B,), cond (B, F, D), cond_index (B, T),
    known (B, C, T), mask (B, 1, T) -> velocity (B, C, T)."""

    def __call__(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        *,
        cond_index: torch.Tensor,
        known: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor: ...


VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # v(x (B,C,T), t (B,)) -> (B,C,T)
Sampler = Callable[[VelocityFn, torch.Tensor], torch.Tensor]  # (v, x0 noise) -> x1 data estimate


class LatentDecoder(Protocol):
    """VAE decoder: latents (B, C, T) -> mel (B, M, T * mels_per_latent)."""

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...


class Vocoder(Protocol):
    """Mel (B, M, Tm) -> waveform (B, Tm * samples_per_mel) or (B, 1, Tm * samples_per_mel)."""

    def __call__(self, mel: torch.Tensor) -> torch.Tensor: ...


def euler_sampler(steps: int = 1) -> Sampler:
    """Euler over t in [0, 1] (0 noise, 1 data) with ``steps`` equal steps; one step is the schedule [0, 1]."""
    if steps < 1:
        raise ValueError("steps must be >= 1")

    def sample(v: VelocityFn, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        ts = torch.linspace(0.0, 1.0, steps + 1, device=x0.device)
        for t0, t1 in zip(ts[:-1], ts[1:], strict=True):
            x = x + (t1 - t0) * v(x, t0.expand(x.shape[0]))
        return x

    return sample


@dataclass(frozen=True)
class HopTimings:
    """Seconds spent per stage for one hop (one batch: every stream of the batch shares the model stages)."""

    video_decode: float = 0.0
    features: float = 0.0
    vector_field: float = 0.0
    vae_decode: float = 0.0
    vocoder: float = 0.0
    resample: float = 0.0
    batch_size: int = 1

    @property
    def total(self) -> float:
        return (
            self.video_decode + self.features + self.vector_field + self.vae_decode + self.vocoder + self.resample
        )


@contextmanager
def stopwatch(out: dict[str, float], key: str, device: torch.device | None = None) -> Iterator[None]:
    """Adds the wall seconds of the block to ``out[key]``; synchronises CUDA so GPU work is counted."""
    sync = device is not None and device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if sync:
            torch.cuda.synchronize(device)
        out[key] = out.get(key, 0.0) + time.perf_counter() - t0
