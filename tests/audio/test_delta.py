"""frieren_rt/audio/delta.py: a fine-tune stored as its int8 difference from registry weights."""

import pytest
import torch

from frieren_rt.audio.delta import SCALE_SUFFIX, apply_weight_delta, weight_delta


def _weights(gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {"conv.weight": torch.randn(16, 8, 7, generator=gen) * 0.1, "conv.bias": torch.randn(16, generator=gen)}


def test_the_tuned_weights_come_back_to_a_small_fraction_of_what_tuning_changed():
    gen = torch.Generator().manual_seed(0)
    base = _weights(gen)
    change = {k: 0.05 * v.abs().mean() * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    tuned = {k: base[k] + change[k] for k in base}
    delta = weight_delta(tuned, base)
    assert delta["conv.weight"].dtype == torch.int8 and delta["conv.weight" + SCALE_SUFFIX].shape == (16,)
    assert delta["conv.bias"].dtype == torch.float16
    back = apply_weight_delta(base, delta)
    for k in base:
        err = (back[k] - tuned[k]).abs().max()
        assert err <= change[k].abs().max() / 200, k  # int8: half a step of 1/127 of the row's range


def test_an_unchanged_tensor_comes_back_exactly():
    base = _weights(torch.Generator().manual_seed(1))
    back = apply_weight_delta(base, weight_delta(base, base))
    assert all(torch.equal(back[k], base[k]) for k in base)


def test_a_delta_made_against_other_weights_is_refused():
    gen = torch.Generator().manual_seed(2)
    base = _weights(gen)
    delta = weight_delta(base, base)
    with pytest.raises(ValueError, match="does not fit"):
        apply_weight_delta({"other.weight": base["conv.weight"]}, delta)
    with pytest.raises(ValueError, match="shape"):
        apply_weight_delta({"conv.weight": torch.zeros(16, 8, 5), "conv.bias": base["conv.bias"]}, delta)
