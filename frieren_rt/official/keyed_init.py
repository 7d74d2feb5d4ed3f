"""Keyed init: deterministic weights computed from each state-dict key and shape alone.

The parity fixtures (../shared/fixtures/frieren_official/README.md, "Keyed init") were made with these
weights, so a module built here at any size can be given exactly the weights the official code ran with,
without shipping them. u is a float32 standard normal of the entry's shape drawn on the CPU by a fresh
``torch.Generator`` seeded with ``zlib.crc32(key)``; the first matching rule gives the value:

1. ``*.filter``: the module's own deterministic buffer (BigVGAN's Kaiser-sinc filters);
2. integer tensors (``num_batches_tracked``): kept (0);
3. ``running_mean``: 0.1 u;  4. ``running_var``: exp(0.2 u);  5. ``*.alpha`` / ``*.beta``: 0.1 u;
6. ``weight_g``: gain (1 + 0.1 u), gain from the first matching key prefix (BigVGAN only), else 1;
7. ``bias``: 0.05 u;  8. any other 1-D tensor: 1 + 0.1 u;  9. else: u / sqrt(prod(shape[1:])).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

__all__ = ["BIGVGAN_WEIGHT_G_GAIN", "keyed_normal", "keyed_rule", "keyed_tensor", "keyed_state_dict",
           "apply_keyed_init", "checksum"]

# Gains for weight-norm magnitudes in BigVGAN (fixture bigvgan_*.json "weight_g_gain"): they keep the random
# network's activations O(1) so that its final tanh is not saturated.
BIGVGAN_WEIGHT_G_GAIN: tuple[tuple[str, float], ...] = (
    ("resblocks.", 0.5), ("conv_pre.", 0.3), ("conv_post.", 0.5), ("ups.", 1.0),
)


def keyed_normal(key: str, shape: Sequence[int]) -> torch.Tensor:
    """u: float32 standard normal of ``shape`` from a CPU generator seeded with crc32 of the key's UTF-8."""
    gen = torch.Generator(device="cpu").manual_seed(zlib.crc32(key.encode("utf-8")))
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32)


Gains = Iterable[tuple[str, float]]


def _gain(key: str, weight_g_gain: Gains) -> float:
    return next((g for prefix, g in weight_g_gain if key.startswith(prefix)), 1.0)


_SUFFIX_RULES = (("running_mean", "running_mean"), ("running_var", "running_var"), (".alpha", "snake"),
                 (".beta", "snake"), ("weight_g", "weight_g"), ("bias", "bias"))


def keyed_rule(key: str, current: torch.Tensor) -> str:
    """Which rule (README "Keyed init") gives the entry its value: the first that matches."""
    if key.endswith(".filter") or not current.is_floating_point():
        return "keep"
    for suffix, rule in _SUFFIX_RULES:
        if key.endswith(suffix):
            return rule
    return "vector" if current.dim() == 1 else "matrix"


def keyed_tensor(key: str, current: torch.Tensor, *, weight_g_gain: Gains = ()) -> torch.Tensor:
    """The keyed value of one entry (on the CPU, float32), given the module's current tensor for that key.

    ``current`` supplies the shape, and the value itself where the rules keep it (filters, integer tensors);
    it may live on the meta device for every other key.
    """
    rule = keyed_rule(key, current)
    if rule == "keep":
        if current.is_meta:
            raise ValueError(f"{key}: keyed init keeps the module's own value; a meta tensor holds none")
        return current.detach().cpu().clone()
    shape = tuple(current.shape)
    u = keyed_normal(key, shape)
    if rule == "running_var":
        # exp may round 1 ulp differently on other CPUs' vector paths: compare to the fixtures at rtol 1e-6.
        return torch.exp(0.2 * u)
    if rule in ("running_mean", "snake"):
        return 0.1 * u
    if rule == "weight_g":
        return _gain(key, weight_g_gain) * (1 + 0.1 * u)
    if rule == "bias":
        return 0.05 * u
    if rule == "vector":
        return 1 + 0.1 * u
    return u / math.sqrt(math.prod(shape[1:]))


def keyed_state_dict(
    state: Mapping[str, torch.Tensor],
    *,
    weight_g_gain: Gains = (),
    keys: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Keyed values for ``keys`` (default: all) of a state dict whose keys are spelled as stored."""
    gains = tuple(weight_g_gain)
    chosen = state.keys() if keys is None else keys
    return {k: keyed_tensor(k, state[k], weight_g_gain=gains) for k in chosen}


def apply_keyed_init(
    module: nn.Module, *, prefix: str = "", weight_g_gain: Gains = ()
) -> nn.Module:
    """Give ``module`` its keyed weights in place and return it.

    prefix: prepended to the module's own keys to spell them as stored (e.g. ``first_stage_model.`` if the
    fixture was keyed inside the Lightning checkpoint); empty for modules that already use stored names.
    """
    own = module.state_dict()
    keyed = keyed_state_dict({prefix + k: v for k, v in own.items()}, weight_g_gain=weight_g_gain)
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(keyed[prefix + k])
    return module


def checksum(t: torch.Tensor, first: int = 4) -> dict[str, object]:
    """The summary the fixture keys files store: float64 sum and absolute sum, and the first values."""
    flat = t.detach().double().reshape(-1)
    return {"sum": flat.sum().item(), "abs_sum": flat.abs().sum().item(), "first": flat[:first].tolist()}
