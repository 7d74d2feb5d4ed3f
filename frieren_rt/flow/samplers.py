"""ODE samplers over a velocity callable ``v(x, t)`` (t = 0 noise, t = 1 data).

Every sampler is a small function of (velocity, x0, schedule) in the k-diffusion manner (STYLE.md):
conditioning and guidance are bound into the velocity by closures (guidance.py), so the 25-step base model,
the one-step student (schedule [0, 1]) and a guidance-distilled student all run through the same ``euler``.
Frieren samples with Euler (25 steps by default), RK4 or Dopri5 at atol = rtol = 1e-4
(../shared/reference/frieren.md, "Training and sampling").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "EulerStep",
    "EvalCounter",
    "Velocity",
    "batch_times",
    "dopri5",
    "draw_noise",
    "euler",
    "euler_trajectory",
    "generate",
    "time_grid",
]

# v(x (B, ...), t (B,) float in [0, 1]) -> (B, ...)
Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EulerStep:
    """What ``euler`` reports to its callback after each step.

    index: step number, 0-based. t: 0-d float32 time at which the velocity was evaluated; dt: 0-d step size.
    x: (B, ...) state at t; v: (B, ...) velocity there; x_next: (B, ...) state after the step.
    """

    index: int
    t: torch.Tensor
    dt: torch.Tensor
    x: torch.Tensor
    v: torch.Tensor
    x_next: torch.Tensor


class EvalCounter:
    """Wraps a callable whose first argument is a batch and counts what it costs.

    ``calls`` counts invocations (one doubled-batch CFG pass is one call, as the official sampler's NFE);
    ``rows`` counts batch rows evaluated, so ``rows / B`` is network passes per sample: CFG costs 2 per step,
    a single-pass student 1. Other attributes (e.g. ``null_condition``) are read from the wrapped callable,
    so a counted network can stand in for the network.
    """

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        self.fn = fn
        self.calls = 0
        self.rows = 0

    def __call__(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        return self.fn(x, *args, **kwargs)

    def __getattr__(self, name: str) -> object:
        if name == "fn":  # not yet set (e.g. during copy): avoid recursing into ourselves
            raise AttributeError(name)
        return getattr(self.fn, name)

    def reset(self) -> None:
        self.calls = 0
        self.rows = 0


def batch_times(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """t (a float, 0-dim or (B,)) -> (B,) on x's device. A tensor t is moved, never passed through
    ``torch.as_tensor``: torch.jit.trace records that as a constant, which would freeze every sampler step of a
    "script" graph (frieren_rt.backends) at the traced t."""
    t = t.to(x.device) if isinstance(t, torch.Tensor) else torch.as_tensor(t, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


def time_grid(steps: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The official grid: ``torch.linspace(0, 1, steps + 1)`` in float32. (steps + 1,)"""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(0, 1, steps + 1, dtype=torch.float32, device=device)


def draw_noise(
    shape: tuple[int, ...], *, generator: torch.Generator, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal x0 of ``shape`` drawn on the generator's device (so a seed gives the same noise
    whatever device the model runs on), then moved to ``device``."""
    x0 = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return x0.to(device) if device is not None else x0


def _schedule(steps: int | None, schedule: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    if (steps is None) == (schedule is None):
        raise ValueError("give exactly one of steps or schedule")
    if schedule is None:
        return time_grid(steps, device=device)  # type: ignore[arg-type]
    schedule = torch.as_tensor(schedule, dtype=torch.float32, device=device)
    if schedule.dim() != 1 or schedule.numel() < 2:
        raise ValueError(f"schedule must be 1-D with at least two times, got shape {tuple(schedule.shape)}")
    return schedule


def euler(
    velocity: Velocity,
    x0: torch.Tensor,
    steps: int | None = None,
    *,
    schedule: torch.Tensor | None = None,
    callback: Callable[[EulerStep], None] | None = None,
) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from schedule[0] to schedule[-1] with explicit Euler. (B, ...) -> (B, ...)

    Exactly torchdyn's fixed-step loop that Frieren's sampler runs (fixtures/frieren_official/
    sampler_reduced.json, "euler_rule"): t = s[0], dt = s[1] - s[0]; per step x = x + dt * v(x, t);
    t = t + dt; dt = s[k + 1] - t, all float32. t is accumulated rather than read from the grid, which is
    why the 25-step grid reaches the network as 199 / 359 / 399 instead of 200 / 360 / 400. ``steps=1`` is
    the one-step student (x1 = x0 + v(x0, 0)). The velocity gets t as a (B,) tensor; x0 is not modified.
    """
    s = _schedule(steps, schedule, x0.device)
    b = x0.shape[0]
    x, t, dt = x0, s[0], s[1] - s[0]
    for k in range(s.numel() - 1):
        v = velocity(x, t.repeat(b))  # t: 0-d -> (B,)
        x_next = x + dt * v
        if callback is not None:
            callback(EulerStep(index=k, t=t, dt=dt, x=x, v=v, x_next=x_next))
        x, t = x_next, t + dt
        if k + 2 < s.numel():
            dt = s[k + 2] - t
    return x


def euler_trajectory(
    velocity: Velocity, x0: torch.Tensor, steps: int | None = None, *, schedule: torch.Tensor | None = None,
) -> torch.Tensor:
    """All states of ``euler``, x0 first: (K, B, ...) with K = steps + 1 (the official ``traj``)."""
    states = [x0]
    euler(velocity, x0, steps, schedule=schedule, callback=lambda st: states.append(st.x_next))
    return torch.stack(states)


def generate(
    velocity: Velocity, shape: tuple[int, ...], *, generator: torch.Generator, steps: int = 25,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Noise from ``generator`` integrated with ``steps`` Euler steps: a seed fixes the sample. -> shape."""
    return euler(velocity, draw_noise(shape, generator=generator, device=device), steps)


def dopri5(
    velocity: Velocity, x0: torch.Tensor, *, atol: float = 1e-4, rtol: float = 1e-4, t0: float = 0.0,
    t1: float = 1.0,
) -> torch.Tensor:
    """Adaptive Dormand-Prince 5(4) from t0 to t1 via torchdiffeq (Frieren's option at atol = rtol = 1e-4).

    x0: (B, ...) -> (B, ...). Wrap ``velocity`` in an ``EvalCounter`` to read the number of evaluations.
    """
    from torchdiffeq import odeint  # noqa: PLC0415  (optional at import time: only this sampler needs it)

    b = x0.shape[0]
    span = torch.tensor([t0, t1], dtype=x0.dtype, device=x0.device)
    path = odeint(lambda t, x: velocity(x, t.expand(b)), x0, span, method="dopri5", atol=atol, rtol=rtol)
    return path[-1]
