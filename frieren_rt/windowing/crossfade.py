"""Seam crossfades (pure functions; inputs are never modified).

Equal power (cos/sin) keeps the power of two *uncorrelated* signals constant through the seam, the law Magenta
RT uses for its 40 ms chunk seams (../shared/reference/streaming.md). Two *identical* signals, however, sum to
``cos + sin`` = +3 dB at the midpoint, and the seams here are highly correlated by design: the new side is
decoded from the same emitted latents with real left context. Equal gain (cos^2/sin^2) is right for that case.
``adaptive`` measures the correlation ``rho`` of the two overlapping segments and uses the gains
``(cos, sin) / sqrt(1 + 2 rho sin cos)``, which satisfy ``g_out^2 + g_in^2 + 2 rho g_out g_in = 1``: exactly
equal power at rho = 0 and gains summing to 1 (unchanged signal) at rho = 1.
"""

from __future__ import annotations

import math

import torch

from frieren_rt.windowing.geometry import CrossfadeLaw

__all__ = ["fade_curves", "correlation", "crossfade"]


def fade_curves(n: int, law: CrossfadeLaw = "equal_power", rho: torch.Tensor | float = 0.0) -> tuple[
    torch.Tensor, torch.Tensor
]:
    """(fade_out, fade_in) gains, each (n,) or (B, n) for a (B,) ``rho``, sampled at sample centres.

    The angle runs over (0, pi/2) at ``(i + 0.5) / n`` so neither end repeats a gain of exactly 0 or 1.
    """
    theta = (torch.arange(n, dtype=torch.float64) + 0.5) / n * (math.pi / 2)
    out, inn = torch.cos(theta), torch.sin(theta)
    if law == "equal_gain":
        return out.square().float(), inn.square().float()
    if law == "equal_power":
        return out.float(), inn.float()
    if law != "adaptive":
        raise ValueError(f"unknown crossfade law {law!r}")
    r = torch.as_tensor(rho, dtype=torch.float64).clamp(0.0, 1.0)[..., None]  # (...,1)
    scale = torch.rsqrt(1.0 + 2.0 * r * out * inn)
    return (out * scale).float(), (inn * scale).float()


def correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Normalised zero-lag correlation over the last dim: (..., n), (..., n) -> (...)."""
    num = (a * b).sum(-1)
    den = torch.sqrt(a.square().sum(-1) * b.square().sum(-1))
    return torch.where(den > eps, num / den.clamp_min(eps), torch.zeros_like(num))


def crossfade(tail: torch.Tensor, head: torch.Tensor, law: CrossfadeLaw = "equal_power") -> torch.Tensor:
    """Fade ``tail`` out and ``head`` in over their common length: (..., n), (..., n) -> new (..., n)."""
    if tail.shape != head.shape:
        raise ValueError(f"tail {tuple(tail.shape)} and head {tuple(head.shape)} must have the same shape")
    rho = correlation(tail.double(), head.double()) if law == "adaptive" else 0.0
    g_out, g_in = fade_curves(tail.shape[-1], law, rho)
    return tail * g_out.to(tail) + head * g_in.to(head)
