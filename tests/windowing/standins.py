"""Tiny deterministic stand-ins for the injected stages (the real encoder, VAE and vocoder live elsewhere)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from frieren_rt.model import VectorField, preset
from frieren_rt.windowing import StreamGeometry, WindowedGenerator

SR = 22050
MELS = 6


class LinearDecoder(nn.Module):
    """Latents (B, C, T) -> mel (B, MELS, 2T): nearest 2x upsampling and a fixed kernel-3 conv (time-invariant,
    receptive field one mel frame each side, like a conv VAE decoder in miniature)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.conv = nn.Conv1d(channels, MELS, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.rand(MELS, channels, 3, generator=g) / (3 * channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(z.repeat_interleave(2, dim=-1))


class OlaVocoder(nn.Module):
    """Mel (B, MELS, Tm) -> wave (B, 256 Tm): each frame adds a Hann-windowed 512-sample tone burst per band
    (hop 256), so the output is smooth and depends on about two mel frames around each sample."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.arange(512, dtype=torch.float64)
        freqs = 300.0 * (1 + torch.arange(MELS, dtype=torch.float64))
        kern = torch.hann_window(512, periodic=False, dtype=torch.float64) * torch.sin(
            2 * math.pi * freqs[:, None] * k / SR
        )
        self.up = nn.ConvTranspose1d(MELS, 1, 512, stride=256, padding=128, bias=False)
        with torch.no_grad():
            self.up.weight.copy_(kern[:, None].float())

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.up(mel)[:, 0]


def tiny_vector_field(raw_dim: int = 16) -> VectorField:
    cfg = preset("small", depth=1, hidden=64, heads=1, cond_dim=32, raw_cond_dim=raw_dim, zero_init=False)
    torch.manual_seed(0)
    return VectorField(cfg).eval()


class BatchSpy:
    """Wraps a velocity model and records the batch size and inputs of every call."""

    def __init__(self, model) -> None:  # noqa: ANN001
        self.model = model
        self.batch_sizes: list[int] = []
        self.calls: list[dict[str, torch.Tensor]] = []

    def __call__(self, x, t, cond, *, cond_index, known, mask):  # noqa: ANN001, ANN204
        self.batch_sizes.append(x.shape[0])
        self.calls.append({"known": known.clone(), "mask": mask.clone(), "cond_index": cond_index.clone()})
        return self.model(x, t, cond, cond_index=cond_index, known=known, mask=mask)


class JitteryEventModel:
    """A deterministic "model" whose output depends on the conditioning.

    Feature channel 0 of the frame on screen is an event intensity, channels 1.. a background level. The target
    latents are background everywhere plus a one-latent burst where the event is on screen, but placed
    ``jitter`` latents late on every odd call (a generator's timing of a transient varies between windows).
    Like a model trained with known latents, it adds no burst when the known latents already hold one within
    ``jitter`` latents of the event. Known latents are copied (mask 1). One Euler step from
    any x lands exactly on the target (v = (target - x) / (1 - t)).
    """

    def __init__(self, channels: int, jitter: int = 3) -> None:
        self.channels = channels
        self.jitter = jitter
        self.calls = 0

    def __call__(self, x, t, cond, *, cond_index, known, mask):  # noqa: ANN001, ANN204
        b, c, n = x.shape
        feat = torch.gather(cond, 1, cond_index[..., None].expand(-1, -1, cond.shape[-1]))  # (B, T, D)
        event = feat[..., 0] > 0.5  # (B, T)
        shift = self.jitter if self.calls % 2 else 0
        self.calls += 1
        onset = event & ~torch.nn.functional.pad(event, (1, 0))[:, :-1]  # first latent of each event
        burst = torch.zeros(b, n)
        for bi, j in onset.nonzero().tolist():
            near = slice(max(0, j - self.jitter), j + self.jitter + 1)
            if (known * mask)[bi, :, near].abs().amax() > 0.5 or j + shift >= n:
                continue
            burst[bi, j + shift] = 1.0
        background = feat[..., 1:2].transpose(1, 2).expand(-1, c, -1)  # (B, C, T)
        target = torch.where(burst[:, None].bool(), torch.ones_like(x), background)
        target = known * mask + target * (1 - mask)
        return (target - x) / (1 - t)[:, None, None].clamp_min(1e-6)


def make_generator(velocity, *, channels: int = 8, geometry: StreamGeometry | None = None, **kw) -> WindowedGenerator:  # noqa: ANN001
    return WindowedGenerator(
        geometry=geometry or StreamGeometry(),
        velocity=velocity,
        decoder=LinearDecoder(channels),
        vocoder=OlaVocoder(),
        latent_channels=channels,
        **kw,
    )


def envelope_onsets(wave: np.ndarray, *, block: int = 110, threshold: float) -> list[int]:
    """Sample indices where the 5 ms RMS envelope rises through ``threshold``."""
    n = len(wave) // block
    rms = np.sqrt((np.asarray(wave[: n * block]).reshape(n, block) ** 2).mean(axis=1))
    above = rms > threshold
    return [i * block for i in range(1, n) if above[i] and not above[i - 1]]
