"""The BigVGAN generator computes what the official one computes and loads best_netG.pt + args.yml."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from frieren_rt.official import (
    BIGVGAN_WEIGHT_G_GAIN,
    BigVGAN,
    BigVGANConfig,
    CheckpointMismatchError,
    apply_keyed_init,
    bigvgan_preset,
)
from frieren_rt.official.alias_free import Activation1d, SnakeBeta, kaiser_sinc_filter
from tests.official.helpers import assert_close, fixtures_dir, io_tensors, spec

# args.yml as yaml.dump writes it (block lists, nested lists in compact form) for the reduced generator.
ARGS_YML = """resblock: '1'
num_gpus: 0
batch_size: 64
learning_rate: 0.0001
adam_b1: 0.8
seed: 1234
upsample_rates:
- 4
- 4
- 2
- 2
- 2
- 2
upsample_kernel_sizes: [8, 8, 4, 4, 4, 4]
upsample_initial_channel: 128
resblock_kernel_sizes:
- 3
- 7
- 11
resblock_dilation_sizes:
- - 1
  - 3
  - 5
- - 1
  - 3
  - 5
- - 1
  - 3
  - 5
activation: snakebeta
snake_logscale: true
num_mels: 80
fmax: null
dist_config:
  dist_backend: nccl
  dist_url: tcp://localhost:54341
  world_size: 1
"""


def _config(size: str) -> BigVGANConfig:
    return BigVGANConfig.from_args(spec(f"bigvgan_{size}")["constructor"]["h (OmegaConf, attribute access)"])


def _model(size: str) -> BigVGAN:
    info = spec(f"bigvgan_{size}")
    if info["weights_file"]:
        return BigVGAN.from_pretrained(fixtures_dir() / info["weights_file"], _config(size))
    return apply_keyed_init(BigVGAN(_config(size)), weight_g_gain=BIGVGAN_WEIGHT_G_GAIN).eval()


@pytest.fixture(scope="module")
def reduced() -> BigVGAN:
    return _model("reduced")


@pytest.mark.parametrize("size", ["reduced", "official"])
def test_presets_equal_the_fixture_constructor_configs(size):
    assert bigvgan_preset(size) == _config(size)


def test_official_preset_has_published_keys_shapes_and_parameter_count():
    keys = spec("bigvgan_official_keys")["keys"]
    with torch.device("meta"):
        model = BigVGAN(bigvgan_preset("official"))
    state = model.state_dict()
    assert set(state) == set(keys), f"missing {set(keys) - set(state)}, extra {set(state) - set(keys)}"
    for k, t in state.items():
        assert list(t.shape) == keys[k]["shape"], k
    count = sum(p.numel() for p in model.parameters())
    assert count == spec("bigvgan_official")["param_count"] == 112_231_250


def test_reduced_weights_load_strictly_with_declared_parameter_count(reduced):
    assert sum(p.numel() for p in reduced.parameters()) == spec("bigvgan_reduced")["param_count"]


def test_alias_free_filters_equal_the_official_buffers():
    io = io_tensors("bigvgan", "reduced")
    act = Activation1d(SnakeBeta(4))
    assert torch.equal(act.upsample.filter, io["const_upsample_filter"])
    assert torch.equal(act.downsample.lowpass.filter, io["const_downsample_filter"])
    assert torch.equal(kaiser_sinc_filter(0.25, 0.3, 12), io["const_upsample_filter"])


@pytest.mark.parametrize("size", ["reduced", "official"])
def test_generator_reproduces_official_stages_and_waveform(size):
    io = io_tensors("bigvgan", size)
    model = _model(size)
    per_stage = [f"im_{kind}{i}" for i in range(6) for kind in ("up", "stage")]
    names = ["im_conv_pre", *per_stage, "im_pre_tanh"]
    with torch.no_grad():
        stages = model.stages(io["in_mel"])  # one pass; forward() is tanh of the last stage
    assert len(stages) == len(names)
    for name, out in zip(names, stages, strict=True):
        if name in io:  # intermediates: reduced fixture only
            assert_close(out, io[name], name)
    wav = torch.tanh(stages[-1])
    assert wav.shape[-1] == io["in_mel"].shape[-1] * model.cfg.hop_length
    assert_close(wav, io["out_wav"], "waveform")


def test_removing_weight_norm_keeps_the_output_identical():
    mel = io_tensors("bigvgan", "reduced")["in_mel"][..., :8]  # (1, 80, 8): any input shows the identity
    model = _model("reduced")
    with torch.no_grad():
        before = model(mel)
        after = model.remove_weight_norm()(mel)
    assert torch.equal(before, after)
    assert torch.equal(before, torch.tanh(model.stages(mel)[-1]))
    keys = model.state_dict().keys()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys)
    assert "conv_pre.weight" in keys and "ups.0.0.weight" in keys


def test_vocoder_folder_loads_best_netg_and_args_yml(tmp_path, reduced):
    state = load_file(str(fixtures_dir() / "bigvgan_reduced.safetensors"))
    torch.save({"generator": state, "steps": 1}, tmp_path / "best_netG.pt")
    (tmp_path / "args.yml").write_text(ARGS_YML)
    expected = reduced.state_dict()
    for source in (tmp_path, tmp_path / "best_netG.pt"):
        loaded = BigVGAN.from_pretrained(source)
        assert loaded.cfg == _config("reduced")
        assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())


def test_missing_vocoder_files_are_all_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="best_netG.pt.*args.yml"):
        BigVGAN.from_pretrained(tmp_path)


def test_checkpoint_without_generator_entry_is_refused(tmp_path):
    torch.save({"discriminator": {}}, tmp_path / "best_netG.pt")
    with pytest.raises(CheckpointMismatchError, match="generator"):
        BigVGAN.from_pretrained(tmp_path / "best_netG.pt", bigvgan_preset("reduced"))
