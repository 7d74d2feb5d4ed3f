"""FoleyModel: the feature split it reads, and its file round trip with the event detector's features."""

from __future__ import annotations

from dataclasses import replace

import torch

from frieren_rt.model.config import preset
from frieren_rt.model.foley import FoleyConfig, FoleyModel
from frieren_rt.vision.align import ProjectionConfig


def _config(event_dim: int) -> FoleyConfig:
    field = preset("small", depth=1, hidden=32, heads=1, cond_dim=16, raw_cond_dim=24)
    return FoleyConfig(field=field, projection=ProjectionConfig(image_dim=8, motion_dim=5 + event_dim,
                                                                raw_cond_dim=24), event_dim=event_dim)


def test_event_features_skip_the_motion_log_scaling():
    torch.manual_seed(0)
    model = FoleyModel(_config(event_dim=3)).eval()
    seen = {}
    model.projection.register_forward_pre_hook(lambda _m, args: seen.update(motion=args[1]))
    cond = torch.rand(1, 4, 8 + 5 + 3)
    model(torch.randn(1, model.latent_channels, 6), torch.tensor([0.5]), cond)
    cells, events = seen["motion"].split([5, 3], dim=-1)
    torch.testing.assert_close(cells, torch.log1p(100 * cond[..., 8:13]))
    torch.testing.assert_close(events, cond[..., 13:])


def test_file_round_trip_keeps_event_dim(tmp_path):
    model = FoleyModel(_config(event_dim=3))
    model.save(tmp_path / "m.safetensors")
    back = FoleyModel.from_pretrained(tmp_path / "m.safetensors")
    assert back.cfg.event_dim == 3 and back.cfg.feature_dim == 8 + 5 + 3


def test_event_dim_must_fit_in_the_motion_vector():
    try:
        replace(_config(event_dim=3), event_dim=9)
    except ValueError as err:
        assert "event_dim" in str(err)
    else:
        raise AssertionError("event_dim larger than the motion vector was accepted")
