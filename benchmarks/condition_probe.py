"""What the vector field does with its condition: onset sync and false onsets in silence on world clips when
the event detector's posteriors are replaced by the true events ("oracle") or the ImageNet features by their
clip mean ("noimg"), against the features as computed ("normal"). MODEL_CARD.md, "What was tried".

    python benchmarks/condition_probe.py runs/small7 --variant base --steps 1 --cfg 4.5 --clips 8
    python benchmarks/condition_probe.py frieren_rt/weights --row 'single:1#engine' --clips 24 --split test --judges

``--row`` runs an evaluation row (frieren-rt eval's spec, e.g. a product's geometry) in place of --variant /
--steps / --cfg; ``--judges`` adds what frieren-rt eval judges with beside the flux detector: the learned onset
detector and the class accuracy of the classifier fitted on true audio, so the class bound the detector's
posteriors set can be read off (the oracle row's class accuracy against the normal one's).
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
    from frieren_rt.eval.classify import class_accuracy  # noqa: PLC0415
    from frieren_rt.eval.onsets import detect_onsets, onset_sync, pool_sync  # noqa: PLC0415
    from frieren_rt.eval.runner import eval_tools, parse_row, row_geometry, row_options, split_clips  # noqa: PLC0415
    from frieren_rt.pipeline import FoleyPipeline, GenerationOptions, HopGeometry  # noqa: PLC0415
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
    p.add_argument("--row", default=None, help="an evaluation row (frieren-rt eval --row), e.g. 'single:1#engine'; "
                                               "replaces --variant, --steps and --cfg")
    p.add_argument("--judges", action="store_true",
                   help="also the learned onset detector and class accuracy (fits the classifier: about a minute)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args()
    modes = args.modes.split(",")
    if bad := [m for m in modes if m not in MODES]:
        p.error(f"unknown mode(s) {bad}; choose from {MODES}")
    torch.set_num_threads(args.threads)
    options = GenerationOptions(variant=args.variant, steps=args.steps, cfg=args.cfg)
    if args.row:
        row = parse_row(args.row)
        options = row_options(row, row_geometry(row, HopGeometry(hop_s=GenerationOptions.hop_s, lookahead=0,
                                                                 revise_lookahead=False)))
    pipe = FoleyPipeline.from_dir(args.run, options)
    if not pipe.model.cfg.event_dim:
        p.error(f"{args.run}: this model reads no event-detector features")
    tools = eval_tools() if args.judges else None
    clips = split_clips(args.split, args.clips, progress=False)
    computed = [pipe.frame_features(c.frames) for c in clips]
    for mode in modes:
        syncs, learned, correct = [], [], 0
        for clip, feats in zip(clips, computed, strict=True):
            fixed = probe_features(feats, clip.events, mode, EVENT_CLASSES)
            pipe.frame_features = lambda _frames, fixed=fixed: fixed  # this clip's probed features
            audio = pipe.generate(clip.frames, np.arange(len(clip.frames)) / clip.fps, clip.duration, seed=clip.seed)
            syncs.append(onset_sync(detect_onsets(audio), clip.events, clip.silent_spans))
            if tools:
                learned.append(onset_sync(tools["onsets"](audio), clip.events, clip.silent_spans))
                correct += class_accuracy(tools["classifier"], audio, clip.events) * len(clip.events)
        r = pool_sync(syncs)
        line = (f"{mode:13s} F1 {r['f1']:.3f}  precision {r['precision']:.2f}  recall {r['recall']:.2f}  "
                f"false onsets in silence {r['false_onset_rate_in_silence']:.3f}")
        if tools:
            n = sum(len(c.events) for c in clips)
            line += f"  learned F1 {pool_sync(learned)['f1']:.3f}  class {correct / max(n, 1):.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
