"""Reflow: straighten the guided flow by retraining it on its own (noise, sample) couplings.

Frieren (../shared/reference/frieren.md, "Training and sampling"): one 25-step Euler sample with CFG 4.5 per
training clip from the base model, kept with its noise; the reflow model then trains the GUIDED velocity
v_u + 4.5 (v_c - v_u) (both branches in one doubled batch) toward (sample - noise) on the straight line
between them, with no CFG dropout. Straight couplings make the one-step Euler x0 + v(x0, 0) land near the
teacher's many-step sample (Liu et al. 2023, "Flow Straight and Fast").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from frieren_rt.flow.objective import rectified_flow_loss
from frieren_rt.flow.samplers import Velocity, draw_noise, euler

__all__ = ["ReflowPairs", "reflow_loss", "reflow_pairs"]


@dataclass(frozen=True)
class ReflowPairs:
    """Couplings for reflow / distillation. noise: (N, ...) x0; sample: (N, ...) the teacher's x1 from that
    noise; cond: (N, ...) the condition each was generated with."""

    noise: torch.Tensor
    sample: torch.Tensor
    cond: torch.Tensor

    def __len__(self) -> int:
        return self.noise.shape[0]

    def batch(self, index: torch.Tensor) -> ReflowPairs:
        return ReflowPairs(self.noise[index], self.sample[index], self.cond[index])


@torch.no_grad()
def reflow_pairs(
    make_velocity: Callable[[torch.Tensor], Velocity],
    cond: torch.Tensor,
    sample_shape: tuple[int, ...],
    *,
    generator: torch.Generator,
    steps: int = 25,
    batch_size: int = 256,
) -> ReflowPairs:
    """Draw noise for every condition and integrate the teacher with ``steps`` Euler steps, in batches.

    make_velocity: cond batch (b, ...) -> the teacher's (guided) velocity for it, e.g.
    ``lambda c: cfg_velocity(net, c, null, 4.5)``. cond: (N, ...); sample_shape: per-sample latent shape
    (e.g. (C, T)). Noise comes from ``generator`` in batch order, so a seed fixes the whole set.
    """
    noise, samples = [], []
    for c in cond.split(batch_size):
        x0 = draw_noise((c.shape[0], *sample_shape), generator=generator, device=cond.device)
        noise.append(x0)
        samples.append(euler(make_velocity(c), x0, steps))
    return ReflowPairs(torch.cat(noise), torch.cat(samples), cond)


def reflow_loss(
    velocity: Velocity, pairs: ReflowPairs, *, generator: torch.Generator, weighted: bool = True,
) -> torch.Tensor:
    """Train ``velocity`` (the student's guided velocity for ``pairs.cond``) toward sample - noise on the
    straight path between each stored pair. Same t draw and logit-normal weight as the base objective;
    no CFG dropout (the guided velocity already contains both branches). Scalar."""
    return rectified_flow_loss(velocity, pairs.sample, x0=pairs.noise, generator=generator, weighted=weighted)
