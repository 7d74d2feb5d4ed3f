"""The training objective (frieren.md, "Training and sampling") and that it trains a conditional model."""

from __future__ import annotations

import math

import torch

from frieren_rt.flow import (
    cfg_velocity,
    draw_t,
    drop_condition,
    euler,
    interpolate,
    logit_normal_density,
    rectified_flow_loss,
)
from tests.flow.toy import CFG_SCALE, NUM_CLASSES, distance_to_class


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_t_is_integer_grid_over_1000_clamped_away_from_0_and_1():
    t = draw_t(20_000, generator=_gen())
    assert t.dtype == torch.float32 and t.shape == (20_000,)
    assert t.min() == torch.tensor(1e-5), "k = 0 is clamped to 1e-5"
    assert t.max().item() <= 0.999 + 1e-7
    k = torch.round(t * 1000)
    on_grid = (t - k / 1000).abs() < 1e-6
    assert bool(on_grid[k > 0].all()), "every t > 0 is k / 1000"
    assert len(torch.unique(k)) > 990, "draws cover Uniform{0..999}"
    assert abs(t.mean().item() - 0.4995) < 0.01, "uniform, not logit-normal sampling"


def test_t_draw_follows_the_generator():
    assert torch.equal(draw_t(64, generator=_gen(5)), draw_t(64, generator=_gen(5)))
    assert not torch.equal(draw_t(64, generator=_gen(5)), draw_t(64, generator=_gen(6)))


def test_logit_normal_weight_is_the_density():
    assert abs(logit_normal_density(torch.tensor(0.5)).item() - 1 / (0.25 * math.sqrt(2 * math.pi))) < 1e-6
    t = torch.linspace(1e-6, 1 - 1e-6, 200_001, dtype=torch.float64)
    assert abs(torch.trapezoid(logit_normal_density(t), t).item() - 1.0) < 1e-4, "integrates to 1"
    assert torch.allclose(logit_normal_density(t), logit_normal_density(1 - t)), "symmetric about 0.5"


def test_interpolation_is_the_straight_path_without_sigma_min():
    x0, x1 = torch.randn(3, 4, 5, generator=_gen()), torch.randn(3, 4, 5, generator=_gen(1))
    assert torch.equal(interpolate(x0, x1, torch.zeros(3)), x0)
    assert torch.equal(interpolate(x0, x1, torch.ones(3)), x1)
    t = torch.tensor([0.25, 0.5, 0.75])
    assert torch.allclose(interpolate(x0, x1, t), t[:, None, None] * x1 + (1 - t[:, None, None]) * x0)


def test_loss_is_logit_normal_weighted_mse_to_x1_minus_x0():
    x0, x1 = torch.randn(8, 3, generator=_gen()), torch.randn(8, 3, generator=_gen(1))
    t = draw_t(8, generator=_gen(2))
    exact = lambda x, tt: x1 - x0  # noqa: E731  the target itself
    assert rectified_flow_loss(exact, x1, x0=x0, t=t, generator=_gen()).item() == 0.0
    zero = lambda x, tt: torch.zeros_like(x)  # noqa: E731
    per_sample = (x1 - x0).pow(2).mean(1)
    expected = (logit_normal_density(t) * per_sample).mean()
    got = rectified_flow_loss(zero, x1, x0=x0, t=t, generator=_gen())
    assert torch.allclose(got, expected)
    assert torch.allclose(rectified_flow_loss(zero, x1, x0=x0, t=t, generator=_gen(), weighted=False),
                          per_sample.mean())


def test_cfg_dropout_replaces_whole_conditions_with_probability_p():
    cond = torch.randn(20_000, 3, 4, generator=_gen()) + 10
    before = cond.clone()
    null = torch.zeros(1, 3, 4)
    out = drop_condition(cond, null, 0.2, generator=_gen(1))
    assert torch.equal(cond, before), "the caller's tensor is untouched"
    dropped = (out == 0).flatten(1).all(1)
    kept = (out == cond).flatten(1).all(1)
    assert bool((dropped ^ kept).all()), "each sample is either its own condition or entirely null"
    assert abs(dropped.float().mean().item() - 0.2) < 0.015
    assert torch.equal(drop_condition(cond, null, 0.0, generator=_gen()), cond)
    assert bool((drop_condition(cond, null, 1.0, generator=_gen()) == 0).all())


def test_training_loss_falls_and_the_model_follows_its_condition(base, heldout):
    first, last = sum(base.losses[:50]) / 50, sum(base.losses[-50:]) / 50
    assert last < 0.6 * first, f"weighted loss {first:.3f} -> {last:.3f} did not fall by 40 %"
    # Guided 25-step samples land on a mode of their own class (modes are 1.9 apart, std 0.15).
    near = (distance_to_class(heldout.teacher, heldout.labels) < 0.6).float().mean().item()
    assert near > 0.95, f"only {near:.1%} of guided samples land on their class's modes"
    # The learned null condition gives the unconditional mixture: samples spread over all classes.
    with torch.no_grad():
        free = euler(cfg_velocity(base.net, heldout.labels, None, 0.0), heldout.noise, 25)
    hits = torch.stack([distance_to_class(free, torch.full_like(heldout.labels, c)) < 0.6
                        for c in range(NUM_CLASSES)]).float().mean(1)
    assert bool((hits > 0.1).all()), f"unconditional samples per class {hits.tolist()} miss a class"
    assert CFG_SCALE > 1
