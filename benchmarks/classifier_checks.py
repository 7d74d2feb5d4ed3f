"""Is the class accuracy the audio stack loses real, or the classifier's quirk? The evaluation's classifier
(frieren_rt/eval/classify.py: a linear model over 48 log-mel band statistics of each event's 0.5 s onset
snippet, fitted on TRUE train-split audio) next to variants of it, each fitted the same way, on the same audio:

- ``full``: the evaluation's own (bands up to 11.025 kHz, levels floored at -100 dB);
- ``0-8kHz``: bands up to 8 kHz only, the product mel's top (issue 3), so nothing a vocoder must invent counts;
- ``floor-60``: band levels floored at -60 dB, so a vocoder's quiet noise floor where the true audio is
  digitally silent does not count;
- ``aisfx``: the pretrained aiSFX network's embeddings (trained by no one here) in place of the band statistics.

Scored on the split's true audio, on it low-passed at 8 kHz, on a mismatched clip's true audio (the floor), on
the true audio through the streaming audio stack (mel -> VAE -> student vocoder) and on the shipped distilled
model's generated audio (streaming path), pooled over events.

    python benchmarks/classifier_checks.py --split test --clips 24
    python benchmarks/classifier_checks.py --split val --clips 30

Needs the asset cache (``frieren-rt assets fetch``). About 5 minutes for 24 clips on a 2-core CPU.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.eval.classify import AisfxFeatures, LogMelStats, class_accuracy, fit_event_classifier
from frieren_rt.eval.runner import reconstruct, split_clips
from frieren_rt.eval.truth import true_audio
from frieren_rt.pipeline import FoleyPipeline, GenerationOptions
from frieren_rt.world.config import SPLITS


@dataclass(frozen=True, kw_only=True)
class Floored(LogMelStats):
    """LogMelStats with band levels floored at ``floor_db`` instead of -100 dB."""

    floor_db: float = -60.0

    def band_db(self, snippets: np.ndarray, sample_rate: int) -> torch.Tensor:
        return super().band_db(snippets, sample_rate).clamp_min(self.floor_db)


def low_pass(audio: np.ndarray, cutoff_hz: float, sample_rate: int = 22050) -> np.ndarray:
    """Brick-wall low-pass (FFT bins above ``cutoff_hz`` zeroed): (S,) -> (S,)."""
    spec = np.fft.rfft(audio)
    spec[np.fft.rfftfreq(len(audio), 1 / sample_rate) > cutoff_hz] = 0
    return np.fft.irfft(spec, len(audio)).astype(np.float32)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--split", choices=list(SPLITS), default="test")
    p.add_argument("--clips", type=int, default=24, help="clips of the split (10 s each; default 24)")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    train = [true_audio(s) for s in tqdm(list(SPLITS["train"])[:200], desc="classifier data")]
    judges = {"full": LogMelStats(), "0-8kHz": LogMelStats(f_max=8000.0), "floor-60": Floored(floor_db=-60.0),
              "aisfx": AisfxFeatures()}
    classifiers = {k: fit_event_classifier(train, f) for k, f in tqdm(judges.items(), desc="fit")}
    clips = split_clips(args.split, args.clips)
    pipe = FoleyPipeline.from_dir(args.weights, GenerationOptions(variant="distill", steps=1, vocoder="student",
                                                                   decoder="streaming"))
    audios: dict[str, list[np.ndarray]] = {"true": [c.audio for c in clips],
                                           "true, low-passed at 8 kHz": [low_pass(c.audio, 8000) for c in clips],
                                           "mismatched clip": [clips[(i + 1) % len(clips)].audio
                                                               for i in range(len(clips))],
                                           "true through VAE + student": [], "generated (distill, streaming)": []}
    for c in tqdm(clips, desc="stack + generate"):
        audios["true through VAE + student"].append(reconstruct(c.audio, pipe.vocoder, pipe.vae))
        audios["generated (distill, streaming)"].append(
            pipe.generate(c.frames, np.arange(len(c.frames)) / c.fps, c.duration, seed=c.seed))
    n = sum(len(c.events) for c in clips)
    print(f"\n{args.split}, {len(clips)} clips, {n} events: class accuracy\n| classifier | "
          + " | ".join(audios) + " | generated / true |\n|" + "---|" * (len(audios) + 2))
    for name, classifier in classifiers.items():
        acc = {k: sum(class_accuracy(classifier, a, c.events) * len(c.events)
                      for a, c in zip(v, clips, strict=True) if c.events) / n for k, v in audios.items()}
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in acc.values())
              + f" | {acc['generated (distill, streaming)'] / acc['true']:.2f} |")


if __name__ == "__main__":
    main()
