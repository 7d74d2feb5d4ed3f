"""Keyed init regenerates the fixtures' weights from key names, at reduced and at official sizes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from frieren_rt.model import VectorField, preset
from frieren_rt.official import (
    BIGVGAN_WEIGHT_G_GAIN,
    AutoencoderKL1D,
    BigVGAN,
    CAVPVideoEncoder,
    apply_keyed_init,
    bigvgan_preset,
    cavp_preset,
    vae_preset,
)
from frieren_rt.official.keyed_init import checksum, keyed_normal, keyed_rule, keyed_state_dict, keyed_tensor
from tests.official.helpers import assert_checksum, fixtures_dir, spec

GAINS = {"vae": (), "bigvgan": BIGVGAN_WEIGHT_G_GAIN, "cavp": (), "dit": ()}


def _build(component: str, size: str) -> torch.nn.Module:
    if component == "vae":
        return AutoencoderKL1D(vae_preset(size))
    if component == "bigvgan":
        return BigVGAN(bigvgan_preset(size))
    if component == "cavp":
        return CAVPVideoEncoder(cavp_preset(size))
    raise ValueError(component)


@pytest.mark.parametrize("component", ["vae", "bigvgan", "cavp", "dit"])
def test_keyed_init_regenerates_the_reduced_fixture_weights(component):
    stored = load_file(str(fixtures_dir() / f"{component}_reduced.safetensors"))
    keyed = keyed_state_dict(stored, weight_g_gain=GAINS[component])
    for k, v in stored.items():
        # exp() may round differently by 1 ulp across CPU vector paths (running_var): relative 1e-6.
        assert torch.allclose(keyed[k], v, rtol=1e-6, atol=1e-7), k


@pytest.mark.parametrize("component", ["vae", "bigvgan", "cavp"])
def test_keyed_module_equals_the_reduced_fixture_weights_including_its_own_filters(component):
    stored = load_file(str(fixtures_dir() / f"{component}_reduced.safetensors"))
    state = apply_keyed_init(_build(component, "reduced"), weight_g_gain=GAINS[component]).state_dict()
    assert set(state) == set(stored)
    for k, v in state.items():
        assert torch.allclose(v, stored[k], rtol=1e-6, atol=1e-7), k


def _official_state(component: str) -> dict[str, torch.Tensor]:
    """Official-size state dict on the meta device (shapes only), keys spelled as stored."""
    with torch.device("meta"):
        if component == "dit":
            return VectorField(preset("official")).state_dict()
        return _build(component, "official").state_dict()


def _handful(keys: list[str], state: dict[str, torch.Tensor]) -> list[str]:
    """The first and last keys and the first key under each keyed-init rule."""
    by_rule: dict[str, str] = {}
    for k in keys:
        by_rule.setdefault(keyed_rule(k, state[k]), k)
    return sorted({keys[0], keys[-1], *by_rule.values()})


@pytest.mark.parametrize("component", ["vae", "bigvgan", "cavp", "dit"])
def test_keyed_init_matches_official_checksums_for_a_handful_of_keys(component):
    ref = spec(f"{component}_official_keys")["keys"]
    state = _official_state(component)
    chosen = _handful(list(ref), state)
    # Kept entries (filters, step counters) hold the module's own value: take it from a reduced CPU module,
    # whose keys and values for them are the same at every size.
    kept = [k for k in chosen if keyed_rule(k, state[k]) == "keep"]
    if kept:
        small = _build(component, "reduced").state_dict()
        state = {**state, **{k: small[k] for k in kept}}
    for k in chosen:
        assert_checksum(checksum(keyed_tensor(k, state[k], weight_g_gain=GAINS[component])), ref[k], k)


def test_rules_are_applied_in_order_with_prefix_gains():
    assert keyed_rule("a.bn.running_var", torch.zeros(3)) == "running_var"
    assert keyed_rule("a.act.beta", torch.zeros(3)) == "snake"
    assert keyed_rule("a.bn.num_batches_tracked", torch.zeros((), dtype=torch.long)) == "keep"
    assert keyed_rule("ups.0.0.weight_g", torch.zeros(4, 1, 1)) == "weight_g"
    assert keyed_rule("norm.weight", torch.zeros(4)) == "vector"
    assert keyed_rule("conv.weight", torch.zeros(4, 2, 3)) == "matrix"
    key = "resblocks.0.convs1.0.weight_g"
    got = keyed_tensor(key, torch.zeros(4, 1, 1), weight_g_gain=BIGVGAN_WEIGHT_G_GAIN)
    assert torch.equal(got, 0.5 * (1 + 0.1 * keyed_normal(key, (4, 1, 1))))
    w = keyed_tensor("conv.weight", torch.zeros(4, 2, 3))
    assert torch.equal(w, keyed_normal("conv.weight", (4, 2, 3)) / 6**0.5)


def test_kept_entries_on_the_meta_device_are_refused():
    with pytest.raises(ValueError, match="meta"):
        keyed_tensor("x.upsample.filter", torch.empty(1, 1, 12, device="meta"))
