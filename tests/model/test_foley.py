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


def _traced(decays: tuple[float, ...] = (0.5, 0.9)) -> FoleyConfig:
    # 3 event entries = [embedding (1) | posteriors of 1 class + "no event"]; 1 class -> 1 trace per decay
    cfg = _config(event_dim=3)
    return replace(cfg, projection=replace(cfg.projection, motion_dim=5 + 3 + len(decays)), event_classes=1,
                   trace_decays=decays)


def test_event_traces_of_the_class_posteriors_join_the_motion_input():
    from frieren_rt.vision.events import event_trace  # noqa: PLC0415

    torch.manual_seed(0)
    model = FoleyModel(_traced()).eval()
    assert model.cfg.feature_dim == 8 + 5 + 3  # the traces are computed, not read
    seen = {}
    model.projection.register_forward_pre_hook(lambda _m, args: seen.update(motion=args[1]))
    cond = torch.rand(1, 4, 8 + 5 + 3)
    model(torch.randn(1, model.latent_channels, 6), torch.tensor([0.5]), cond)
    traces = seen["motion"][..., 8:]
    torch.testing.assert_close(traces[..., :1], event_trace(cond[..., 14:15], 0.5))  # class, not "no event"
    torch.testing.assert_close(traces[..., 1:], event_trace(cond[..., 14:15], 0.9))
    model(torch.randn(1, model.latent_channels, 6), torch.tensor([0.5]), model.null_condition(cond))
    assert torch.count_nonzero(seen["motion"][..., 8:]) == 0  # the CFG null stays all-zero


def test_file_round_trip_keeps_the_event_traces(tmp_path):
    model = FoleyModel(_traced())
    model.save(tmp_path / "m.safetensors")
    back = FoleyModel.from_pretrained(tmp_path / "m.safetensors")
    assert back.cfg == model.cfg and back.cfg.trace_decays == (0.5, 0.9)


def test_event_traces_need_class_posteriors_and_decays_below_one():
    import pytest  # noqa: PLC0415

    with pytest.raises(ValueError, match="event_classes"):
        replace(_traced(), event_classes=0)
    with pytest.raises(ValueError, match="decays"):
        _traced((0.5, 1.0))


def test_tail_guidance_scale_needs_class_posteriors_and_keeps_onsets_at_the_full_scale():
    import pytest  # noqa: PLC0415

    cond = torch.zeros(1, 6, 8 + 5 + 3)
    cond[0, :, -1] = 1.0  # "no event" everywhere ...
    cond[0, 1, -2:] = torch.tensor([1.0, 0.0])  # ... but an onset on frame 1
    index = torch.arange(6)
    traced = FoleyModel(_traced())
    assert traced.guidance_scale(cond, index, 4.5) == 4.5  # no tail scale: one scale
    scale = traced.guidance_scale(cond, index, 4.5, 1.5)[0, 0]  # (T,) of (B, 1, T)
    assert scale[:3].tolist() == [4.5, 4.5, 4.5] and bool((scale[3:] < 4.5).all())
    with pytest.raises(ValueError, match="class posteriors"):
        FoleyModel(_config(event_dim=3)).guidance_scale(cond, index, 4.5, 1.5)
