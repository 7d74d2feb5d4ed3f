"""The 1-D KL VAE computes what Make-An-Audio 2's AutoencoderKL computes and loads its published files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from frieren_rt.official import (
    LATENT_SCALE,
    AutoencoderKL1D,
    CheckpointMismatchError,
    DiagonalGaussian,
    VAEConfig,
    apply_keyed_init,
    vae_preset,
)
from tests.official.helpers import assert_close, fixtures_dir, io_tensors, spec


def _config(size: str) -> VAEConfig:
    ctor = spec(f"vae_{size}")["constructor"]
    return VAEConfig.from_ddconfig(ctor["embed_dim"], ctor["ddconfig"])


def _model(size: str) -> AutoencoderKL1D:
    """Reduced: the fixture's weights file. Official: keyed init (its weights are not shipped)."""
    info = spec(f"vae_{size}")
    if info["weights_file"]:
        return AutoencoderKL1D.from_pretrained(fixtures_dir() / info["weights_file"], _config(size))
    return apply_keyed_init(AutoencoderKL1D(_config(size))).eval()


@pytest.fixture(scope="module")
def reduced() -> AutoencoderKL1D:
    return _model("reduced")


@pytest.mark.parametrize("size", ["reduced", "official"])
def test_presets_equal_the_fixture_constructor_configs(size):
    assert vae_preset(size) == _config(size)


def test_official_preset_has_published_keys_shapes_and_parameter_count():
    keys = spec("vae_official_keys")["keys"]
    with torch.device("meta"):
        model = AutoencoderKL1D(vae_preset("official"))
    state = model.state_dict()
    assert set(state) == set(keys), f"missing {set(keys) - set(state)}, extra {set(state) - set(keys)}"
    for k, t in state.items():
        assert list(t.shape) == keys[k]["shape"], k
    assert sum(p.numel() for p in model.parameters()) == spec("vae_official")["param_count"] == 212_958_212


def test_reduced_weights_load_strictly_with_declared_parameter_count(reduced):
    assert sum(p.numel() for p in reduced.parameters()) == spec("vae_reduced")["param_count"]


@pytest.mark.parametrize("size", ["reduced", "official"])
def test_encode_and_decode_reproduce_official_outputs(size):
    io = io_tensors("vae", size)
    model = _model(size)
    with torch.no_grad():
        assert_close(model.moments(io["in_mel"]), io["out_moments"], "moments")
        post = model.encode(io["in_mel"])
        assert_close(post.mode(), io["out_post_mean"], "posterior mean")
        assert_close(post.logvar, io["out_post_logvar"], "posterior logvar")
        assert_close(post.std, io["out_post_std"], "posterior std")
        assert_close(model.decode(io["in_z"]), io["out_decode_z"], "decode(z)")
        assert_close(model.decode(post.mode()), io["out_recon_from_mean"], "decode(mean)")


def test_posterior_clamps_logvar_and_samples_from_the_given_generator():
    logvar = torch.tensor([-50.0, 30.0, 0.0, 1.0]).expand(1, 20, 4)
    moments = torch.cat([torch.zeros(1, 20, 4), logvar], dim=1)  # (1, 40, 4)
    post = DiagonalGaussian(moments)
    assert post.logvar[0, 0].tolist() == [-30.0, 20.0, 0.0, 1.0]
    a = post.sample(torch.Generator().manual_seed(3))
    b = post.sample(torch.Generator().manual_seed(3))
    eps = torch.randn(1, 20, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.allclose(a, post.mean + post.std * eps)


def test_latent_scale_is_the_training_constant():
    assert LATENT_SCALE == spec("vae_reduced")["scale_factor"] == 0.18215


def test_lightning_checkpoint_loads_first_stage_and_ignores_diffusion_buffers(tmp_path, reduced):
    bare = load_file(str(fixtures_dir() / "vae_reduced.safetensors"))
    state = {f"first_stage_model.{k}": v for k, v in bare.items()}
    state |= {"betas": torch.zeros(1000), "alphas_cumprod": torch.ones(1000),
              "model.diffusion_model.proj_in.weight": torch.zeros(3),
              "cond_stage_model.embedder.0.bias": torch.zeros(3)}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "frieren.ckpt")
    loaded = AutoencoderKL1D.from_pretrained(tmp_path / "frieren.ckpt", vae_preset("reduced"))
    got = loaded.state_dict()
    for k, v in reduced.state_dict().items():
        assert torch.equal(got[k], v), k


def test_bare_vae_checkpoint_ignores_training_loss_entries(tmp_path):
    bare = load_file(str(fixtures_dir() / "vae_reduced.safetensors"))
    torch.save({"state_dict": bare | {"loss.logvar": torch.zeros(())}}, tmp_path / "vae.ckpt")
    AutoencoderKL1D.from_pretrained(tmp_path / "vae.ckpt", vae_preset("reduced"))


def test_mismatched_checkpoint_names_every_missing_and_misshapen_key(tmp_path):
    bare = load_file(str(fixtures_dir() / "vae_reduced.safetensors"))
    del bare["decoder.conv_out.bias"]
    bare["quant_conv.weight"] = torch.zeros(40, 40, 3)
    torch.save(bare, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError) as err:
        AutoencoderKL1D.from_pretrained(tmp_path / "bad.pt", vae_preset("reduced"))
    msg = str(err.value)
    assert "missing    decoder.conv_out.bias: expected shape (80,)" in msg
    assert "quant_conv.weight: expected (40, 40, 1), found (40, 40, 3)" in msg


def test_per_level_attention_is_refused_rather_than_guessed():
    with pytest.raises(ValueError, match="attn_layers"):
        VAEConfig(attn_layers=(2,))
