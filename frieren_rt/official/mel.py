"""Frieren's 16 kHz log10-mel front end (Make-An-Audio 2's ``MelNet``), in plain torch: no librosa.

The official preprocessing (``script/data_preprocess/NAT_mel.py`` of cyanbx/Frieren-V2A; frieren.md, "Audio"):
clamp the waveform to [-1, 1], reflect-pad (n_fft - hop) / 2 = 384 samples each side, STFT with
``center=False`` and a periodic Hann window of 1024, magnitude sqrt(re^2 + im^2 + 1e-9), 80 Slaney mel bands
(librosa's defaults) over 0-8000 Hz, then log10(clamp(x, 1e-5)). The VAE encodes this and BigVGAN vocodes it.

It differs from the HiFi-GAN front end (frieren_rt.audio.mel) only in the rate (16 kHz), the clamp of the
input and the log base, so the mel geometry and the Slaney filterbank are shared from there.
62.5 frames/s; 131072 samples (8.192 s) -> 512 frames -> 256 VAE latents.
"""

from __future__ import annotations

import torch
from torch import nn

from frieren_rt.audio.mel import MelConfig, num_frames, slaney_mel_filterbank

__all__ = ["FRIEREN_16K", "log10_mel", "LogMel16k", "num_frames"]

FRIEREN_16K = MelConfig(sample_rate=16000, n_fft=1024, win_length=1024, hop_length=256, n_mels=80,
                        fmin=0.0, fmax=8000.0, clamp_min=1e-5, magnitude_eps=1e-9)


def log10_mel(
    wave: torch.Tensor,
    cfg: MelConfig = FRIEREN_16K,
    *,
    filters: torch.Tensor | None = None,
    window: torch.Tensor | None = None,
) -> torch.Tensor:
    """log10 mel magnitude exactly as the official ``MelNet.forward``.

    wave: (L,) or (B, L) float at 16 kHz (clamped to [-1, 1] here, as the official code does; the input is
    not modified); L > 384 (reflect padding). filters (80, 513) / window (1024,): optional precomputed.
    Returns (80, F) or (B, 80, F) float32, F = (L + 768 - 1024) // 256 + 1 (= L / 256 for multiples of 256).
    """
    squeeze = wave.dim() == 1
    x = (wave.unsqueeze(0) if squeeze else wave).float().clamp(-1.0, 1.0)  # (B, L), a new tensor
    if filters is None:
        filters = slaney_mel_filterbank(cfg).to(x.device)
    if window is None:
        window = torch.hann_window(cfg.win_length, device=x.device)  # periodic, as torch.hann_window's default
    x = torch.nn.functional.pad(x.unsqueeze(1), (cfg.pad, cfg.pad), mode="reflect").squeeze(1)  # (B, L + 768)
    spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window,
                      center=False, normalized=False, onesided=True, return_complex=True)  # (B, 513, F)
    mag = torch.sqrt(spec.real.square() + spec.imag.square() + cfg.magnitude_eps)
    out = torch.log10(torch.clamp(torch.matmul(filters, mag), min=cfg.clamp_min))  # (B, 80, F)
    return out.squeeze(0) if squeeze else out


class LogMel16k(nn.Module):
    """:func:`log10_mel` with its filterbank and window as buffers. forward((B, L) or (L,)) -> (B, 80, F)."""

    def __init__(self, cfg: MelConfig = FRIEREN_16K) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("filters", slaney_mel_filterbank(cfg), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return log10_mel(wave, self.cfg, filters=self.filters, window=self.window)
