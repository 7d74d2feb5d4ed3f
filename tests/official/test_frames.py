"""CAVP frames: a 4 fps grid on the video's real timestamps, FFmpeg fps-filter selection, 224 x 224 in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frieren_rt.official import CAVPVideoEncoder, cavp_preset
from frieren_rt.official.frames import CAVPFeatures, grid_indices, grid_times, to_cavp_input


def test_grid_covers_the_duration_from_the_first_timestamp():
    assert torch.allclose(grid_times(2.0, start=10.0), torch.tensor([10.0, 10.25, 10.5, 10.75, 11.0, 11.25,
                                                                     11.5, 11.75], dtype=torch.float64))
    assert len(grid_times(8.0)) == 32  # the official window's 32 frames
    assert len(grid_times(8.1)) == 33


def test_slot_takes_the_last_frame_before_its_midpoint_like_ffmpeg_fps_filter():
    times = torch.arange(30, dtype=torch.float64) / 30  # 30 fps: slot k takes the frame shown at k/4 + 0.125
    idx = grid_indices(times, grid_times(1.0))
    assert idx.tolist() == [3, 11, 18, 26]  # 3/30 = 0.1 < 0.125 <= 4/30; 11/30 < 0.375 <= 12/30; ...


def test_irregular_timestamps_are_followed_not_frame_counts():
    times = torch.tensor([0.0, 0.05, 0.9, 0.95, 1.6], dtype=torch.float64)  # a stall, then a burst
    assert grid_indices(times, grid_times(2.0)).tolist() == [1, 1, 1, 1, 3, 3, 4, 4]


def test_frames_are_resized_to_224_scaled_to_unit_range_without_normalisation():
    frames = np.full((2, 48, 64, 3), 255, np.uint8)
    frames[1] = 0
    x = to_cavp_input(frames)
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    assert torch.all(x[0] == 1.0) and torch.all(x[1] == 0.0)


@pytest.mark.parametrize("duration", [2.0])
def test_features_come_on_the_grid_unit_norm(duration):
    torch.manual_seed(0)
    enc = CAVPVideoEncoder(cavp_preset("reduced")).eval()
    frames = np.random.default_rng(0).integers(0, 255, (20, 32, 40, 3), dtype=np.uint8)
    times = 5.0 + np.arange(20) / 10.0
    slots, feats = CAVPFeatures(enc, clip_frames=4)(frames, times, duration)
    assert torch.allclose(slots, 5.0 + torch.arange(8, dtype=torch.float64) / 4)
    assert feats.shape == (8, 512)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(8), atol=1e-5)
