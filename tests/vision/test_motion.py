"""Frame-difference motion features."""

from __future__ import annotations

import torch

from frieren_rt.vision.motion import motion_dim, motion_features


def test_static_video_has_no_motion():
    frame = torch.randint(0, 256, (1, 1, 3, 48, 64), dtype=torch.uint8)
    feats = motion_features(frame.expand(2, 5, -1, -1, -1))
    assert feats.shape == (2, 5, motion_dim(4)) and torch.count_nonzero(feats) == 0


def test_a_flash_in_one_corner_lights_only_that_cell():
    frames = torch.zeros(1, 3, 3, 64, 64)
    frames[0, 1, :, :16, :16] = 1.0  # white square in the top-left cell on frame 1 only
    feats = motion_features(frames, grid=4, size=64)
    assert feats[0, 0].abs().sum() == 0
    assert torch.isclose(feats[0, 1, 0], torch.tensor(1.0)) and feats[0, 1, 1:16].abs().sum() == 0
    assert torch.isclose(feats[0, 1, 16], torch.tensor(1 / 16))  # the whole-frame mean
    assert torch.isclose(feats[0, 2, 0], torch.tensor(1.0))  # it disappears again: motion again


def test_previous_frame_carries_motion_across_calls():
    video = torch.rand(1, 6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    whole = motion_features(video)
    tail = motion_features(video[:, 3:], previous=video[:, 2])
    torch.testing.assert_close(tail, whole[:, 3:])
    assert ((whole >= 0) & (whole <= 1)).all()
