"""Official parity: our CFG wrapper + Euler reproduce Frieren's torchdyn sampler on the reduced DiT.

Fixtures: sampler_reduced.json / sampler_reduced_io.safetensors, produced by the official code
(fixtures/frieren_official/README.md). Tolerance from that README: max |a - b| <= 1e-4 * max(1, max |ref|).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from frieren_rt.flow import EvalCounter, cfg_velocity, euler, euler_trajectory
from frieren_rt.model import VectorField, preset
from tests.fixtures_path import official_fixtures


def _fixtures() -> Path:
    """../shared/fixtures/frieren_official beside the repository, or $FRIEREN_RT_FIXTURES; skip if absent."""
    root = official_fixtures()
    if not (root / "sampler_reduced_io.safetensors").is_file():
        pytest.skip(f"official sampler fixtures not found in {root} (set FRIEREN_RT_FIXTURES)")
    return root


def _assert_close(out: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    tol = 1e-4 * max(1.0, ref.abs().max().item())
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    err = (out - ref).abs().max().item()
    assert err <= tol, f"{name}: max error {err:.3g} > {tol:.3g}"


@pytest.fixture(scope="module")
def official():
    root = _fixtures()
    model = VectorField.from_pretrained(
        root / "dit_reduced.safetensors", preset("official", cond_dim=96, hidden=64, depth=2), strict=True
    ).eval()
    spec = json.loads((root / "sampler_reduced.json").read_text())
    return model, load_file(str(root / "sampler_reduced_io.safetensors")), spec


def _timesteps_seen(model: VectorField) -> tuple[list[torch.Tensor], object]:
    """Record the timestep tensor the inner DiT receives on each call."""
    seen: list[torch.Tensor] = []
    hook = model.net.register_forward_pre_hook(lambda m, args: seen.append(args[1].clone()))
    return seen, hook


@pytest.mark.parametrize("run", ["K26", "K2"])
def test_cfg_euler_reproduces_official_sampler(official, run):
    model, io, spec = official
    x0, cond = io["in_x0"], io["in_cond_raw"]
    counted = EvalCounter(model)
    velocity = cfg_velocity(counted, cond, model.null_condition(cond[:1]), spec["cfg_scale"])
    seen, hook = _timesteps_seen(model)
    try:
        with torch.no_grad():
            traj = euler_trajectory(velocity, x0, spec["runs"][run]["steps"])
    finally:
        hook.remove()
    _assert_close(traj[-1], io[f"out_x1_{run}"], f"out_x1_{run}")
    if run == "K26":
        _assert_close(traj, io["out_traj_K26"], "out_traj_K26")
    expected = spec["runs"][run]["t_ints_passed_to_dit"]
    assert [s.dtype for s in seen] == [torch.int64] * len(expected)
    assert all(s.shape == (2 * x0.shape[0],) and bool((s == s[0]).all()) for s in seen), "one t per call"
    assert [int(s[0]) for s in seen] == expected
    assert counted.calls == spec["runs"][run]["nfe_doubled_batch"]
    assert counted.rows == 2 * x0.shape[0] * counted.calls


def test_one_step_student_is_euler_with_one_step(official):
    """The one-step path x1 = x0 + v_cfg(x0, 0) is euler(steps=1) = schedule [0, 1]: no separate sampler."""
    model, io, spec = official
    x0, cond = io["in_x0"], io["in_cond_raw"]
    velocity = cfg_velocity(model, cond, None, spec["cfg_scale"])  # null from VectorField.null_condition
    with torch.no_grad():
        by_steps = euler(velocity, x0, 1)
        by_schedule = euler(velocity, x0, schedule=torch.tensor([0.0, 1.0]))
        direct = x0 + velocity(x0, torch.zeros(x0.shape[0]))
    assert torch.equal(by_steps, by_schedule)
    assert torch.equal(by_steps, direct)
    _assert_close(by_steps, io["out_x1_K2"], "out_x1_K2")
