"""Visual event detectors compared on one split (MODEL_CARD.md, "What was tried"): onset F1 and class accuracy
of their peaks (frieren_rt.vision.events.onset_scores, +-1 frame), and their false peaks: local maxima of
P(event) above the threshold more than 3 frames (100 ms) from any true event frame, with the peak P and class
confidence of true and false peaks. The event gate opens on every peak, so each false peak can let a whole
generated sound into a silent stretch.

    python benchmarks/detector_scores.py frieren_rt/weights/detector.safetensors runs/NAME/detector.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from frieren_rt.train.detector import crop_logits, render_detector_clips
from frieren_rt.vision.events import EventDetector, onset_peaks, onset_scores
from frieren_rt.world.config import SPLITS


def peak_table(posteriors: list[torch.Tensor], labels: list[torch.Tensor], threshold: float) -> dict[str, list]:
    """{"true" | "false": [(peak P(event), class confidence = max class P / P(event))]} over the clips."""
    out: dict[str, list] = {"true": [], "false": []}
    for q, lab in zip(posteriors, labels, strict=True):
        events = torch.nonzero(lab < q.shape[-1] - 1).flatten().numpy()
        for j in onset_peaks(1.0 - q[:, -1], threshold):
            p = 1.0 - float(q[j, -1])
            near = len(events) > 0 and np.min(np.abs(events - j)) <= 3
            out["true" if near else "false"].append((p, float(q[j, :-1].max()) / max(p, 1e-9)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("detectors", type=Path, nargs="+", help="detector.safetensors files")
    ap.add_argument("--split", default="val", choices=list(SPLITS), help="world split (default: val)")
    ap.add_argument("--clips", type=int, default=30, help="clips of the split (default 30)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.7], help="P(event) thresholds")
    args = ap.parse_args()
    torch.set_num_threads(2)
    models = {p: EventDetector.from_pretrained(p) for p in args.detectors}
    first = next(iter(models.values())).cfg
    frames, labels = render_detector_clips(list(SPLITS[args.split])[: args.clips], first, 10.0, desc=args.split)
    print("| detector | threshold | onset F1 | class acc | false peaks | true / false peak P (median) "
          "| true / false class confidence (median) |\n|---|---|---|---|---|---|---|")
    for path, model in models.items():
        with torch.no_grad():
            post = [crop_logits(model, clip, 0, clip.shape[0]).softmax(-1) for clip in frames]
        for th in args.thresholds:
            s = onset_scores(post, list(labels), threshold=th)
            t = peak_table(post, list(labels), th)
            med = {k: np.median(np.asarray(v), axis=0) if v else (float("nan"),) * 2 for k, v in t.items()}
            print(f"| {path} | {th} | {s['onset_f1']:.3f} | {s['class_acc']:.3f} | {len(t['false'])} | "
                  f"{med['true'][0]:.2f} / {med['false'][0]:.2f} | {med['true'][1]:.2f} / {med['false'][1]:.2f} |")


if __name__ == "__main__":
    main()
