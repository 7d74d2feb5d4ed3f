"""Stage ``detector``: train the visual event detector (frieren_rt.vision.events) on world clips' event lists.

Clips are rendered once into memory at the detector's input size (0.2 s per 10 s clip here); each step takes
``batch_size`` clips x ``DETECTOR_FRAMES`` consecutive frames (plus the frame before, for the difference).
Labels: the event's class on the frame whose picture first shows its cause (world/events.py), "no event"
elsewhere. Runs before ``cache``, which stores the detector's features beside the motion cells.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from frieren_rt.train.loop import TrainState, train_loop
from frieren_rt.vision.events import DetectorConfig, EventDetector, detector_loss, onset_scores

__all__ = ["DETECTOR_FRAMES", "render_detector_clips", "stage_detector"]

DETECTOR_FRAMES = 48  # frames per training crop (1.6 s at 30 fps: the flow window)


def render_detector_clips(seeds: list[int], cfg: DetectorConfig, duration: float, *, desc: str
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``seeds`` -> frames (S, T, 3, h, w) uint8 area-averaged to the detector size, labels (S, T) long."""
    from frieren_rt.world import render_clip  # noqa: PLC0415

    frames, labels = [], []
    for seed in tqdm(seeds, desc=desc, unit="clip"):
        clip = render_clip(int(seed), duration=duration)
        x = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
        frames.append(F.adaptive_avg_pool2d(x, (cfg.height, cfg.width)).round().to(torch.uint8))
        y = torch.full((x.shape[0],), len(cfg.classes), dtype=torch.long)
        for ev in clip.events:
            if ev.frame < len(y):
                y[ev.frame] = cfg.classes.index(ev.cls)
        labels.append(y)
    return torch.stack(frames), torch.stack(labels)


def crop_logits(model: EventDetector, clip: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Logits (length, K + 1) for frames start..start+length-1 of one clip (T, 3, h, w), with its previous frame."""
    previous = clip[start - 1] if start > 0 else None
    return model(clip[start : start + length], previous)[0]


@torch.no_grad()
def evaluate_detector(model: EventDetector, frames: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    model.eval()
    posteriors = [crop_logits(model, clip, 0, clip.shape[0]).softmax(-1) for clip in frames]
    model.train()
    return onset_scores(posteriors, list(labels))


def stage_detector(run: Path, cfg: Any, time_budget_s: float | None = None) -> dict[str, Any]:
    from frieren_rt.train.stages import _optimizer, _sgd_step  # noqa: PLC0415
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415
    from frieren_rt.world.events import EVENT_CLASSES  # noqa: PLC0415

    dcfg = DetectorConfig(classes=EVENT_CLASSES, **({"widths": cfg.detector_widths} if cfg.detector_widths else {}))
    train_seeds = list(SPLITS["train"])[: cfg.train_clips]
    val_seeds = list(SPLITS["val"])[: cfg.val_clips]
    frames, labels = render_detector_clips(train_seeds, dcfg, cfg.clip_seconds, desc="detector: render train")
    model = EventDetector(dcfg)
    params = list(model.parameters())
    opt = _optimizer(params, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    state = TrainState(step=0, modules={"model": model}, optimizers={"opt": opt}, generator=gen)
    length = min(DETECTOR_FRAMES, frames.shape[1] - 1)

    def step(i: int) -> dict[str, float]:
        clips = torch.randint(0, frames.shape[0], (cfg.batch_size,), generator=gen)
        starts = torch.randint(1, frames.shape[1] - length + 1, (cfg.batch_size,), generator=gen)
        logits = torch.cat([crop_logits(model, frames[c], int(s), length) for c, s in zip(clips, starts)])
        target = torch.cat([labels[c, s : s + length] for c, s in zip(clips, starts)])
        loss = detector_loss(logits, target, cfg.detector_none_weight)
        _sgd_step(loss, opt, params, cfg, i)
        return {"loss": loss.item()}

    train_loop(step, state, total_steps=cfg.steps, folder=run / "detector", desc="detector",
               time_budget_s=time_budget_s)
    if state.step < cfg.steps:
        return {"done": False, "step": state.step}
    frames = None  # drop the rendered training clips (about 20 GiB at peak) before the validation ones
    val_frames, val_labels = render_detector_clips(val_seeds, dcfg, cfg.clip_seconds, desc="detector: render val")
    scores = evaluate_detector(model, val_frames, val_labels)
    model.eval().save(run / "detector.safetensors", stage="detector", steps=str(cfg.steps))
    return {"done": True, **{f"val_{k}": round(v, 4) for k, v in scores.items()}}
