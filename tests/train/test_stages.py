"""Stage configuration of the training recipe (frieren_rt.train.stages)."""

import json

import pytest

from frieren_rt.model.foley import FoleyModel
from frieren_rt.train.stages import flow_model_config, geometry_of, load_stage_config, sampler_options

SIZES = {"latent_channels": 8, "window_latents": 69, "motion_width": 17 + 76, "motion_grid": 4}


def test_flow_model_config_defaults_to_the_shipped_base_models_shape() -> None:
    shipped = FoleyModel.from_pretrained("frieren_rt/weights/base.safetensors").cfg
    assert flow_model_config(load_stage_config("flow"), **SIZES) == shipped


def test_a_config_file_sizes_the_vector_field(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"flow": {"field_hidden": 192, "field_heads": 3, "field_depth": 6}}))
    fcfg = flow_model_config(load_stage_config("flow", path), **SIZES)
    assert (fcfg.field.hidden, fcfg.field.heads, fcfg.field.depth) == (192, 3, 6)
    small = sum(p.numel() for p in FoleyModel(flow_model_config(load_stage_config("flow"), **SIZES)).parameters())
    big = sum(p.numel() for p in FoleyModel(fcfg).parameters())
    assert big > 2 * small


def test_a_field_size_the_heads_do_not_divide_is_refused() -> None:
    with pytest.raises(ValueError, match="divisible"):
        flow_model_config(load_stage_config("flow", None, field_hidden=100, field_heads=3), **SIZES)


def test_a_config_file_sets_the_detector_and_the_event_window_share(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"detector": {"detector_widths": [24, 48, 64, 96], "detector_none_weight": 0.1},
                                "flow": {"p_event": 0.35, "stream_hops_s": [0.1, 0.2]}}))
    det = load_stage_config("detector", path)
    assert det.detector_widths == (24, 48, 64, 96) and det.detector_none_weight == 0.1
    flow = load_stage_config("flow", path)
    assert flow.p_event == 0.35
    assert sampler_options(flow, geometry_of(flow)) == {"p_event": 0.35, "steady_hops": (4, 9)}
    assert load_stage_config("flow").p_event == 0.5  # the shipped recipe's
