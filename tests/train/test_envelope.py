"""frieren_rt/train/envelope.py: the students' band-envelope loss against the true audio."""

from __future__ import annotations

import pytest
import torch

from frieren_rt.train.envelope import band_envelope, envelope_loss


def test_band_envelope_averages_contiguous_groups_of_mel_bins() -> None:
    mel = torch.arange(8.0).view(1, 8, 1).expand(1, 8, 3)  # bin b holds level b in every frame
    env = band_envelope(mel, 4)
    assert env.shape == (1, 4, 3)
    assert env[0, :, 0].tolist() == [0.5, 2.5, 4.5, 6.5]
    with pytest.raises(ValueError, match="envelope bands must be 1..8"):
        band_envelope(mel, 9)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    """A stand-in decoder: (B, C, W) latents -> (B, 2 C, 2 W) 'mel', each latent spread over two frames."""
    return torch.cat([x, -x], dim=1).repeat_interleave(2, dim=-1)


def test_the_envelope_loss_counts_only_free_latents_and_gives_gradient_to_them() -> None:
    """A student that ends the sound early (zeros where the truth still sounds) is charged for those free
    latents only; where the known prefix differs from the truth nothing is charged (it is the truth there)."""
    target = torch.ones(1, 2, 6)
    mask = torch.tensor([[[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]])
    x1 = target.clone()
    x1[..., 4:] = 0.0  # the tail ends two latents early
    x1[..., :2] = 5.0  # known latents: ignored
    x1.requires_grad_(True)
    loss = envelope_loss(_upsample, x1, target, mask, bands=4)
    # bands of the stand-in's 4 bins are single bins of level +-1 against 0: L1 1 on 2 of 4 free latents
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert x1.grad[..., :2].abs().sum() == 0.0
    assert x1.grad[..., 4:].abs().sum() > 0.0
    assert envelope_loss(_upsample, target, target, mask, bands=2).item() == 0.0
