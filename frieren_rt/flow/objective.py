"""Frieren's rectified-flow training objective as small pure functions.

Facts from ../shared/reference/frieren.md, "Training and sampling": t = 0 noise, t = 1 data;
x_t = t x1 + (1 - t) x0 with target x1 - x0 and no sigma_min; t drawn as integer Uniform{0..999} / 1000,
clamped to [1e-5, 1 - 1e-5]; per-sample MSE weighted by the logit-normal(0, 1) density of t (a weight on the
uniform draw, not a sampling distribution); the condition dropped to the null with probability 0.2 for CFG.
Every random draw takes an explicit torch.Generator and happens on that generator's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from frieren_rt.flow.samplers import Velocity, draw_noise

__all__ = [
    "CFG_DROPOUT",
    "T_CLAMP",
    "conditional_flow_loss",
    "draw_t",
    "drop_condition",
    "interpolate",
    "logit_normal_density",
    "per_sample_mse",
    "rectified_flow_loss",
]

T_CLAMP = 1e-5
CFG_DROPOUT = 0.2


def draw_t(
    batch: int, *, generator: torch.Generator, device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training times k / 1000 with k ~ Uniform{0..999}, clamped to [1e-5, 1 - 1e-5]. (B,) float32."""
    k = torch.randint(0, 1000, (batch,), generator=generator, device=generator.device)
    t = (k.float() / 1000).clamp(T_CLAMP, 1 - T_CLAMP)
    return t.to(device) if device is not None else t


def logit_normal_density(t: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Density of logit-normal(mean, std) at t in (0, 1), elementwise (peaks near 0.5, about 1.6 for (0, 1)).

    p(t) = exp(-(logit t - mean)^2 / (2 std^2)) / (std sqrt(2 pi) t (1 - t)). Same shape as t.
    """
    logit = torch.log(t) - torch.log1p(-t)
    return torch.exp(-0.5 * ((logit - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi) * t * (1 - t))


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The straight path x_t = t x1 + (1 - t) x0. x0, x1: (B, ...); t: (B,) -> (B, ...)."""
    t = t.reshape(-1, *([1] * (x1.dim() - 1))).to(x1.dtype)  # (B, 1, ..., 1)
    return t * x1 + (1 - t) * x0


def drop_condition(
    cond: torch.Tensor, null_cond: torch.Tensor, p: float, *, generator: torch.Generator,
) -> torch.Tensor:
    """Replace each sample's condition by the null with probability p (CFG dropout). A new tensor.

    cond: (B, ...); null_cond: broadcastable to cond (e.g. (1, F, D) or a scalar label) -> (B, ...).
    """
    b = cond.shape[0]
    drop = torch.rand(b, generator=generator, device=generator.device).to(cond.device) < p  # (B,)
    drop = drop.reshape(b, *([1] * (cond.dim() - 1)))
    return torch.where(drop, null_cond.to(cond.device, cond.dtype).expand_as(cond), cond)


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all but the batch dim. (B, ...) -> (B,)"""
    return (pred - target).pow(2).flatten(1).mean(1)


def rectified_flow_loss(
    velocity: Velocity,
    x1: torch.Tensor,
    *,
    generator: torch.Generator,
    x0: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    weighted: bool = True,
) -> torch.Tensor:
    """Scalar loss: mean_b w(t_b) |v(x_t, t) - (x1 - x0)|^2 / numel, w = logit-normal(0, 1) density.

    x1: (B, ...) data (or stored samples for reflow); x0: (B, ...) noise, drawn from ``generator`` when None;
    t: (B,), drawn with ``draw_t`` when None. ``weighted=False`` gives the plain mean.
    """
    if x0 is None:
        x0 = draw_noise(tuple(x1.shape), generator=generator, device=x1.device, dtype=x1.dtype)
    if t is None:
        t = draw_t(x1.shape[0], generator=generator, device=x1.device)
    err = per_sample_mse(velocity(interpolate(x0, x1, t), t), x1 - x0)  # (B,)
    return (logit_normal_density(t) * err).mean() if weighted else err.mean()


def conditional_flow_loss(
    net: Callable[..., torch.Tensor],
    x1: torch.Tensor,
    cond: torch.Tensor,
    null_cond: torch.Tensor,
    *,
    generator: torch.Generator,
    p_uncond: float = CFG_DROPOUT,
    **net_kwargs: object,
) -> torch.Tensor:
    """The base-model training step: CFG dropout on cond, then ``rectified_flow_loss`` on
    v(x, t) = net(x, t, cond_dropped, **net_kwargs). x1: (B, ...); cond: (B, ...); null_cond broadcastable."""
    dropped = drop_condition(cond, null_cond, p_uncond, generator=generator)
    return rectified_flow_loss(lambda x, t: net(x, t, dropped, **net_kwargs), x1, generator=generator)
