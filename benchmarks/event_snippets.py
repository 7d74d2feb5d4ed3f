"""Where does a generated sound lose its class? Per class, over the test split: the class classifier's accuracy
on the true and on the generated audio (frieren_rt/eval/classify.py: the 0.5 s snippet from each true onset),
how much of that snippet is silent in the generated audio while the true audio still sounds there, and the
share of the class's events whose onset the evaluation's learned detector finds within +-40 ms (EBU R37), per
event rather than per merged reference onset, in the true and in the generated audio.

A frame (the classifier's own LogMelStats bands: 512-point STFT, 10 ms hop, 48 HTK mel bands) is "silent" when its
band-mean level is under -70 dB; the true world audio is either sounding or digitally silent (-100 dB), so
"cut" = frames silent in the generated snippet but not in the true one, as a share of the snippet. A field that
ends sounds early (MODEL_CARD.md, "What was tried": tail_energy.py) shows here as a cut share that grows
with the time since the onset; the profile row gives it per 50 ms. "Length" is how long the snippet stays within
20 dB of its own loudest frame (median per class, seconds; at most the snippet's 0.5 s), in the true and the
generated audio: a sound that fades too soon without falling silent shows there.

    python benchmarks/event_snippets.py --clips 24                      # shipped distilled model, streaming
    python benchmarks/event_snippets.py --row 'single:1#engine'          # as the live engine streams
    python benchmarks/event_snippets.py --weights DIR --row single:1 --no-gate
    python benchmarks/event_snippets.py --true-through vae                # the streaming audio stack on true audio

Needs the asset cache (``frieren-rt assets fetch``).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.eval.classify import LogMelStats, event_snippets, fit_event_classifier
from frieren_rt.eval.onset_net import LearnedOnsetDetector
from frieren_rt.eval.runner import HopGeometry, parse_row, reconstruct, row_geometry, row_options, split_clips
from frieren_rt.eval.truth import true_audio
from frieren_rt.pipeline import FoleyPipeline, GenerationOptions
from frieren_rt.world.config import SPLITS
from frieren_rt.world.events import EVENT_CLASSES

SILENT_DB = -70.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--split", choices=list(SPLITS), default="test")
    p.add_argument("--clips", type=int, default=24, help="clips of the split (10 s each; default 24)")
    p.add_argument("--row", default="distill:1", help="VARIANT:STEPS[:CFG][@VOCODER][#engine|#generate], as "
                   "frieren-rt eval --row (default distill:1, at eval's 0.2 s hop without look-ahead)")
    p.add_argument("--hop", type=float, default=None, help="the hop in seconds of a row without '#' (default: "
                   "eval's 0.2)")
    p.add_argument("--no-gate", action="store_true", help="generate without the event gate")
    p.add_argument("--true-through", choices=["vocoder", "vae"], default=None,
                   help="instead of generating: the TRUE audio's mel through the row's vocoder (and VAE), the "
                   "audio stack's per-class ceiling")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def frame_levels(snippets: np.ndarray, sample_rate: int) -> torch.Tensor:
    """(E, L) snippets -> (E, T) band-mean level in dB per 10 ms frame (floor -100 dB), as the classifier's
    LogMelStats features see them."""
    return LogMelStats().band_db(snippets, sample_rate).mean(1)


def cut_frames(generated: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """(E, T) levels each -> (E, T) float: 1 where the generated frame is silent and the true one is not."""
    return ((generated < SILENT_DB) & (true >= SILENT_DB)).float()


def sound_length(levels: torch.Tensor, within_db: float = 20.0, frame_s: float = 0.01) -> torch.Tensor:
    """(E, T) frame levels -> (E,) seconds: how many frames lie within ``within_db`` of the snippet's loudest."""
    return (levels > levels.amax(1, keepdim=True) - within_db).float().sum(1) * frame_s


def per_class(values: torch.Tensor, labels: list[str], reduce: str = "mean") -> dict[str, float]:
    """(E,) -> the mean (or ``reduce`` "median") per class, in EVENT_CLASSES order, for the classes present."""
    return {c: float(getattr(values[[i for i, lab in enumerate(labels) if lab == c]], reduce)())
            for c in EVENT_CLASSES if c in labels}


def onsets_found(detected: np.ndarray, events: list, tolerance_s: float = 0.040) -> list[bool]:
    """Per event: is any detected onset (seconds) within ``tolerance_s`` of its time?"""
    return [bool(np.any(np.abs(np.asarray(detected) - e.time) <= tolerance_s)) for e in events]


