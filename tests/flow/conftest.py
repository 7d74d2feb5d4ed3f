"""Trained toy models shared by the flow tests (package scope: each is trained once per run).

The chain mirrors Frieren's recipe (frieren.md, "Training and sampling") on the 2-D toy of ``toy.py``:
base model with CFG dropout -> guided 25-step (noise, sample) pairs -> reflow -> one-step distillation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from frieren_rt.flow import (
    ReflowPairs,
    cfg_velocity,
    conditional_flow_loss,
    draw_noise,
    euler,
    one_step_distillation_loss,
    reflow_loss,
    reflow_pairs,
)
from tests.flow.toy import CFG_SCALE, NUM_CLASSES, ToyVelocityNet, sample_data, train

BATCH = 256


@dataclass(frozen=True)
class Base:
    net: ToyVelocityNet
    losses: list[float]


@dataclass(frozen=True)
class HeldOut:
    """Evaluation noise never used in training, its labels, and the base teacher's 25-step guided samples."""

    noise: torch.Tensor  # (N, 2)
    labels: torch.Tensor  # (N,)
    teacher: torch.Tensor  # (N, 2)


def _frozen(net: ToyVelocityNet) -> ToyVelocityNet:
    net.eval()
    net.requires_grad_(False)
    return net


def _trainable_copy(net: ToyVelocityNet) -> ToyVelocityNet:
    student = copy.deepcopy(net)
    student.requires_grad_(True)
    return student.train()


@pytest.fixture(scope="package", autouse=True)
def _one_thread():
    """Run the flow tests on one thread. For these tiny MLPs thread synchronisation dominates: on the shared
    2-core machine under load, 200 training steps took 1.8 s on one thread and 17.8 s on two (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def base() -> Base:
    torch.manual_seed(0)  # network init
    net = ToyVelocityNet()
    null = torch.tensor(NUM_CLASSES)

    def loss(gen: torch.Generator) -> torch.Tensor:
        labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=gen)
        return conditional_flow_loss(net, sample_data(labels, generator=gen), labels, null, generator=gen)

    losses = train(net, loss, steps=800, seed=0)
    return Base(_frozen(net), losses)


@pytest.fixture(scope="package")
def heldout(base: Base) -> HeldOut:
    gen = torch.Generator().manual_seed(1234)
    labels = torch.arange(512) % NUM_CLASSES
    noise = draw_noise((512, 2), generator=gen)
    with torch.no_grad():
        teacher = euler(cfg_velocity(base.net, labels, None, CFG_SCALE), noise, 25)
    return HeldOut(noise, labels, teacher)


@pytest.fixture(scope="package")
def pairs(base: Base) -> ReflowPairs:
    labels = torch.arange(4096) % NUM_CLASSES
    make = lambda c: cfg_velocity(base.net, c, None, CFG_SCALE)  # noqa: E731
    return reflow_pairs(make, labels, (2,), generator=torch.Generator().manual_seed(2), steps=25)


def _pair_batches(pairs: ReflowPairs, gen: torch.Generator) -> ReflowPairs:
    return pairs.batch(torch.randint(0, len(pairs), (BATCH,), generator=gen))


@pytest.fixture(scope="package")
def reflowed(base: Base, pairs: ReflowPairs) -> ToyVelocityNet:
    """Reflow student initialised from the base model (as Frieren does), trained on its guided velocity."""
    student = _trainable_copy(base.net)

    def loss(gen: torch.Generator) -> torch.Tensor:
        p = _pair_batches(pairs, gen)
        return reflow_loss(cfg_velocity(student, p.cond, None, CFG_SCALE), p, generator=gen)

    train(student, loss, steps=800, lr=1e-3, seed=3)
    return _frozen(student)


@pytest.fixture(scope="package")
def distilled(reflowed: ToyVelocityNet, pairs: ReflowPairs) -> ToyVelocityNet:
    """One-step student initialised from the reflow model, trained at t = 0 on the stored pairs."""
    student = _trainable_copy(reflowed)

    def loss(gen: torch.Generator) -> torch.Tensor:
        p = _pair_batches(pairs, gen)
        return one_step_distillation_loss(cfg_velocity(student, p.cond, None, CFG_SCALE), p.noise, p.sample)

    train(student, loss, steps=800, lr=1e-3, seed=4)
    return _frozen(student)
