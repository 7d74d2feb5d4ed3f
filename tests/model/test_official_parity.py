"""The official preset is the published ChannelConcatDiT: sizes, key layout, and outputs of the official code."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from frieren_rt.model import VectorField, load_vector_field_state, preset
from tests.fixtures_path import official_fixtures


def _tol(ref: torch.Tensor) -> float:
    # Fixture README: max |a - b| <= 1e-4 * max(1, max |ref|) in fp32 on CPU.
    return 1e-4 * max(1.0, ref.abs().max().item())


def _assert_close(out: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    err = (out - ref).abs().max().item()
    assert err <= _tol(ref), f"{name}: max error {err:.3g} > {_tol(ref):.3g}"


@pytest.fixture(scope="module")
def reduced():
    root = official_fixtures()
    spec = json.loads((root / "dit_reduced.json").read_text())
    unet = spec["constructor"]["unet_config.params"]
    cfg = preset("official", cond_dim=unet["context_dim"], hidden=unet["hidden_size"], heads=unet["num_heads"],
                 depth=unet["depth"], max_len=unet["max_len"], latent_channels=unet["in_channels"])
    model = VectorField.from_pretrained(root / "dit_reduced.safetensors", cfg).eval()
    return model, load_file(str(root / "dit_reduced_io.safetensors")), spec


def test_official_preset_has_published_parameter_count():
    with torch.device("meta"):
        model = VectorField(preset("official"))
    assert sum(p.numel() for p in model.parameters()) == 159_276_692
    assert sum(p.numel() for p in model.cond_stage_model.parameters()) == 393_984


def test_official_preset_key_layout_matches_published_checkpoint():
    keys = json.loads((official_fixtures() / "dit_official_keys.json").read_text())["keys"]
    with torch.device("meta"):
        state = VectorField(preset("official")).state_dict()
    expected = {k: list(v["shape"] if isinstance(v, dict) else v) for k, v in keys.items()}
    assert set(state) == set(expected), f"missing {set(expected) - set(state)}, extra {set(state) - set(expected)}"
    for k, t in state.items():
        assert list(t.shape) == expected[k], f"{k}: {list(t.shape)} != {expected[k]}"


def test_reduced_weights_load_strictly_with_declared_parameter_count(reduced):
    model, _, spec = reduced
    assert sum(p.numel() for p in model.parameters()) == spec["param_count"]["total"]


def test_reduced_network_reproduces_official_outputs(reduced):
    model, io, _ = reduced
    with torch.no_grad():
        ctx = model.cond_stage_model(io["in_cond_raw"])
        _assert_close(ctx, io["out_context"], "context")
        null = model.cond_stage_model(model.null_condition(io["in_cond_raw"][:1]))
        _assert_close(null, io["out_context_null"], "null context")
        index = model.cond_index(io["in_x"].shape[-1], io["in_cond_raw"].shape[1])
        _assert_close(model.net(io["in_x"], io["in_t"], ctx, index), io["out_v_cond"], "v_cond")
        _assert_close(model.net(io["in_x"], io["in_t"], null.expand(2, -1, -1), index), io["out_v_null"], "v_null")


def test_flow_time_interface_truncates_like_official(reduced):
    """VectorField(x, t in [0, 1], raw cond) feeds long(t * 1000): t = in_t / 1000 reproduces v_cond."""
    model, io, _ = reduced
    t = io["in_t"].float() / 1000 + 1e-4  # truncation maps these back to the same integers
    assert torch.equal(model.timestep_input(t), io["in_t"])
    with torch.no_grad():
        _assert_close(model(io["in_x"], t, io["in_cond_raw"]), io["out_v_cond"], "v_cond via VectorField")
        short = model(io["in_x_short"], io["in_t_short"].float() / 1000 + 1e-4, io["in_cond_raw_short"])
    _assert_close(short, io["out_v_cond_short"], "v_cond_short (length-generic)")


def test_cfg_doubled_batch_matches_official(reduced):
    model, io, _ = reduced
    x, cond = io["in_x"], io["in_cond_raw"]
    t = io["in_t"].float() / 1000 + 1e-4
    with torch.no_grad():
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([model.null_condition(cond), cond]))
    v_u, v_c = both.chunk(2)
    _assert_close(v_u + 4.5 * (v_c - v_u), io["out_v_cfg"], "v_cfg")


def test_intermediate_activations_match(reduced):
    """Hook outputs localise any mismatch: timestep and condition embeddings and each block."""
    model, io, _ = reduced
    net, seen = model.net, {}
    hooks = [getattr(net, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
             for name in ("t_embedder", "c_embedder", "x_proj", "c_proj")]
    hooks += [b.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(f"block{k}", o))
              for k, b in enumerate(net.blocks)]
    with torch.no_grad():
        model(io["in_x"], io["in_t"].float() / 1000 + 1e-4, io["in_cond_raw"])
    for h in hooks:
        h.remove()
    for name, ref in [("t_embedder", "out_im_t_emb"), ("c_embedder", "out_im_c_emb"), ("x_proj", "out_im_x_proj"),
                      ("c_proj", "out_im_c_proj"), ("block0", "out_im_block0"), ("block1", "out_im_block1")]:
        _assert_close(seen[name], io[ref], name)


def test_lightning_checkpoint_layout_loads_and_drops_foreign_keys(reduced, tmp_path):
    """A .ckpt with state_dict + VAE + diffusion buffers loads the vector field strictly."""
    model, _, _ = reduced
    state = dict(model.state_dict())
    state["first_stage_model.decoder.conv_in.weight"] = torch.zeros(3)
    state["betas"] = torch.zeros(1000)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "model.ckpt")
    loaded = load_vector_field_state(tmp_path / "model.ckpt")
    assert set(loaded) == set(model.state_dict())


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_vector_field_state(tmp_path / "nope.safetensors")
