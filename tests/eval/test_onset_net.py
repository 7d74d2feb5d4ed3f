"""The learned onset detector (frieren_rt/eval/onset_net.py) and its fitting (onset_fit.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frieren_rt.eval.onset_net import (
    LearnedOnsetDetector,
    OnsetNet,
    OnsetNetConfig,
    onset_features,
    onset_targets,
    pick_probability_peaks,
)
from frieren_rt.eval.onsets import detect_onsets, onset_sync, pool_sync
from tests.eval.conftest import requires_assets

# Measured with the shipped weights (python -m frieren_rt.eval.onset_fit) on the TRUE audio of the 30 test
# clips of conftest.TEST_SEEDS (237 onsets): F1 0.927 (precision 0.981, recall 0.878), mean |offset| 2.0 ms, no
# false onset in silence; the spectral-flux detector 0.747; the learned detector's onsets scored against the
# next clip's events 0.094. The bars leave room for a refit.
LEARNED_F1_BAR = 0.85
FLOOR_F1_BAR = 0.20


def test_targets_peak_at_each_onset_and_vanish_between():
    cfg = OnsetNetConfig()
    y = onset_targets(np.array([0.5, 1.0]), 400, cfg.frame_s)
    peaks = [round(0.5 / cfg.frame_s), round(1.0 / cfg.frame_s)]
    assert y.shape == (400,) and float(y.max()) <= 1.0
    assert all(float(y[p]) > 0.8 for p in peaks)
    assert float(y[(peaks[0] + peaks[1]) // 2]) < 1e-6 and float(y[:50].max()) < 1e-6
    assert float(onset_targets(np.array([]), 10, cfg.frame_s).sum()) == 0.0


def test_peaks_keep_the_strongest_within_the_minimum_gap_and_respect_the_threshold():
    cfg = OnsetNetConfig(threshold=0.5)
    gap = round(cfg.min_gap_s / cfg.frame_s)
    prob = np.zeros(300)
    prob[[50, 50 + gap // 2, 200, 260]] = [0.9, 0.95, 0.4, 0.7]
    assert pick_probability_peaks(prob, cfg).tolist() == [50 + gap // 2, 260]  # 0.9 suppressed, 0.4 below
    assert pick_probability_peaks(prob, cfg, threshold=0.3).tolist() == [50 + gap // 2, 200, 260]


def test_features_are_levels_and_their_rises_frame_by_frame():
    cfg = OnsetNetConfig()
    audio = np.zeros(cfg.sample_rate, np.float32)
    audio[cfg.sample_rate // 2:] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(cfg.sample_rate // 2) / cfg.sample_rate)
    f = onset_features(audio, cfg)
    assert f.shape == (2 * cfg.n_mels, 1 + cfg.sample_rate // cfg.hop)
    rise = f[cfg.n_mels:].sum(0)
    assert abs(int(rise.argmax()) - round(0.5 / cfg.frame_s)) <= 3  # the tone's start
    with pytest.raises(ValueError, match="mono"):
        onset_features(np.zeros((2, 100), np.float32), cfg)


def test_weights_round_trip_with_their_threshold(tmp_path):
    torch.manual_seed(0)
    cfg = OnsetNetConfig(threshold=0.35)
    det = LearnedOnsetDetector(OnsetNet(cfg), cfg)
    det.save(tmp_path / "o.safetensors")
    back = LearnedOnsetDetector.load(tmp_path / "o.safetensors")
    audio = np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1
    assert back.cfg == cfg
    x = onset_features(audio, cfg)[None]
    assert torch.equal(back.net(x), det.net.eval()(x))


def test_missing_weights_say_how_to_fit_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="onset_fit"):
        LearnedOnsetDetector.load(tmp_path / "absent.safetensors")


@requires_assets
def test_shipped_detector_finds_the_true_onsets_the_flux_detector_misses_and_fails_on_a_mismatched_clip(test_clips):
    det = LearnedOnsetDetector.load()
    found = [det(c.audio) for c in test_clips]
    learned = pool_sync([onset_sync(d, c.events, c.silent_spans) for d, c in zip(found, test_clips, strict=True)])
    flux = pool_sync([onset_sync(detect_onsets(c.audio), c.events, c.silent_spans) for c in test_clips])
    n = len(test_clips)
    floor = pool_sync([onset_sync(found[(i + 1) % n], c.events, c.silent_spans) for i, c in enumerate(test_clips)])
    assert learned["f1"] >= LEARNED_F1_BAR and learned["f1"] > flux["f1"] + 0.1, (learned, flux)
    assert learned["mean_abs_offset_ms"] <= 10.0 and learned["false_onset_rate_in_silence"] <= 0.05, learned
    assert floor["f1"] <= FLOOR_F1_BAR, floor


@requires_assets
def test_shipped_detector_judges_timing_not_the_band_above_the_products_mel(test_clips):
    """Low-passing true audio at 8 kHz (the top of the product's log-mel, issue 3) moves no onset, so it must
    not move the score much (a first fit on 0-11 kHz fell from 0.91 to 0.775 here: onset_net.py)."""
    def low_pass(a: np.ndarray, hz: float) -> np.ndarray:
        spec = np.fft.rfft(a)
        spec[np.fft.rfftfreq(len(a), 1 / 22050) > hz] = 0
        return np.fft.irfft(spec, len(a)).astype(np.float32)

    det, clips = LearnedOnsetDetector.load(), test_clips[:12]
    full = pool_sync([onset_sync(det(c.audio), c.events, c.silent_spans) for c in clips])
    cut = pool_sync([onset_sync(det(low_pass(c.audio, 8000)), c.events, c.silent_spans) for c in clips])
    assert cut["f1"] >= full["f1"] - 0.03, (full, cut)


@requires_assets
def test_fit_resumes_from_its_checkpoint(tmp_path):
    from frieren_rt.eval.onset_fit import fit

    out = tmp_path / "o.safetensors"
    first = fit(out, train_clips=2, val_clips=2, steps=2, batch_size=2, checkpoint_every=1)
    assert out.is_file() and out.with_suffix(".ckpt").is_file() and first["steps"] == 2
    state = torch.load(out.with_suffix(".ckpt"), weights_only=False)
    assert state["step"] == 2 and len(state["losses"]) == 2
    fit(out, train_clips=2, val_clips=2, steps=4, batch_size=2, checkpoint_every=1)
    resumed = torch.load(out.with_suffix(".ckpt"), weights_only=False)
    assert resumed["step"] == 4 and resumed["losses"][:2] == state["losses"]  # continued, not restarted
    assert LearnedOnsetDetector.load(out).cfg.threshold > 0
