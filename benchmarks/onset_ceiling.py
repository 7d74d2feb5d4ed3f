"""How much of the onset-F1 target the eval's onset detectors allow: their misses on TRUE audio (or on true
audio through the streaming audio stack, ``--through-stack``), and a grid of the flux detector's settings
(MODEL_CARD.md, "Targets").

On the true world audio of a split: pooled onset F1 / precision / recall at +-40 ms, the missed true onsets by
class and by the gap to the previous event, then (``--grid``) the best detector settings found by a grid over
the novelty and peak-picking parameters, each with the F1 it gives a mismatched clip's audio (the floor: a
setting that fires everywhere would raise both).

    python benchmarks/onset_ceiling.py --split val --clips 60 --grid
    python benchmarks/onset_ceiling.py --split test --clips 24 --detector learned --through-stack
"""

from __future__ import annotations

import argparse
import collections
import itertools
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.eval.onsets import (
    OnsetConfig,
    detect_onsets,
    match_onsets,
    onset_novelty,
    onset_sync,
    pick_peaks,
    pool_sync,
    reference_onsets,
)
from frieren_rt.eval.truth import true_audio
from frieren_rt.world.config import SPLITS

GAP_BINS = ((0.0, 0.2), (0.2, 0.5), (0.5, float("inf")))  # seconds since the previous event's onset


def misses(clips, detect, audios=None) -> tuple[dict, collections.Counter, collections.Counter]:
    """Pooled sync of ``detect`` (audio (S,) -> onset seconds) on each clip's audio (``audios``, default the
    true audio); (missed, total) per class and per gap bin."""
    by_class: collections.Counter = collections.Counter()
    by_gap: collections.Counter = collections.Counter()
    rows = []
    for i, c in enumerate(clips):
        det = detect(c.audio if audios is None else audios[i])
        rows.append(onset_sync(det, c.events, c.silent_spans))
        ref = reference_onsets(c.events)
        matched = {r for r, _ in match_onsets(ref, det, 0.040)}
        for i, t in enumerate(ref):
            cls = min(c.events, key=lambda e, t=t: abs(e.time - t)).cls
            gap = t - ref[i - 1] if i else 1e9  # the first onset of a clip: no previous event
            b = next(k for k, (lo, hi) in enumerate(GAP_BINS) if lo <= gap < hi)
            by_class[(cls, "all")] += 1
            by_gap[(b, "all")] += 1
            if i not in matched:
                by_class[(cls, "miss")] += 1
                by_gap[(b, "miss")] += 1
    return pool_sync(rows), by_class, by_gap


def grid(clips, top: int) -> list[tuple]:
    """(true F1, precision, recall, mismatched F1, mean offset ms, settings) for every grid point, best first."""
    novelty_settings = [{}, {"lag": 2}, {"n_bands": 24}, {"n_fft": 1024}, {"floor_db": -60.0}, {"max_filter": 1}]
    picking = list(itertools.product([0.05, 0.08, 0.12, 0.2], [2.0, 3.0, 4.0, 6.0], [3.0, 5.0, 8.0], [0.15, 0.3]))
    shifted = clips[1:] + clips[:1]
    out = []
    for nv in tqdm(novelty_settings, desc="grid"):
        base = replace(OnsetConfig(), **nv)
        novs = [onset_novelty(c.audio, base) for c in clips]
        for gap, delta, floor, mean_w in picking:
            cfg = replace(base, min_gap_s=gap, delta=delta, floor=floor, mean_window_s=mean_w)
            dets = [np.maximum(pick_peaks(v, cfg) * cfg.frame_s + cfg.offset_s, 0.0) for v in novs]
            true = pool_sync([onset_sync(d, c.events, c.silent_spans) for d, c in zip(dets, clips, strict=True)])
            mis = pool_sync([onset_sync(d, c.events, c.silent_spans) for d, c in zip(dets, shifted, strict=True)])
            out.append((true["f1"], true["precision"], true["recall"], mis["f1"], true["mean_offset_ms"],
                        {**nv, "min_gap_s": gap, "delta": delta, "floor": floor, "mean_window_s": mean_w}))
    return sorted(out, key=lambda r: -r[0])[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="val", choices=list(SPLITS), help="world split (default: val)")
    ap.add_argument("--clips", type=int, default=60, help="clips of the split (default 60)")
    ap.add_argument("--grid", action="store_true", help="also search the detector's settings (about 2 min)")
    ap.add_argument("--top", type=int, default=10, help="grid rows to print (default 10)")
    ap.add_argument("--detector", choices=["flux", "learned"], default="flux",
                    help="flux: onsets.py with its shipped settings (default); learned: onset_net.py's shipped fit")
    ap.add_argument("--through-stack", action="store_true",
                    help="score true audio after the shipped streaming stack (mel -> VAE -> student vocoder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    clips = [true_audio(s) for s in tqdm(list(SPLITS[args.split])[: args.clips], desc="true audio")]
    if args.detector == "learned":
        from frieren_rt.eval.onset_net import LearnedOnsetDetector  # noqa: PLC0415

        detect = LearnedOnsetDetector.load()
    else:
        def detect(audio):  # noqa: ANN001, ANN202
            return detect_onsets(audio, OnsetConfig())
    audios, what = None, "true audio"
    if args.through_stack:
        from frieren_rt.eval.runner import reconstruct  # noqa: PLC0415
        from frieren_rt.pipeline import FoleyPipeline, GenerationOptions  # noqa: PLC0415

        pipe = FoleyPipeline.from_dir(None, GenerationOptions(vocoder="student"))
        audios = [reconstruct(c.audio, pipe.vocoder, pipe.vae) for c in tqdm(clips, desc="through the stack")]
        what = "true audio through the streaming VAE and student vocoder"
    pooled, by_class, by_gap = misses(clips, detect, audios)
    print(f"{what}, {args.split} {args.clips} clips, {args.detector} detector: F1 {pooled['f1']:.3f}, "
          f"precision {pooled['precision']:.3f}, recall {pooled['recall']:.3f}\n")
    print("| previous event | true onsets | missed |\n|---|---|---|")
    for b, (lo, hi) in enumerate(GAP_BINS):
        n, m = by_gap[(b, "all")], by_gap[(b, "miss")]
        print(f"| {lo:.1f}-{hi:.1f} s before | {n} | {m} ({m / max(n, 1):.0%}) |")
    print("\n| class | true onsets | missed |\n|---|---|---|")
    for cls in sorted({k[0] for k in by_class}):
        n, m = by_class[(cls, "all")], by_class[(cls, "miss")]
        print(f"| {cls} | {n} | {m} ({m / max(n, 1):.0%}) |")
    if args.grid:
        print("\n| true F1 | precision | recall | mismatched F1 | mean offset ms | settings |\n|---|---|---|---|---|---|")
        for f1, p, r, mis, off, s in grid(clips, args.top):
            print(f"| {f1:.3f} | {p:.3f} | {r:.3f} | {mis:.3f} | {off:+.1f} | {s} |")


if __name__ == "__main__":
    main()
