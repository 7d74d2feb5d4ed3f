"""A tiny conditional 2-D flow problem for the flow tests: data, a velocity MLP, and a training loop.

Data: 8 Gaussian modes (std 0.15) on a circle of radius 2.5; class c in {0..3} owns the two opposite modes
c and c + 4, so each conditional distribution is bimodal and its flow from N(0, I) is curved (a one-step
Euler sample lands between the modes): the regime reflow and distillation are for.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

NUM_CLASSES = 4
# Guidance scale of the toy tests. Frieren's 4.5 suits its audio model; on these well-separated modes 2.0
# already sharpens the conditionals without flinging samples past them.
CFG_SCALE = 2.0
RADIUS = 2.5
MODE_STD = 0.15


def mode_centres(labels: torch.Tensor) -> torch.Tensor:
    """The two mode centres of each label. (B,) long -> (B, 2 modes, 2 coords)."""
    k = labels[:, None] + torch.tensor([0, NUM_CLASSES])  # (B, 2) mode index in 0..7
    angle = 2 * math.pi * k.float() / (2 * NUM_CLASSES)
    return RADIUS * torch.stack([angle.cos(), angle.sin()], -1)


def sample_data(labels: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """One point per label from its class's two modes. (B,) -> (B, 2)"""
    b = labels.shape[0]
    pick = torch.randint(0, 2, (b,), generator=generator)
    centre = mode_centres(labels)[torch.arange(b), pick]  # (B, 2)
    return centre + MODE_STD * torch.randn(b, 2, generator=generator)


def distance_to_class(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Distance from each point to the nearest mode of its own class. (B, 2), (B,) -> (B,)"""
    return (x[:, None, :] - mode_centres(labels)).norm(dim=-1).min(dim=1).values


class ToyVelocityNet(nn.Module):
    """v = net(x (B, 2), t (B,) in [0, 1], cond (B,) long in 0..NUM_CLASSES) -> (B, 2).

    Label NUM_CLASSES is the learned null condition (``null_condition``), as a CFG-trained model needs.
    """

    def __init__(self, width: int = 128, emb: int = 16, freqs: int = 6) -> None:
        super().__init__()
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(freqs, dtype=torch.float32) / 2)
        self.embed = nn.Embedding(NUM_CLASSES + 1, emb)
        self.mlp = nn.Sequential(
            nn.Linear(2 + 2 * freqs + emb, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, 2),
        )

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor:
        return torch.full_like(cond, NUM_CLASSES)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        phase = t.reshape(-1, 1).float() * self.freqs  # (B, freqs)
        h = torch.cat([x, phase.sin(), phase.cos(), self.embed(cond)], dim=-1)
        return self.mlp(h)


def train(
    net: nn.Module, loss_fn: Callable[[torch.Generator], torch.Tensor], *, steps: int, lr: float = 2e-3,
    seed: int = 0,
) -> list[float]:
    """Adam on ``loss_fn(generator)`` for ``steps`` steps with a cosine-decayed lr; returns the loss curve."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    for _ in range(steps):
        loss = loss_fn(gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses
