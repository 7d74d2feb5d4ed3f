"""Class-contrast guidance, a run-time probe (MODEL_CARD.md, "What was tried"): does pushing the field along what
the detector's class posteriors change make its sounds recognised more often?

    python benchmarks/class_guidance.py --row 'distill:1@student/offline#generate' --row 'single:1#engine' \
        --lam 0 0.5 2 --clips 24

For each row and weight lam the product's velocity becomes v + lam (v_c - v_n): v the row's own (CFG where the
variant uses it), v_c the conditional velocity, v_n the conditional velocity with the class posteriors spread
evenly over the classes (P(event) and everything else kept), so only the class identity is amplified, the way
CFG amplifies the whole condition (Ho & Salimans 2022). One or two extra network passes per step; a probe, not a
product option. Scored as frieren-rt eval scores: flux and learned-detector onset F1, false onsets in silence,
class accuracy of the classifier fitted on true audio.
"""

from __future__ import annotations

import torch
from condition_probe import sweep_parser, sweep_rows  # benchmarks/condition_probe.py, beside this script
from torch import nn


def neutral_classes(cond: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, S, D) frame features whose last K + 1 columns are the detector's posteriors ("no event" last) -> the
    same with the K class columns replaced by their sum / K: P(event) kept, no class preferred."""
    out = cond.clone()
    post = out[..., -(num_classes + 1):-1]
    out[..., -(num_classes + 1):-1] = post.sum(-1, keepdim=True).expand_as(post) / num_classes
    return out


class ClassContrast(nn.Module):
    """velocity(x, t, cond, **kw) + lam * (model(cond) - model(neutral_classes(cond)))."""

    def __init__(self, velocity: nn.Module, model: nn.Module, lam: float, num_classes: int) -> None:
        super().__init__()
        self.velocity, self.model, self.lam, self.num_classes = velocity, model, lam, num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, **kw: torch.Tensor) -> torch.Tensor:
        v = self.velocity(x, t, cond, **kw)
        if self.lam == 0:
            return v
        v_c = self.model(x, t, cond, **kw)
        v_n = self.model(x, t, neutral_classes(cond, self.num_classes), **kw)
        return v + self.lam * (v_c - v_n)


def main() -> None:
    p = sweep_parser(__doc__, "lam", [0.0, 0.5, 2.0], "class-contrast weights")
    args = p.parse_args()

    def prepare(pipe):  # noqa: ANN001, ANN202
        if not pipe.model.cfg.event_classes:
            p.error("this model reads no detector class posteriors")
        own = pipe.velocity

        def set_lam(lam: float) -> None:
            pipe.velocity = ClassContrast(own, pipe.model, lam, pipe.model.cfg.event_classes)

        return set_lam

    sweep_rows(args, "lam", args.lam, prepare)


if __name__ == "__main__":
    main()
