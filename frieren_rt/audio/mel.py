"""Log-mel features of the HiFi-GAN universal vocoder (22.05 kHz), in plain torch: no librosa.

Exactly the front end HiFi-GAN was trained on (Kong et al. 2020, ``meldataset.mel_spectrogram`` of the
official code): reflect-pad (n_fft - hop) / 2 samples each side, STFT with ``center=False`` and a periodic
Hann window, magnitude sqrt(re^2 + im^2 + 1e-9), Slaney-scale / Slaney-normalised mel filters (librosa's
defaults, ``htk=False, norm="slaney"``), natural log of the mel magnitude clamped at 1e-5.

With that padding a waveform of L samples gives ``L // hop`` frames when L is a multiple of the hop (frame j
is centred on sample j * hop + hop / 2), so mel frames and vocoder output line up exactly (1 frame = 256
samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "HIFIGAN_22K",
    "LogMel",
    "MelConfig",
    "hz_to_mel_slaney",
    "log_mel",
    "mel_to_hz_slaney",
    "num_frames",
    "slaney_mel_filterbank",
]


@dataclass(frozen=True, kw_only=True)
class MelConfig:
    """STFT and mel geometry. Defaults are HiFi-GAN universal's ``config.json`` (V1, 22.05 kHz)."""

    sample_rate: int = 22050
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    clamp_min: float = 1e-5
    magnitude_eps: float = 1e-9

    def __post_init__(self) -> None:
        if (self.n_fft - self.hop_length) % 2:
            raise ValueError(f"n_fft - hop = {self.n_fft - self.hop_length} must be even (symmetric padding)")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length={self.win_length} > n_fft={self.n_fft}")

    @property
    def pad(self) -> int:
        """Reflect padding on each side: (n_fft - hop) / 2 = 384 samples for HiFi-GAN."""
        return (self.n_fft - self.hop_length) // 2

    @property
    def frame_rate(self) -> float:
        """Mel frames per second (86.13 for 22050 / 256)."""
        return self.sample_rate / self.hop_length

    @classmethod
    def from_hifigan_json(cls, cfg: dict) -> MelConfig:
        """The mel geometry from a HiFi-GAN ``config.json`` dict (its keys: sampling_rate, n_fft, ...)."""
        return cls(
            sample_rate=int(cfg["sampling_rate"]),
            n_fft=int(cfg["n_fft"]),
            win_length=int(cfg["win_size"]),
            hop_length=int(cfg["hop_size"]),
            n_mels=int(cfg["num_mels"]),
            fmin=float(cfg["fmin"]),
            fmax=float(cfg["fmax"]),
        )


HIFIGAN_22K = MelConfig()

# Slaney's Auditory Toolbox mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above with 27 mels
# per factor 6.4 (librosa.hz_to_mel with htk=False uses the same constants).
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Hz -> Slaney mel (float64)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    """Slaney mel -> Hz (float64); inverse of :func:`hz_to_mel_slaney`."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)


def slaney_mel_filterbank(cfg: MelConfig = HIFIGAN_22K) -> torch.Tensor:
    """Triangular mel filters, Slaney-normalised (equal area). Returns (n_mels, n_fft // 2 + 1).

    Computed in float64 and returned as float32, as librosa does (HiFi-GAN casts librosa's matrix to float32).
    """
    fft_freqs = np.linspace(0.0, cfg.sample_rate / 2.0, cfg.n_fft // 2 + 1)  # (K,)
    mel_pts = np.linspace(hz_to_mel_slaney(cfg.fmin), hz_to_mel_slaney(cfg.fmax), cfg.n_mels + 2)
    hz_pts = mel_to_hz_slaney(mel_pts)  # (M + 2,) band edges and centres
    widths = np.diff(hz_pts)  # (M + 1,)
    offsets = hz_pts[:, None] - fft_freqs[None, :]  # (M + 2, K)
    rising = -offsets[:-2] / widths[:-1, None]  # (M, K) lower slope of filter m
    falling = offsets[2:] / widths[1:, None]  # (M, K) upper slope
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]  # Slaney area normalisation
    return torch.from_numpy(weights.astype(np.float32))


def num_frames(num_samples: int, cfg: MelConfig = HIFIGAN_22K) -> int:
    """Frames from ``num_samples`` samples: (L + 2 pad - n_fft) // hop + 1 (= L // hop for HiFi-GAN)."""
    return (num_samples + 2 * cfg.pad - cfg.n_fft) // cfg.hop_length + 1


def log_mel(
    wave: torch.Tensor,
    cfg: MelConfig = HIFIGAN_22K,
    *,
    filters: torch.Tensor | None = None,
    window: torch.Tensor | None = None,
) -> torch.Tensor:
    """Natural-log mel magnitude of a mono waveform.

    wave: (L,) or (B, L) float at ``cfg.sample_rate``, nominally in [-1, 1]; L > pad (reflect padding needs
    it). filters / window: optional precomputed (n_mels, n_fft//2+1) filterbank and (win_length,) Hann window.
    Returns (n_mels, F) or (B, n_mels, F) float32 with F = :func:`num_frames` (L).
    """
    squeeze = wave.dim() == 1
    x = wave.unsqueeze(0) if squeeze else wave  # (B, L)
    x = x.float()
    if filters is None:
        filters = slaney_mel_filterbank(cfg).to(x.device)
    if window is None:
        window = torch.hann_window(cfg.win_length, device=x.device)  # periodic, as torch.stft users do
    # HiFi-GAN pads (n_fft - hop) / 2 with center=False: frame j covers [j hop - pad, j hop - pad + n_fft).
    x = torch.nn.functional.pad(x.unsqueeze(1), (cfg.pad, cfg.pad), mode="reflect")  # (B, 1, L + 2 pad)
    x = x.squeeze(1)  # (B, L + 2 pad)
    spec = torch.stft(
        x,
        cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=window,
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )  # (B, K, F)
    mag = torch.sqrt(spec.real.square() + spec.imag.square() + cfg.magnitude_eps)
    mel = torch.matmul(filters, mag)  # (M, K) @ (B, K, F) -> (B, M, F)
    out = torch.log(torch.clamp(mel, min=cfg.clamp_min))
    return out.squeeze(0) if squeeze else out


class LogMel(nn.Module):
    """:func:`log_mel` with the filterbank and window held as buffers (they follow ``.to(device)``).

    forward(wave (B, L) or (L,)) -> (B, n_mels, L // hop) or (n_mels, L // hop).
    """

    def __init__(self, cfg: MelConfig = HIFIGAN_22K) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("filters", slaney_mel_filterbank(cfg), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return log_mel(wave, self.cfg, filters=self.filters, window=self.window)
