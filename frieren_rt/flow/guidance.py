"""Classifier-free guidance as a velocity wrapper (STYLE.md habit 2).

Frieren guides with v = v_u + s (v_c - v_u), s = 4.5, running both branches as ONE doubled batch with the
unconditional half first; the null condition is zero CAVP features passed through the condition Linear
(../shared/reference/frieren.md, "Training and sampling"; fixtures/frieren_official/README.md, "CFG").
The network's signature is ``net(x, t, cond, **net_kwargs)`` (VectorField's); these functions return the
``v(x, t)`` callables the samplers and losses take.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from frieren_rt.flow.samplers import Velocity, batch_times

__all__ = ["FRIEREN_CFG_SCALE", "cfg_velocity", "combine_guidance", "conditional_velocity", "projected_guidance",
           "prefix_guidance_scale", "rescaled_guidance", "tail_guidance_scale"]

FRIEREN_CFG_SCALE = 4.5

Net = Callable[..., torch.Tensor]


def combine_guidance(v_u: torch.Tensor, v_c: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """v_u + s (v_c - v_u) for same-shaped (B, ...) branches. s = 1 is the conditional field, s = 0 the
    unconditional one; a tensor s broadcasts (e.g. (B, 1, T): one scale per latent, tail_guidance_scale)."""
    return v_u + scale * (v_c - v_u)


def projected_guidance(v_u: torch.Tensor, v_c: torch.Tensor, scale: float | torch.Tensor, x: torch.Tensor,
                       t: torch.Tensor, parallel: float) -> torch.Tensor:
    """Guidance whose update keeps only ``parallel`` of its component along the conditional prediction.

    Beyond Frieren, after adaptive projected guidance (Sadat et al. 2024, "Eliminating oversaturation and
    artifacts of high guidance scales in diffusion models"): the update s (v_c - v_u) is split, per sample,
    into the part parallel to the conditional endpoint prediction x1_c = x + (1 - t) v_c and the rest; the
    parallel part scales the prediction up or down as a whole (their oversaturation; here, perhaps, the level
    of a sound's tail, benchmarks/tail_energy.py) and is kept at ``parallel`` (1: plain CFG, 0: none of it).
    The projection is taken in velocity units: (x1_c - x1_u) = (1 - t)(v_c - v_u), so (1 - t) cancels.
    v_u, v_c, x (B, ...); t (B,) -> (B, ...).
    """
    delta = v_c - v_u
    x1_c = x + (1.0 - t).view(-1, *([1] * (x.dim() - 1))) * v_c
    dims = tuple(range(1, x.dim()))
    coef = (delta * x1_c).sum(dims, keepdim=True) / x1_c.pow(2).sum(dims, keepdim=True).clamp(min=1e-12)
    along = coef * x1_c
    return v_c + (scale - 1.0) * (delta - along + parallel * along)


def rescaled_guidance(v_g: torch.Tensor, v_c: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                      rescale: float) -> torch.Tensor:
    """Guided velocity whose endpoint prediction is pulled back to the conditional prediction's spread.

    Beyond Frieren, after rescaled classifier-free guidance (Lin et al. 2024, "Common diffusion noise schedules
    and sample steps are flawed", section 3.4): a large scale inflates the guided prediction's standard
    deviation; they rescale it to the conditional one's and blend, x = phi x_rescaled + (1 - phi) x_cfg. Here
    the predictions are the rectified flow's endpoints x1 = x + (1 - t) v (their x0), the standard deviation
    is per sample over all of its latents (theirs), and the result goes back to a velocity, so
    v = v_g + phi (r - 1) x1_g / (1 - t) with r = std(x1_c) / std(x1_g). ``rescale`` is phi (0: plain).
    v_g (the combined guidance), v_c, x (B, ...); t (B,) -> (B, ...).
    """
    shape = (-1, *([1] * (x.dim() - 1)))
    left = (1.0 - t).view(shape)
    x1_g, x1_c = x + left * v_g, x + left * v_c
    dims = tuple(range(1, x.dim()))
    ratio = x1_c.std(dims, keepdim=True) / x1_g.std(dims, keepdim=True).clamp(min=1e-12)
    return v_g + rescale * (ratio - 1.0) * x1_g / left.clamp(min=1e-3)


def tail_guidance_scale(tail: torch.Tensor, scale: float, tail_scale: float) -> torch.Tensor:
    """Per-latent guidance scale: ``scale`` where no sound is under way, ``tail_scale`` inside a sound's tail.

    tail (B, 1, T) in [0, 1] (frieren_rt.vision.events.tail_presence) -> (B, 1, T). Beyond Frieren: with one
    scale of 4.5 everywhere the guided field ends sounds early. In a tail the condition says "no onset now"
    and the conditional branch is quieter than the unconditional one (which reads only the emitted prefix), so
    guidance amplifies the fade (benchmarks/tail_energy.py); onsets and silence keep the full scale that keeps
    them sharp and silent. Measured on the world's validation clips it lands between the uniform scales on
    every metric, so it is off by default (MODEL_CARD.md, "What was tried").
    """
    return scale + (tail_scale - scale) * tail


def prefix_guidance_scale(mask: torch.Tensor, prefix_sound: torch.Tensor, scale: float | torch.Tensor,
                          eased: float) -> torch.Tensor:
    """Per-latent guidance scale: ``eased`` on the free latents of windows whose known prefix ends in sound.

    mask (B, 1, T), 1 on known latents; prefix_sound (B,) 1 where the last known latent is not silence;
    scale a float or (B, 1, T) -> (B, 1, T). Beyond Frieren: unlike tail_guidance_scale, which asks the
    detector whether a sound is under way, this reads the audio already emitted, which is what a tail
    continues (benchmarks/tail_energy.py: the unconditional branch carries a started sound on, the
    conditional one and guidance take its level away). Windows that start from silence keep the full scale
    that keeps silence silent.
    """
    free = (1.0 - mask) * prefix_sound.view(-1, 1, 1).to(mask.dtype)
    return scale + (eased - scale) * free


def conditional_velocity(net: Net, cond: torch.Tensor, **net_kwargs: object) -> Velocity:
    """One network pass per evaluation: v(x, t) = net(x, t, cond, **net_kwargs). cond: (B, ...)."""
    return lambda x, t: net(x, t, cond, **net_kwargs)


def _double(value: object, batch: int) -> object:
    """Per-sample tensors (>= 2-D with a leading batch dim, e.g. known (B, C, T), mask (B, 1, T),
    cond_index (B, T)) are repeated for the doubled batch; anything else (cond_index (T,)) is shared."""
    if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == batch:
        return torch.cat([value, value])
    return value


def cfg_velocity(
    net: Net,
    cond: torch.Tensor,
    null_cond: torch.Tensor | None = None,
    scale: float | torch.Tensor = FRIEREN_CFG_SCALE,
    parallel: float = 1.0,
    rescale: float = 0.0,
    **net_kwargs: object,
) -> Velocity:
    """Guided velocity v(x, t) = v_u + s (v_c - v_u), both branches in one call on a (2B, ...) batch.

    cond: (B, ...) condition; null_cond: broadcastable to cond's shape (e.g. (1, F, D)); None takes
    ``net.null_condition(cond)`` (VectorField: zero raw features). Batch order is [unconditional;
    conditional] as in the official Wrapper_CFG (parity: tests/flow/test_official_sampler.py).
    Tensor net_kwargs with a leading batch dim are doubled alongside x once, here (see ``_double``).
    parallel < 1: projected_guidance; rescale > 0: rescaled_guidance on top.
    """
    if null_cond is None:
        null_cond = net.null_condition(cond)  # type: ignore[attr-defined]
    both_cond = torch.cat([null_cond.expand_as(cond), cond])  # (2B, ...)
    kwargs = {k: _double(v, cond.shape[0]) for k, v in net_kwargs.items()}

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if both_cond.shape[0] != 2 * b:
            raise ValueError(f"cond batch {both_cond.shape[0] // 2} != x batch {b}")
        t = batch_times(t, x)  # (B,)
        v_u, v_c = net(torch.cat([x, x]), torch.cat([t, t]), both_cond, **kwargs).chunk(2)  # (B, ...) each
        if parallel == 1.0:
            v = combine_guidance(v_u, v_c, scale)
        else:
            v = projected_guidance(v_u, v_c, scale, x, t, parallel)
        return v if rescale == 0.0 else rescaled_guidance(v, v_c, x, t, rescale)

    return velocity
