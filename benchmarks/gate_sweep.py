"""Event-gate settings against the eval metrics (MODEL_CARD.md, "The event gate").

Generates each clip once without the gate, then applies each setting with the pipeline's own EventGate (the
gain the generator multiplies in) and scores it with frieren_rt.eval.runner's metrics.

    python benchmarks/gate_sweep.py --weights runs/small11 --clips 30 --split val
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.eval.runner import _metrics, _summarise, eval_tools, split_clips, true_references
from frieren_rt.pipeline import FoleyPipeline, GenerationOptions
from frieren_rt.vision.events import feature_posteriors
from frieren_rt.windowing.gate import EventGate, GateConfig, class_hold_times
from run_args import add_run_args  # benchmarks/run_args.py, beside this script
from frieren_rt.world.sound_pool import load_pool, sound_durations


def settings(classes: tuple[str, ...]) -> dict[str, tuple[float, ...] | float | None]:
    """name -> None (no gate), one hold (s) or a per-class hold table."""
    d30 = sound_durations(load_pool(), "train", -30.0)
    return {"none": None, "one hold 0.25 s": 0.25, "one hold 0.4 s": 0.4, "one hold 0.6 s": 0.6,
            "per class, median": class_hold_times(d30, classes, quantile=0.5),
            "per class, 75th percentile": class_hold_times(d30, classes, quantile=0.75)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--threshold", type=float, default=None,
                    help="P(event) that opens the gate (default: the weights folder's gate.json, as the pipeline "
                         "gates; 0.5 without one)")
    ap.add_argument("--pre", type=float, default=0.03, help="seconds open before an event frame (default 0.03)")
    ap.add_argument("--class-confidence", type=float, default=0.0,
                    help="min share of P(event) in the most likely class for a frame to open the gate (default 0)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tools = eval_tools()
    clips = split_clips(args.split, args.clips)
    _, true_emb, true_post = true_references(clips, tools)
    pipe = FoleyPipeline.from_dir(args.weights, GenerationOptions(variant=args.variant, steps=1, event_gate=False))
    classes = tuple(pipe.features.detector.cfg.classes)
    threshold = pipe.gate.threshold if args.threshold is None else args.threshold
    audio, posts = [], []
    for c in tqdm(clips, desc="generate"):
        audio.append(pipe.generate(c.frames, np.arange(len(c.frames)) / c.fps, c.duration, seed=c.seed))
        posts.append(feature_posteriors(pipe.frame_features(c.frames), len(classes)))  # (F, K + 1)
    print("| gate | onset F1 | false onsets in silence | onset F1, learned | class acc | FD | KL |\n"
          "|---|---|---|---|---|---|---|")
    for name, hold in settings(classes).items():
        per = []
        for a, p, c in zip(audio, posts, clips, strict=True):
            if hold is not None:  # the pipeline's own gate, on the ungated audio (sample 0 at frame 0)
                gate = EventGate(GateConfig(threshold=threshold, pre_s=args.pre,
                                            min_class_confidence=args.class_confidence,
                                            **({"class_hold_s": hold} if isinstance(hold, tuple) else
                                               {"hold_s": hold})), lambda post: post)
                frame_times = torch.arange(len(p), dtype=torch.float64) / c.fps
                a = gate.apply(torch.from_numpy(a), 0.0, pipe.sample_rate, gate.events(frame_times, p)).numpy()
            per.append(_metrics(a, c, tools))
        m = _summarise(per, true_emb, true_post)
        print(f"| {name} | {m['onset_f1']:.3f} | {m['false_onsets_in_silence']:.3f} | {m['learned_onset_f1']:.3f} | {m['class_acc']:.3f} | "
              f"{m['fd']:.1f} | {m['kl']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
