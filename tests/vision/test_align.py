"""Per-frame features -> latents by timestamp, and the trainable projection."""

from __future__ import annotations

import pytest
import torch

from frieren_rt.vision.align import ProjectionConfig, VisualProjection, features_at_latents, features_at_times


def test_latents_read_the_frame_on_screen_at_their_centre_time():
    feats = torch.arange(8.0).view(1, 8, 1)  # frame i carries the value i
    out = features_at_latents(feats, torch.arange(8) / 4.0, num_latents=62, latent_rate=31.25)
    expected = torch.floor((torch.arange(62) + 0.5) / 31.25 * 4.0)  # frame shown at the latent centre
    assert out.shape == (1, 62, 1) and torch.equal(out[0, :, 0], expected)


def test_irregular_per_batch_frame_times_and_times_before_the_first_frame():
    feats = torch.tensor([[10.0, 11.0, 12.0], [20.0, 21.0, 22.0]]).unsqueeze(-1)  # (2, 3, 1)
    frame_ts = torch.tensor([[0.10, 0.20, 0.50], [0.0, 0.05, 0.06]])
    out = features_at_times(feats, frame_ts, torch.tensor([0.0, 0.15, 0.30, 0.55]))
    assert out[..., 0].tolist() == [[10.0, 10.0, 11.0, 12.0], [20.0, 22.0, 22.0, 22.0]]


def test_projection_maps_to_raw_cond_dim_and_requires_motion_when_configured():
    proj = VisualProjection(ProjectionConfig(raw_cond_dim=64, hidden=32))
    out = proj(torch.rand(2, 5, 1280) * 3, torch.rand(2, 5, 17))
    assert out.shape == (2, 5, 64) and out.requires_grad
    with pytest.raises(ValueError, match="motion"):
        proj(torch.rand(2, 5, 1280))
    image_only = VisualProjection(ProjectionConfig(raw_cond_dim=64, motion_dim=0))
    assert image_only(torch.rand(1, 3, 1280)).shape == (1, 3, 64)
