"""The 16 kHz log10-mel front end computes the official MelNet: clamp, reflect pad, STFT, Slaney mel, log10."""

from __future__ import annotations

import numpy as np
import torch

from frieren_rt.audio.mel import slaney_mel_filterbank
from frieren_rt.official.mel import FRIEREN_16K, LogMel16k, log10_mel, num_frames


def _numpy_reference(wave: np.ndarray) -> np.ndarray:
    """Independent float64 version: frames of the reflect-padded signal, periodic Hann, rfft, mel, log10."""
    cfg = FRIEREN_16K
    x = np.pad(np.clip(wave, -1, 1).astype(np.float64), cfg.pad, mode="reflect")
    count = (len(x) - cfg.n_fft) // cfg.hop_length + 1
    frames = np.stack([x[i * cfg.hop_length: i * cfg.hop_length + cfg.n_fft] for i in range(count)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)
    spec = np.fft.rfft(frames * window, axis=1)  # (F, 513)
    mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    mel = slaney_mel_filterbank(cfg).double().numpy() @ mag.T  # (80, F)
    return np.log10(np.maximum(mel, 1e-5))


def test_matches_an_independent_float64_reference():
    wave = np.random.default_rng(0).uniform(-0.8, 0.8, 4096).astype(np.float32)
    out = log10_mel(torch.from_numpy(wave))
    ref = _numpy_reference(wave)
    assert out.shape == (80, 16)
    assert np.abs(out.numpy() - ref).max() < 1e-4


def test_training_crop_gives_512_frames_at_62_5_per_second():
    assert num_frames(131072, FRIEREN_16K) == 512
    assert FRIEREN_16K.frame_rate == 62.5
    assert LogMel16k()(torch.zeros(2, 131072)).shape == (2, 80, 512)


def test_input_is_clamped_to_unit_range_and_not_modified():
    wave = torch.linspace(-3, 3, 2048)
    before = wave.clone()
    assert torch.equal(log10_mel(wave), log10_mel(wave.clamp(-1, 1)))
    assert torch.equal(wave, before)


def test_silence_sits_at_the_log10_floor_and_a_tone_peaks_in_its_band():
    assert torch.allclose(log10_mel(torch.zeros(2048)), torch.tensor(-5.0))
    t = torch.arange(16000) / 16000
    mel = log10_mel(0.5 * torch.sin(2 * torch.pi * 1000 * t))
    centres = slaney_mel_filterbank(FRIEREN_16K).argmax(dim=1) * 16000 / 1024  # Hz of each band's peak
    assert abs(centres[mel.mean(1).argmax()].item() - 1000) < 80
