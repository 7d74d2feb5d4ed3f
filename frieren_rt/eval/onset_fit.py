"""Fit the learned onset detector (onset_net.py) on TRUE train-split world audio and choose its threshold on
TRUE validation audio; write the weights the evaluation loads.

    python -m frieren_rt.eval.onset_fit                      # the shipped recipe (5.2 min on 2 cores)
    python -m frieren_rt.eval.onset_fit --steps 200 --train-clips 50 -o /tmp/o.safetensors   # a quick try

Resumable: a checkpoint beside the output (``.ckpt``) every ``--checkpoint-every`` steps; rerun the same
command to continue. Nothing generated is ever seen: the instrument stays independent of the model it judges.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.eval.onset_net import (
    DEFAULT_FILE,
    LearnedOnsetDetector,
    OnsetNet,
    OnsetNetConfig,
    onset_features,
    onset_probability,
    pick_probability_peaks,
    reference_frames,
)
from frieren_rt.eval.onsets import onset_sync, pool_sync

__all__ = ["clip_tensors", "choose_threshold", "fit", "main"]


def clip_tensors(seeds, cfg: OnsetNetConfig, desc: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(features (2 M, T), target (T,))] of the TRUE audio of world clips ``seeds``."""
    from frieren_rt.eval.truth import true_audio  # noqa: PLC0415

    out = []
    for s in tqdm(list(seeds), desc=desc):
        clip = true_audio(s)
        f = onset_features(clip.audio, cfg)
        out.append((f, reference_frames(clip.events, cfg, f.shape[1])))
    return out


def _batch(data, crop: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2 M, crop) features with a random gain of +-10 dB on the levels, (B, crop) targets."""
    feats, targets = [], []
    for i in torch.randint(len(data), (size,), generator=gen).tolist():
        f, y = data[i]
        start = int(torch.randint(max(1, f.shape[1] - crop + 1), (1,), generator=gen))
        f, y = f[:, start:start + crop], y[start:start + crop]
        m = f.shape[0] // 2
        gain = (torch.rand(1, generator=gen) - 0.5)  # (dB / 20) units: +-10 dB
        feats.append(torch.cat([f[:m] + gain, f[m:]]))
        targets.append(y)
    return torch.stack(feats), torch.stack(targets)


def choose_threshold(detector: LearnedOnsetDetector, clips, thresholds=np.arange(0.15, 0.96, 0.05)) -> dict:
    """Pooled onset sync on TRUE ``clips`` (truth.TrueAudio) per threshold; the best F1's threshold, and the
    mismatched-clip floor at it."""
    cfg = detector.cfg
    probs = [onset_probability(detector.net, c.audio, cfg) for c in clips]
    scores = {}
    for thr in thresholds:
        rows = [onset_sync(pick_probability_peaks(p, cfg, float(thr)) * cfg.frame_s, c.events, c.silent_spans)
                for p, c in zip(probs, clips, strict=True)]
        scores[round(float(thr), 3)] = pool_sync(rows)
    best = max(scores, key=lambda t: scores[t]["f1"])
    floor = pool_sync([onset_sync(pick_probability_peaks(probs[(i + 1) % len(clips)], cfg, best) * cfg.frame_s,
                                  c.events, c.silent_spans) for i, c in enumerate(clips)])
    return {"threshold": best, "true": scores[best], "mismatched": floor,
            "f1_by_threshold": {t: s["f1"] for t, s in scores.items()}}


def fit(out: Path, *, train_clips: int, val_clips: int, steps: int, batch_size: int = 32, crop_s: float = 4.0,
        lr: float = 2e-3, seed: int = 0, checkpoint_every: int = 250) -> dict:
    """Fit (or resume) the net, choose the threshold on validation, write ``out`` and its ``.json`` report."""
    from frieren_rt.eval.truth import true_audio  # noqa: PLC0415
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415

    torch.manual_seed(seed)
    cfg = OnsetNetConfig()
    net = OnsetNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    ckpt, step, losses = out.with_suffix(".ckpt"), 0, []  # .ckpt is git-ignored
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        step, losses = state["step"], state["losses"]
        print(f"resuming from {ckpt} at step {step}")
    resumed_from = step
    data = clip_tensors(list(SPLITS["train"])[:train_clips], cfg, "train clips (true audio)")
    gen = torch.Generator().manual_seed(seed + step)
    crop = round(crop_s / cfg.frame_s)
    t0 = time.perf_counter()
    bar = tqdm(total=steps, initial=step, desc="onset net")
    while step < steps:
        lr_now = lr * 0.5 * (1 + math.cos(math.pi * step / steps)) * min(1.0, (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = lr_now
        x, y = _batch(data, crop, batch_size, gen)
        logits = net(x)
        # positives are ~2 % of frames: weight them 4x so the rare bump is not averaged away
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=1.0 + 3.0 * y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if step % checkpoint_every == 0 or step == steps:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step, "losses": losses}, ckpt)
    bar.close()
    train_s = time.perf_counter() - t0
    val = [true_audio(s) for s in tqdm(list(SPLITS["val"])[:val_clips], desc="val clips (true audio)")]
    choice = choose_threshold(LearnedOnsetDetector(net, cfg), val)
    detector = LearnedOnsetDetector(net, OnsetNetConfig(threshold=choice["threshold"]))
    detector.save(out)
    report = {"train_clips": train_clips, "val_clips": val_clips, "steps": steps, "resumed_from_step": resumed_from,
              "batch_size": batch_size, "train_s_this_call": train_s, "final_loss": float(np.mean(losses[-100:])), **choice}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m frieren_rt.eval.onset_fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", type=Path, default=DEFAULT_FILE, help="weights file (default: the shipped one)")
    p.add_argument("--train-clips", type=int, default=1500, help="TRUE train-split clips to fit on")
    p.add_argument("--val-clips", type=int, default=60, help="TRUE validation clips that choose the threshold")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--checkpoint-every", type=int, default=250)
    args = p.parse_args(argv)
    r = fit(args.out, train_clips=args.train_clips, val_clips=args.val_clips, steps=args.steps,
            batch_size=args.batch_size, checkpoint_every=args.checkpoint_every)
    t, m = r["true"], r["mismatched"]
    print(f"threshold {r['threshold']}: TRUE validation audio F1 {t['f1']:.3f} (precision {t['precision']:.3f}, "
          f"recall {t['recall']:.3f}, mean |offset| {t['mean_abs_offset_ms']:.1f} ms, false onsets in silence "
          f"{t['false_onset_rate_in_silence']:.3f}); mismatched clip F1 {m['f1']:.3f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
