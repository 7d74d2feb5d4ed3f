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

import argparse

import torch
from condition_probe import generate_and_judge  # benchmarks/condition_probe.py, beside this script
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
    from frieren_rt.eval.runner import eval_tools, parse_row, row_geometry, row_options, split_clips  # noqa: PLC0415
    from frieren_rt.pipeline import FoleyPipeline, GenerationOptions, HopGeometry  # noqa: PLC0415
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--row", action="append", required=True, help="an evaluation row (frieren-rt eval --row)")
    p.add_argument("--lam", type=float, nargs="+", default=[0.0, 0.5, 2.0], help="class-contrast weights")
    p.add_argument("--clips", type=int, default=24, help="clips (default 24)")
    p.add_argument("--split", default="test", choices=sorted(SPLITS), help="world split (default test)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tools = eval_tools()
    clips = split_clips(args.split, args.clips, progress=False)
    n_events = sum(len(c.events) for c in clips)
    print(f"{args.split}, {args.clips} clips, {n_events} events")
    print("| row | lam | flux F1 | learned F1 | false onsets in silence | class acc |\n|---|---|---|---|---|---|")
    for spec in args.row:
        row = parse_row(spec)
        options = row_options(row, row_geometry(row, HopGeometry(hop_s=GenerationOptions.hop_s, lookahead=0,
                                                                 revise_lookahead=False)))
        pipe = FoleyPipeline.from_dir(args.weights, options)
        if not pipe.model.cfg.event_classes:
            p.error("this model reads no detector class posteriors")
        own = pipe.velocity
        features = [pipe.frame_features(c.frames) for c in clips]
        for lam in args.lam:
            pipe.velocity = ClassContrast(own, pipe.model, lam, pipe.model.cfg.event_classes)
            judged = generate_and_judge(pipe, clips, features, tools)  # features computed once per clip
            f = judged["flux"]
            print(f"| {spec} | {lam:g} | {f['f1']:.3f} | {judged['learned']['f1']:.3f} | "
                  f"{f['false_onset_rate_in_silence']:.3f} | {judged['class']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
