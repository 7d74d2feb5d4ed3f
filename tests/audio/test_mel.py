"""The HiFi-GAN mel front end against an independent numpy computation and librosa's filter values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from frieren_rt.audio.mel import (
    HIFIGAN_22K,
    LogMel,
    MelConfig,
    hz_to_mel_slaney,
    log_mel,
    mel_to_hz_slaney,
    num_frames,
    slaney_mel_filterbank,
)


def _numpy_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Filter by filter, from the Slaney scale's definition (written separately from the module)."""

    def to_mel(f: float) -> float:
        return f * 3.0 / 200.0 if f < 1000.0 else 15.0 + 27.0 * math.log(f / 1000.0) / math.log(6.4)

    def to_hz(m: float) -> float:
        return m * 200.0 / 3.0 if m < 15.0 else 1000.0 * 6.4 ** ((m - 15.0) / 27.0)

    lo, hi = to_mel(fmin), to_mel(fmax)
    edges = [to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    bank = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(freqs):
            if left < f <= centre:
                bank[m, k] = (f - left) / (centre - left)
            elif centre < f < right:
                bank[m, k] = (right - f) / (right - centre)
        bank[m] *= 2.0 / (right - left)
    return bank


def _numpy_log_mel(y: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """HiFi-GAN's recipe in float64 numpy: reflect pad, explicit frames, periodic Hann, rfft, mel, log."""
    padded = np.pad(y.astype(np.float64), (cfg.pad, cfg.pad), mode="reflect")
    n = (len(padded) - cfg.n_fft) // cfg.hop_length + 1
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)
    frames = np.stack([padded[i * cfg.hop_length : i * cfg.hop_length + cfg.n_fft] for i in range(n)])
    mag = np.sqrt(np.abs(np.fft.rfft(frames * window, axis=1)) ** 2 + 1e-9).T  # (K, F)
    bank = _numpy_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    return np.log(np.maximum(bank @ mag, 1e-5))


def test_slaney_scale_round_trips_and_is_linear_below_1khz():
    hz = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz_slaney(hz_to_mel_slaney(hz)), hz, rtol=1e-12, atol=1e-9)
    assert hz_to_mel_slaney(np.array(1000.0)) == pytest.approx(15.0)
    assert hz_to_mel_slaney(np.array(500.0)) == pytest.approx(7.5)


def test_filterbank_matches_an_independent_numpy_construction():
    ours = slaney_mel_filterbank(HIFIGAN_22K).numpy()
    ref = _numpy_filterbank(22050, 1024, 80, 0.0, 8000.0)
    assert ours.shape == (80, 513) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-8)


def test_filterbank_matches_values_librosa_computes():
    """librosa 0.11.0 ``filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0, fmax=8000)``, recorded once."""
    bank = slaney_mel_filterbank(HIFIGAN_22K).numpy()
    np.testing.assert_allclose(
        bank.sum(1)[[0, 1, 20, 40, 60, 79]],
        [0.0453027785, 0.0453027822, 0.0453027859, 0.0465452448, 0.0463111624, 0.0464147925],
        rtol=1e-6,
    )
    np.testing.assert_allclose(bank[0, :4], [0.0, 0.0155277206, 0.0226513892, 0.0071236696], atol=1e-9)
    np.testing.assert_allclose(
        bank[40, 77:84],
        [0.0002958553, 0.0053154929, 0.0103351306, 0.0148954699, 0.0100649511, 0.0052344329, 0.0004039143],
        atol=1e-9,
    )
    assert [tuple(np.flatnonzero(bank[i])[[0, -1]]) for i in (0, 20, 40, 79)] == [
        (1, 3),
        (35, 38),
        (77, 83),
        (345, 371),
    ]


def test_log_mel_matches_numpy_reference_on_a_chirp_with_noise():
    rng = np.random.default_rng(0)
    t = np.arange(11025) / 22050
    y = 0.5 * np.sin(2 * np.pi * (200 + 3000 * t) * t) + 0.05 * rng.standard_normal(len(t))
    ours = log_mel(torch.from_numpy(y.astype(np.float32))).numpy()
    ref = _numpy_log_mel(y.astype(np.float32), HIFIGAN_22K)
    assert ours.shape == ref.shape == (80, num_frames(11025))
    np.testing.assert_allclose(
        ours, ref, atol=2e-3
    )  # float32 STFT vs float64: log error grows near the floor
    loud = ref > -6
    np.testing.assert_allclose(ours[loud], ref[loud], atol=2e-4)


def test_frame_count_is_samples_over_hop_and_batch_matches_single():
    assert num_frames(22016) == 86 and num_frames(256 * 40) == 40
    wave = torch.randn(3, 256 * 40) * 0.1
    batched = LogMel()(wave)
    assert batched.shape == (3, 80, 40)
    torch.testing.assert_close(batched[1], log_mel(wave[1]), rtol=0, atol=1e-5)


def test_tone_peaks_in_its_mel_band_and_silence_hits_the_floor():
    y = 0.5 * torch.sin(2 * torch.pi * 440.0 * torch.arange(22050) / 22050)
    mel = log_mel(y)
    centres = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(0.0), hz_to_mel_slaney(8000.0), 82))[1:-1]
    peak = int(mel[:, 10:-10].mean(1).argmax())
    assert abs(centres[peak] - 440.0) < (centres[peak + 1] - centres[peak - 1])
    silent = log_mel(torch.zeros(4096))
    assert torch.allclose(silent, torch.full_like(silent, math.log(1e-5)), atol=0.1)
