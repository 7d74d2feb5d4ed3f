"""Samplers: the official Euler rule, agreement with Dopri5, evaluation counts, seeded reproducibility."""

from __future__ import annotations

import pytest
import torch

from frieren_rt.flow import (
    EvalCounter,
    cfg_velocity,
    dopri5,
    draw_noise,
    euler,
    euler_trajectory,
    generate,
    reflow_pairs,
    time_grid,
)
from tests.flow.toy import CFG_SCALE


def _gaussian_flow(mu: float, s: float):
    """Exact rectified-flow field from N(0, 1) to N(mu, s^2) per dimension, and its exact flow map.

    x_t = t x1 + (1 - t) x0 is Gaussian with mean t mu and std sigma_t = sqrt((1 - t)^2 + t^2 s^2), and
    E[x1 - x0 | x_t = x] = mu + (sigma_t' / sigma_t)(x - t mu); its ODE carries x0 to mu + s x0 (affine map).
    """

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        var = (1 - t) ** 2 + t**2 * s**2
        return mu + (t * s**2 - (1 - t)) / var * (x - t * mu)

    return velocity, lambda x0: mu + s * x0


def test_grid_is_float32_linspace():
    assert torch.equal(time_grid(25), torch.linspace(0, 1, 26))
    assert time_grid(1).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        time_grid(0)


def test_euler_accumulates_t_like_torchdyn():
    """t is summed step by step in float32, so 0.2 arrives as 0.19999...: long(t * 1000) = 199, not 200."""
    seen: list[torch.Tensor] = []

    def spy(x, t):
        seen.append(t.clone())
        return torch.ones_like(x)

    euler(spy, torch.zeros(3, 2), 25)
    assert len(seen) == 25 and all(s.shape == (3,) and s.dtype == torch.float32 for s in seen)
    ints = [int((s[0] * 1000).long()) for s in seen]
    assert ints[:7] == [0, 40, 80, 120, 160, 199, 240]
    expected, t = [], torch.tensor(0.0)
    grid = time_grid(25)
    dt = grid[1] - grid[0]
    for k in range(25):
        expected.append(t.item())
        t = t + dt
        dt = grid[min(k + 2, 25)] - t
    assert [s[0].item() for s in seen] == expected


def test_euler_steps_schedule_and_one_step_agree():
    v, _ = _gaussian_flow(2.0, 0.5)
    x0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    before = x0.clone()
    assert torch.equal(euler(v, x0, 10), euler(v, x0, schedule=time_grid(10)))
    assert torch.equal(euler(v, x0, 1), x0 + v(x0, torch.zeros(16)))
    assert torch.equal(x0, before), "x0 is not modified"
    traj = euler_trajectory(v, x0, 10)
    assert traj.shape == (11, 16, 3) and torch.equal(traj[0], x0) and torch.equal(traj[-1], euler(v, x0, 10))
    with pytest.raises(ValueError):
        euler(v, x0)


def test_euler_and_dopri5_converge_to_the_exact_gaussian_flow():
    v, exact = _gaussian_flow(2.0, 0.5)
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    err = {n: (euler(v, x0, n) - exact(x0)).abs().max().item() for n in (100, 200, 1000)}
    assert err[1000] < 5e-3, f"1000-step Euler error {err[1000]:.2e}"
    assert 1.6 < err[100] / err[200] < 2.4, f"Euler is first order: error ratio {err[100] / err[200]:.2f}"
    counted = EvalCounter(v)
    d_err = (dopri5(counted, x0, atol=1e-9, rtol=1e-9) - exact(x0)).abs().max().item()
    assert d_err < 1e-6, f"Dopri5 error {d_err:.2e}"
    assert 0 < counted.calls < 1000, f"adaptive steps: {counted.calls} evaluations"


def test_many_step_euler_agrees_with_dopri5_on_the_trained_field(base, heldout):
    v = cfg_velocity(base.net, heldout.labels, None, CFG_SCALE)
    with torch.no_grad():
        ref = dopri5(v, heldout.noise, atol=1e-5, rtol=1e-5)
        err = (euler(v, heldout.noise, 200) - ref).norm(dim=1)
        err25 = (heldout.teacher - ref).norm(dim=1)
    # Data scale: modes at radius 2.5, std 0.15. A few trajectories start near a basin boundary, where any
    # integration error is amplified, hence the 99th percentile rather than the max.
    q99 = err.quantile(0.99)
    assert err.mean() < 0.01 and q99 < 0.05, f"200-step Euler vs Dopri5: mean {err.mean():.4f}, q99 {q99:.4f}"
    assert err25.mean() < 0.05, f"25-step Euler vs Dopri5: mean {err25.mean():.4f}"
    assert err.mean() < err25.mean(), "more steps get closer"


def test_counter_counts_calls_and_rows():
    counted = EvalCounter(lambda x, t: -x)
    euler(counted, torch.ones(5, 2), 7)
    assert (counted.calls, counted.rows) == (7, 35)
    counted.reset()
    assert (counted.calls, counted.rows) == (0, 0)


def test_fixed_seeds_reproduce_samples_bit_exactly_and_different_seeds_differ(base):
    labels = torch.arange(32) % 4
    v = cfg_velocity(base.net, labels, None, CFG_SCALE)

    def sample(seed: int) -> torch.Tensor:
        with torch.no_grad():
            return generate(v, (32, 2), generator=torch.Generator().manual_seed(seed), steps=25)

    assert torch.equal(sample(7), sample(7))
    assert not torch.allclose(sample(7), sample(8))
    assert torch.equal(draw_noise((4, 3), generator=torch.Generator().manual_seed(1)),
                       draw_noise((4, 3), generator=torch.Generator().manual_seed(1)))
    make = lambda c: cfg_velocity(base.net, c, None, CFG_SCALE)  # noqa: E731
    a = reflow_pairs(make, labels, (2,), generator=torch.Generator().manual_seed(3), batch_size=10)
    b = reflow_pairs(make, labels, (2,), generator=torch.Generator().manual_seed(3), batch_size=10)
    assert torch.equal(a.noise, b.noise) and torch.equal(a.sample, b.sample)


def test_batch_times_expands_scalars_and_keeps_a_tensor_t_a_tensor():
    from frieren_rt.flow.samplers import batch_times

    x = torch.zeros(3, 2, 5)
    assert torch.equal(batch_times(0.25, x), torch.full((3,), 0.25))
    t = torch.tensor([0.1, 0.2, 0.3])
    assert batch_times(t, x) is t  # moved (a no-op here), never rebuilt by torch.as_tensor
    assert torch.equal(batch_times(torch.tensor(0.5), x), torch.full((3,), 0.5))
