"""Distillation losses: Frieren's one-step distillation, and guidance distillation (beyond Frieren).

One-step (../shared/reference/frieren.md, "Training and sampling"): from the reflow model, t fixed at 0,
x1_hat = x0 + v_guided(x0, 0), plain MSE to the stored many-step sample. The result is sampled by
``euler(v, x0, steps=1)``, the same code path as every other schedule. It still costs two network passes per
generation, because v_guided runs both CFG branches.

Guidance distillation (Meng et al. 2023, "On Distillation of Guided Diffusion Models") folds the CFG
combination into ONE conditional pass: a student v_s(x, t, c) regresses the teacher's guided velocity
(stop-gradient) at the states guided sampling visits, so each sampling step costs one evaluation, not two.
It composes with reflow and one-step distillation (distil the guided one-step model into a single pass).
"""

from __future__ import annotations

import torch

from frieren_rt.flow.samplers import EulerStep, Velocity, euler

__all__ = ["guidance_distillation_loss", "guided_states", "one_step_distillation_loss"]


def one_step_distillation_loss(velocity: Velocity, noise: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """MSE(x0 + v(x0, 0), sample) with t fixed at 0. noise, sample: (B, ...) stored pairs -> scalar."""
    t = noise.new_zeros(noise.shape[0])  # (B,)
    return (noise + velocity(noise, t) - sample).pow(2).mean()


def guidance_distillation_loss(
    student: Velocity, teacher: Velocity, x: torch.Tensor, t: torch.Tensor,
) -> torch.Tensor:
    """MSE(v_s(x, t), stopgrad v_teacher(x, t)). student: single-pass conditional velocity (e.g.
    ``conditional_velocity(student_net, cond)``); teacher: guided velocity (e.g. ``cfg_velocity(...)``).
    x: (B, ...) states; t: (B,) their times -> scalar."""
    with torch.no_grad():
        target = teacher(x, t)
    return (student(x, t) - target).pow(2).mean()


@torch.no_grad()
def guided_states(teacher: Velocity, x0: torch.Tensor, steps: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    """The states where guided Euler sampling evaluates the teacher, to train a guidance-distilled student on
    the distribution it will see at inference. x0: (B, ...) -> x (steps * B, ...), t (steps * B,), step-major
    (row k * B + b is sample b at step k, so its condition is ``cond.repeat(steps, ...)``)."""
    xs, ts = [], []

    def keep(step: EulerStep) -> None:
        xs.append(step.x)
        ts.append(step.t.repeat(x0.shape[0]))

    euler(teacher, x0, steps, callback=keep)
    return torch.cat(xs), torch.cat(ts)
