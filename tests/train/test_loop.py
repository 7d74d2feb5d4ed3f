"""The training loop resumes where a killed run stopped and gives the same result as an uninterrupted run."""

from __future__ import annotations

import torch

from frieren_rt.train.loop import LossLog, TrainState, train_loop, warmup_cosine


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(seed)
    state = TrainState(step=0, modules={"model": model}, optimizers={"opt": opt}, generator=gen)
    target = torch.tensor([[1.0, -2.0, 0.5]])

    def step(_: int) -> dict[str, float]:
        x = torch.randn(16, 3, generator=gen)
        loss = ((model(x) - x @ target.T) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return state, step


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    state, step = _setup()
    train_loop(step, state, total_steps=40, folder=tmp_path / "a", log_every=10, checkpoint_every=10)
    ticks = iter(range(1000))
    first, step1 = _setup()
    # A time budget of 14 fake seconds stops the run after 14 steps with a checkpoint, like a killed session.
    train_loop(step1, first, total_steps=40, folder=tmp_path / "b", log_every=10, checkpoint_every=100,
               time_budget_s=14, clock=lambda: float(next(ticks)))
    assert first.step == 14
    second, step2 = _setup(seed=1)  # fresh process state: everything must come from the checkpoint
    train_loop(step2, second, total_steps=40, folder=tmp_path / "b", log_every=10, checkpoint_every=10)
    assert second.step == 40
    assert torch.equal(state.modules["model"].weight, second.modules["model"].weight)
    losses = [r["loss"] for r in LossLog(tmp_path / "a").read()]
    assert losses[-1] < losses[0] / 10


def test_a_checkpoint_without_a_module_the_run_now_has_is_refused_with_what_to_do(tmp_path):
    import pytest

    state, step = _setup()
    train_loop(step, state, total_steps=2, folder=tmp_path, checkpoint_every=1)
    more, step = _setup()
    more = TrainState(step=0, modules={**more.modules, "ema": torch.nn.Linear(3, 1)}, optimizers=more.optimizers,
                      generator=more.generator)
    with pytest.raises(ValueError, match=r"no state for \['ema'\].*config it was trained with"):
        train_loop(step, more, total_steps=4, folder=tmp_path)


def test_warmup_then_cosine_to_floor():
    assert warmup_cosine(0, total=100, warmup=10) == 0.1
    assert warmup_cosine(9, total=100, warmup=10) == 1.0
    assert abs(warmup_cosine(100, total=100, warmup=10) - 0.1) < 1e-9