def heard_as(predicted: list[str], labels: list[str], cls: str) -> str:
    """The class most often predicted for the events of ``cls``, with its share (e.g. "impact 0.45")."""
    mine = [p for p, lab in zip(predicted, labels, strict=True) if lab == cls]
    top = max(set(mine), key=mine.count)
    return f"{top} {mine.count(top) / len(mine):.2f}"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    row = parse_row(args.row)
    classifier = fit_event_classifier([true_audio(s) for s in tqdm(list(SPLITS["train"])[:200],
                                                                    desc="classifier data")])
    clips = [c for c in split_clips(args.split, args.clips) if c.events]
    hop = GenerationOptions.hop_s if args.hop is None else args.hop
    geom = row_geometry(row, HopGeometry(hop_s=hop, lookahead=0, revise_lookahead=False))
    options = replace(row_options(row, geom), event_gate=not args.no_gate)
    pipe = FoleyPipeline.from_dir(args.weights, options)
    detector = LearnedOnsetDetector.load()
    labels, pred_true, pred_gen, cut, found_true, found_gen, lengths = [], [], [], [], [], [], []
    for clip in tqdm(clips, desc=args.row):
        if args.true_through is None:
            audio = pipe.generate(clip.frames, np.arange(len(clip.frames)) / clip.fps, clip.duration,
                                  seed=clip.seed)
        else:
            audio = reconstruct(clip.audio, pipe.vocoder, pipe.vae if args.true_through == "vae" else None)
        levels = [frame_levels(event_snippets(a, clip.events, clip.sample_rate, classifier.snippet_s),
                               clip.sample_rate) for a in (audio, clip.audio)]
        cut.append(cut_frames(*levels))
        lengths.append(torch.stack([sound_length(lv) for lv in levels], 1))  # (E, 2): generated, true
        pred_true += classifier.predict(clip.audio, clip.events)
        pred_gen += classifier.predict(audio, clip.events)
        labels += [e.cls for e in clip.events]
        found_true += onsets_found(detector(clip.audio), clip.events)
        found_gen += onsets_found(detector(audio), clip.events)
    cut_t = torch.cat(cut)
    true_t, gen_t = (torch.tensor([p == lab for p, lab in zip(pred, labels, strict=True)], dtype=torch.float32)
                     for pred in (pred_true, pred_gen))
    share = cut_t.mean(1)
    acc_true, acc_gen, cut_c = per_class(true_t, labels), per_class(gen_t, labels), per_class(share, labels)
    on_true, on_gen = (torch.tensor(f, dtype=torch.float32) for f in (found_true, found_gen))
    on_true_c, on_gen_c = per_class(on_true, labels), per_class(on_gen, labels)
    length = torch.cat(lengths)
    len_gen_c, len_true_c = per_class(length[:, 0], labels, "median"), per_class(length[:, 1], labels, "median")
    what = args.row if args.true_through is None else f"true audio through the {args.true_through} of {args.row}"
    print(f"\n{args.split}, {len(clips)} clips with events, {len(labels)} events, {what}"
          f"{' (no gate)' if args.no_gate else ''}\n| class | events | class acc, true | class acc, generated "
          "| generated heard as | snippet cut | length, true | length, generated | onset found, true "
          "| onset found, generated |\n|---|---|---|---|---|---|---|---|---|---|")
    for c in acc_true:
        print(f"| {c} | {labels.count(c)} | {acc_true[c]:.2f} | {acc_gen[c]:.2f} | "
              f"{heard_as(pred_gen, labels, c)} | {cut_c[c]:.2f} | {len_true_c[c]:.2f} | {len_gen_c[c]:.2f} | "
              f"{on_true_c[c]:.2f} | {on_gen_c[c]:.2f} |")
    print(f"| all | {len(labels)} | {float(true_t.mean()):.3f} | {float(gen_t.mean()):.3f} | | "
          f"{float(share.mean()):.3f} | {float(length[:, 1].median()):.2f} | {float(length[:, 0].median()):.2f} | "
          f"{float(on_true.mean()):.3f} | {float(on_gen.mean()):.3f} |")
    profile = cut_t.unfold(1, 5, 5).mean(-1).mean(0)  # (T // 5,) per 50 ms
    print("cut share per 50 ms after the onset:", " ".join(f"{v:.2f}" for v in profile.tolist()))


if __name__ == "__main__":
    main()
