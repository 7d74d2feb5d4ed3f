"""What the vector field does with its condition: onset sync and false onsets in silence on world clips when
the event detector's posteriors are replaced by the true events ("oracle") or the ImageNet features by their
clip mean ("noimg"), against the features as computed ("normal"). MODEL_CARD.md, "What was tried".

    python benchmarks/condition_probe.py runs/small7 --variant base --steps 1 --cfg 4.5 --clips 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

MODES = ("normal", "oracle", "noimg", "oracle_noimg")
IMAGE_DIM = 1280  # MobileNetV2 pooled features lead each frame's vector (frieren_rt.data.cache)


def probe_features(features: torch.Tensor, events, mode: str, classes: tuple[str, ...]) -> torch.Tensor:
    """(F, D) frame features [image | motion | detector embedding | posteriors (K + 1)] changed per ``mode``."""
    f = features.clone()
    k = len(classes)
    if mode.startswith("oracle"):
        post = torch.zeros(len(f), k + 1)
        post[:, k] = 1.0
        for e in events:
            if e.frame < len(f):
                post[e.frame] = 0.0
                post[e.frame, classes.index(e.cls)] = 1.0
        f[:, -(k + 1):] = post
    if mode.endswith("noimg"):
        f[:, :IMAGE_DIM] = f[:, :IMAGE_DIM].mean(0, keepdim=True)
    return f


def main() -> None:
    from frieren_rt.eval.onsets import detect_onsets, onset_sync, pool_sync  # noqa: PLC0415
    from frieren_rt.eval.runner import split_clips  # noqa: PLC0415
    from frieren_rt.pipeline import FoleyPipeline, GenerationOptions  # noqa: PLC0415
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415
    from frieren_rt.world.events import EVENT_CLASSES  # noqa: PLC0415

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="a run folder or weights folder whose model reads detector features")
    p.add_argument("--variant", default="base", help="model file: base | reflow | distill | single (default base)")
    p.add_argument("--steps", type=int, default=1, help="Euler steps (default 1)")
    p.add_argument("--cfg", type=float, default=4.5, help="guidance scale (default 4.5)")
    p.add_argument("--clips", type=int, default=8, help="validation clips (default 8)")
    p.add_argument("--split", default="val", choices=sorted(SPLITS), help="world split (default val)")
    p.add_argument("--modes", default="normal,oracle,noimg", help=f"comma list of {', '.join(MODES)}")
    args = p.parse_args()
    modes = args.modes.split(",")
    if bad := [m for m in modes if m not in MODES]:
        p.error(f"unknown mode(s) {bad}; choose from {MODES}")
    torch.set_num_threads(1)
    options = GenerationOptions(variant=args.variant, steps=args.steps, cfg=args.cfg)
    pipe = FoleyPipeline.from_dir(args.run, options)
    if not pipe.model.cfg.event_dim:
        p.error(f"{args.run}: this model reads no event-detector features")
    clips = split_clips(args.split, args.clips, progress=False)
    computed = [pipe.frame_features(c.frames) for c in clips]
    for mode in modes:
        syncs = []
        for clip, feats in zip(clips, computed, strict=True):
            fixed = probe_features(feats, clip.events, mode, EVENT_CLASSES)
            pipe.frame_features = lambda _frames, fixed=fixed: fixed  # this clip's probed features
            audio = pipe.generate(clip.frames, np.arange(len(clip.frames)) / clip.fps, clip.duration, seed=clip.seed)
            syncs.append(onset_sync(detect_onsets(audio), clip.events, clip.silent_spans))
        r = pool_sync(syncs)
        print(f"{mode:13s} F1 {r['f1']:.3f}  precision {r['precision']:.2f}  recall {r['recall']:.2f}  "
              f"false onsets in silence {r['false_onset_rate_in_silence']:.3f}", flush=True)


if __name__ == "__main__":
    main()
