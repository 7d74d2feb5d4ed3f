"""How well do a run's cached visual features say WHEN an event starts? (issue 3 diagnostic, MODEL_CARD.md)

Trains a small temporal CNN probe (Linear -> two k=5 convolutions) to mark each clip's event frames from the
cached per-frame features of a run folder, then reports frame-level onset F1 (+-1 frame) on its validation
cache. Feature sets: ``motion`` (the motion cells), ``image`` (MobileNetV2), ``all`` (both, plus the event
detector's features when the cache holds them).

    python benchmarks/feature_onset_probe.py --run runs/small --features motion
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from frieren_rt.data.cache import FeatureCache
from frieren_rt.vision.events import onset_peaks


def load(folder: Path, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    cache = FeatureCache(folder)
    cells = 1 + cache.config.motion_grid ** 2
    xs, ys = [], []
    for rec in cache:
        motion = rec.motion.float()
        m = torch.cat([torch.log1p(100 * motion[:, :cells]), motion[:, cells:]], -1)
        x = {"all": torch.cat([rec.image.float(), m], -1), "motion": m[:, :cells], "image": rec.image.float()}[which]
        y = torch.zeros(x.shape[0])
        for e in rec.events:
            if e["frame"] < len(y):
                y[e["frame"]] = 1
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def f1(prob: torch.Tensor, truth: torch.Tensor, threshold: float, tol: int = 1) -> float:
    tp = fp = fn = 0
    for p, y in zip(prob, truth, strict=True):
        ref, used = torch.nonzero(y).flatten().tolist(), set()
        for j in onset_peaks(p, threshold):
            hit = next((t for t in ref if abs(t - j) <= tol and t not in used), None)
            tp, fp = (tp + 1, fp) if hit is not None else (tp, fp + 1)
            if hit is not None:
                used.add(hit)
        fn += len(ref) - len(used)
    return 2 * tp / max(2 * tp + fp + fn, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/small"), help="run folder with cache_train/cache_val")
    ap.add_argument("--features", choices=["motion", "image", "all"], default="motion")
    ap.add_argument("--steps", type=int, default=1500)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    xtr, ytr = load(args.run / "cache_train", args.features)
    xva, yva = load(args.run / "cache_val", args.features)
    mu, sd = xtr.mean((0, 1)), xtr.std((0, 1)) + 1e-3
    xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
    probe = nn.Sequential(nn.Linear(xtr.shape[-1], 64))
    conv = nn.Sequential(nn.GELU(), nn.Conv1d(64, 64, 5, padding=2), nn.GELU(), nn.Conv1d(64, 1, 5, padding=2))
    params = [*probe.parameters(), *conv.parameters()]
    opt = torch.optim.AdamW(params, 1e-3, weight_decay=1e-2)
    pos_weight = ((1 - ytr.mean()) / ytr.mean()).detach()

    def logits(x: torch.Tensor) -> torch.Tensor:
        return conv(probe(x).transpose(1, 2))[:, 0]

    for _ in range(args.steps):
        i = torch.randint(0, len(xtr), (16,))
        loss = nn.functional.binary_cross_entropy_with_logits(logits(xtr[i]), ytr[i], pos_weight=pos_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        ptr, pva = torch.sigmoid(logits(xtr[:60])), torch.sigmoid(logits(xva))
    for thr in (0.5, 0.7, 0.9):
        print(f"{args.features}: threshold {thr}: train F1 {f1(ptr, ytr[:60], thr):.3f}  val F1 {f1(pva, yva, thr):.3f}")


if __name__ == "__main__":
    main()
