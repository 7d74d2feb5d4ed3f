"""CAVP's video branch computes what Diff-Foley's CAVP_Inference.encode_video computes and loads its ckpt."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from frieren_rt.official import (
    CAVPConfig,
    CAVPVideoEncoder,
    CheckpointMismatchError,
    apply_keyed_init,
    cavp_preset,
)
from tests.official.helpers import assert_close, fixtures_dir, io_tensors, spec


def _config(size: str) -> CAVPConfig:
    info = spec(f"cavp_{size}")["constructor"]
    return CAVPConfig(base_channels=info["video_encoder"]["base_channels"],
                      embed_dim=info["CAVP_Inference"]["embed_dim"])


def _model(size: str) -> CAVPVideoEncoder:
    info = spec(f"cavp_{size}")
    if info["weights_file"]:
        return CAVPVideoEncoder.from_pretrained(fixtures_dir() / info["weights_file"], _config(size))
    return apply_keyed_init(CAVPVideoEncoder(_config(size))).eval()


def _run_with_intermediates(model: CAVPVideoEncoder, video: torch.Tensor) -> dict[str, torch.Tensor]:
    """One forward pass (it is the slow part of this file), with the fixture's intermediates captured."""
    enc = model.video_encoder
    taps = {"stem": enc.conv1, "maxpool": enc.maxpool, **{n: getattr(enc, n) for n in enc.stage_names},
            "backbone": enc, "proj": model.video_project_head}
    seen: dict[str, torch.Tensor] = {}
    def tap(name: str):  # noqa: ANN202
        return lambda _module, _inputs, out: seen.__setitem__(name, out)

    hooks = [m.register_forward_hook(tap(n)) for n, m in taps.items()]
    try:
        with torch.no_grad():
            seen["feat"] = model(video)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("size", ["reduced", "official"])
def test_presets_equal_the_fixture_constructor_configs(size):
    assert cavp_preset(size) == _config(size)


def test_official_preset_has_published_video_keys_shapes_and_parameter_count():
    keys = spec("cavp_official_keys")["keys"]
    with torch.device("meta"):
        model = CAVPVideoEncoder(cavp_preset("official"))
    state = model.state_dict()
    assert set(state) == set(keys), f"missing {set(keys) - set(state)}, extra {set(state) - set(keys)}"
    for k, t in state.items():
        assert list(t.shape) == keys[k]["shape"], k
    assert sum(p.numel() for p in model.parameters()) == spec("cavp_official")["param_count"]["video_branch"]


@pytest.mark.parametrize("size", ["reduced", "official"])
def test_video_features_reproduce_official_outputs(size):
    io = io_tensors("cavp", size)
    model = _model(size)
    out = _run_with_intermediates(model, io["in_video_u8"].float() / 255)
    for name in ("stem", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        if f"im_{name}_hwmean" in io:  # reduced only: per-frame spatial means (B, C, T)
            assert_close(out[name].mean(dim=(3, 4)), io[f"im_{name}_hwmean"], name)
    assert_close(out["backbone"], io["out_backbone"], "backbone")
    assert_close(out["proj"], io["out_proj"], "projection")
    assert_close(out["feat"], io["out_feat"], "features")
    assert torch.allclose(out["feat"].norm(dim=-1), torch.ones(out["feat"].shape[:2]))


def test_dataparallel_checkpoint_loads_with_audio_branch_ignored(tmp_path):
    state = load_file(str(fixtures_dir() / "cavp_reduced.safetensors"))
    wrapped = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    wrapped |= {"module.spec_encoder.fc1.weight": torch.zeros(2, 2), "module.logit_scale": torch.zeros(())}
    torch.save({"state_dict": wrapped, "epoch": 66}, tmp_path / "cavp_epoch66.ckpt")
    model = CAVPVideoEncoder.from_pretrained(tmp_path / "cavp_epoch66.ckpt", cavp_preset("reduced"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_checkpoint_for_another_width_lists_the_shape_mismatches(tmp_path):
    with pytest.raises(CheckpointMismatchError) as err:
        CAVPVideoEncoder.from_pretrained(fixtures_dir() / "cavp_reduced.safetensors", cavp_preset("official"))
    expected = "video_encoder.conv1.conv.weight: expected (64, 3, 1, 7, 7), found (16, 3, 1, 7, 7)"
    assert expected in str(err.value)
