"""The small streaming preset: shapes, continuity channels, timestamp length regulation, the attention seam."""

from __future__ import annotations

import pytest
import torch

import frieren_rt.kernels.dispatch as attention_module
from frieren_rt.model import VectorField, preset
from frieren_rt.model.timing import frame_times, latent_times, repeat_index, timestamp_index


def _tiny(**overrides) -> VectorField:
    torch.manual_seed(0)
    cfg = preset("small", hidden=64, heads=2, depth=2, raw_cond_dim=12, cond_dim=32, zero_init=False, **overrides)
    return VectorField(cfg).eval()


def test_small_preset_output_shape_and_dtype():
    model = _tiny()
    x, cond = torch.randn(3, 8, 69), torch.randn(3, 48, 12)
    v = model(x, torch.rand(3), cond)
    assert v.shape == (3, 8, 69) and v.dtype == torch.float32 and torch.isfinite(v).all()


def test_zero_initialised_field_outputs_zero():
    """Zero-initialised block and final projections: the untrained field is exactly 0 (paper design)."""
    cfg = preset("small", hidden=64, heads=2, depth=2, raw_cond_dim=12, cond_dim=32)
    v = VectorField(cfg)(torch.randn(2, 8, 20), torch.rand(2), torch.randn(2, 14, 12))
    assert torch.count_nonzero(v) == 0


def test_known_latents_change_the_output_only_through_the_mask():
    model = _tiny()
    x, cond, t = torch.randn(1, 8, 40), torch.randn(1, 28, 12), torch.tensor([0.3])
    known = torch.randn(1, 8, 40)
    mask = torch.zeros(1, 1, 40)
    with torch.no_grad():
        free = model(x, t, cond)
        masked_out = model(x, t, cond, known=known, mask=mask)  # mask 0: known values are invisible
        mask[..., :20] = 1
        told = model(x, t, cond, known=known, mask=mask)
    assert torch.allclose(free, masked_out)
    assert (told - free).abs().max() > 1e-3


def test_known_latents_rejected_without_continuity_channels():
    model = VectorField(preset("official", hidden=64, cond_dim=32, depth=1))
    with pytest.raises(ValueError, match="known-latent"):
        model(torch.randn(1, 20, 16), torch.rand(1), torch.randn(1, 2, 512), mask=torch.ones(1, 1, 16))


def test_window_longer_than_position_table_is_a_clear_error():
    model = _tiny(max_len=32)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randn(1, 8, 40), torch.rand(1), torch.randn(1, 28, 12))


def test_batch_elements_are_independent():
    """GroupNorm and attention act per sample: a sample's velocity does not depend on its batch mates."""
    model = _tiny()
    x, cond, t = torch.randn(4, 8, 30), torch.randn(4, 21, 12), torch.rand(4)
    with torch.no_grad():
        full = model(x, t, cond)
        one = model(x[2:3], t[2:3], cond[2:3])
    assert torch.allclose(full[2:3], one, atol=1e-5)


def test_official_repeat_mapping_drifts_and_timestamp_mapping_does_not():
    """32 frames at 4 fps x8 -> 256 latents at 31.25/s: by the last latent the repeat is 2.4 % late."""
    lat = latent_times(256, 31.25)
    rep_frame_time = repeat_index(256, 32, 8).double() / 4.0
    ts_frame_time = timestamp_index(frame_times(32, 4.0), lat).double() / 4.0
    # The frame a latent reads must be on screen at the latent's time: [frame_time, frame_time + 1/fps).
    covered = lat < 8.0  # latents inside the 8.0 s the 32 frames show (256 latents span 8.192 s)
    assert (lat - rep_frame_time)[covered].max() > 0.18  # repeat: reads a frame 186 ms stale by the end
    lag = (lat - ts_frame_time)[covered]
    assert (lag >= 0).all() and (lag < 0.25).all()  # timestamp: always the frame on screen


def test_timestamp_index_uses_true_irregular_timestamps():
    frames = torch.tensor([0.0, 0.030, 0.071, 0.100])  # jittery capture times
    lat = torch.tensor([0.01, 0.05, 0.08, 0.2])
    assert timestamp_index(frames, lat).tolist() == [0, 1, 2, 3]
    batched = timestamp_index(frames.expand(2, -1), lat)
    assert batched.shape == (2, 4) and batched[1].tolist() == [0, 1, 2, 3]


def test_every_attention_goes_through_the_one_seam(monkeypatch):
    calls = []
    real = attention_module.sdpa_attention

    def counting(q, k, v, key_padding_mask=None):
        calls.append(q.shape)
        return real(q, k, v, key_padding_mask)

    monkeypatch.setattr(attention_module, "sdpa_attention", counting)
    model = _tiny()
    model(torch.randn(1, 8, 16), torch.rand(1), torch.randn(1, 12, 12))
    assert len(calls) == 2 * model.cfg.depth  # two self-attentions per block
    assert all(s == (1, 2, 17, 32) for s in calls)  # (B, heads, T + 1, head dim): the timestep token included


def test_attention_seam_masks_padded_keys():
    q, k, v = torch.randn(3, 2, 2, 6, 8).unbind(0)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    out = attention_module.attention(q, k, v, key_padding_mask=mask)
    ref = attention_module.attention(q[:1, :, :, :], k[:1, :, :4], v[:1, :, :4])
    assert torch.allclose(out[:1], ref, atol=1e-6)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(KeyError, match="official"):
        preset("huge")
