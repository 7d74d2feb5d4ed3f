"""Which of the class classifier's features does an audio path get wrong? The evaluation's classifier
(frieren_rt/eval/classify.py) reads, per event's 0.5 s onset snippet, 48 mel-band levels in dB summarised as their
means, spreads and maxima over time, plus the level in 8 time slices. For each path this prints its class
accuracy, each feature group's mean shift from the true audio's (in standard deviations of the classifier's
training features; negative: quieter, flatter, shorter), and the accuracy with that one group put back to the
true audio's, which says which property of the sound costs the class. Paths:

- ``--vocoder FILE|hifigan``: the TRUE mel straight into that vocoder (and ``--vae FILE`` before it), with two
  band swaps: the path's audio above ``--split-hz`` (8 kHz, the top of the issue's mel) replaced by the true
  audio's, and the true audio with only the path's band above it;
- ``--row SPEC``: generated audio, as ``frieren-rt eval --row`` (e.g. ``single:1#engine``, the live engine).

    python benchmarks/class_features.py --clips 24 --vocoder frieren_rt/weights/vocoder.safetensors \\
        --row 'single:1#engine'

Needs the asset cache (``frieren-rt assets fetch``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.eval.classify import event_snippets
from frieren_rt.eval.runner import eval_tools, reconstruct, spec_options, split_clips
from frieren_rt.pipeline import FoleyPipeline
from frieren_rt.train.stages import load_vae
from frieren_rt.train.vocoder import load_vocoder
from frieren_rt.world.config import SPLITS


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=list(SPLITS), default="test")
    p.add_argument("--clips", type=int, default=24, help="clips of the split (10 s each; default 24)")
    p.add_argument("--vocoder", nargs="*", default=[], help="'hifigan' and/or student vocoder files (true mel in)")
    p.add_argument("--vae", default=None, help="a VAE file the true mel passes through before each vocoder")
    p.add_argument("--row", nargs="*", default=[], help="generated rows, as frieren-rt eval --row")
    p.add_argument("--weights", type=Path, default=None, help="weights folder of the rows (default: shipped)")
    p.add_argument("--split-hz", type=float, default=8000.0, help="where the band swaps cut (default 8000)")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def split_band(audio: np.ndarray, cut_hz: float, sample_rate: int = 22050) -> tuple[np.ndarray, np.ndarray]:
    """(S,) -> (below, above) ``cut_hz``: a brick-wall split of the whole clip's spectrum; the two sum to it."""
    spec = np.fft.rfft(audio)
    low = np.where(np.fft.rfftfreq(len(audio), 1 / sample_rate) < cut_hz, spec, 0)
    below = np.fft.irfft(low, len(audio)).astype(np.float32)
    return below, (np.asarray(audio, np.float32) - below)


def feature_groups(n_mels: int, n_slices: int) -> dict[str, slice]:
    """LogMelStats' layout: band means, spreads, maxima, then time slices."""
    return {"means": slice(0, n_mels), "spreads": slice(n_mels, 2 * n_mels), "maxima": slice(2 * n_mels, 3 * n_mels),
            "slices": slice(3 * n_mels, 3 * n_mels + n_slices)}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    clf = eval_tools()["classifier"]
    clips = [c for c in split_clips(args.split, args.clips) if c.events]
    labels = torch.tensor([clf.classes.index(e.cls) for c in clips for e in c.events])

    def features(audios: list[np.ndarray]) -> torch.Tensor:
        return torch.cat([clf.features(event_snippets(a, c.events, c.sample_rate, clf.snippet_s), c.sample_rate)
                          for a, c in zip(audios, clips, strict=True)])

    def accuracy(feats: torch.Tensor) -> float:
        return float((clf.linear.probs(feats).argmax(1) == labels).float().mean())

    true = features([c.audio for c in clips])
    paths: dict[str, list[np.ndarray]] = {}
    vae = load_vae(Path(args.vae)) if args.vae else None
    for name in args.vocoder:
        vocoder = load_vocoder(name)
        audios = [reconstruct(c.audio, vocoder, vae) for c in tqdm(clips, desc=name)]
        what = f"true mel -> {'VAE -> ' if vae is not None else ''}{name}"
        paths[what] = audios
        parts = [(split_band(a, args.split_hz), split_band(c.audio, args.split_hz)) for a, c in zip(audios, clips)]
        khz = f"{args.split_hz / 1000:g} kHz"
        paths[f"{what}, true band above {khz}"] = [p[0] + t[1] for p, t in parts]
        paths[f"true audio, {name}'s band above {khz}"] = [t[0] + p[1] for p, t in parts]
    for spec in args.row:
        pipe = FoleyPipeline.from_dir(args.weights, spec_options(spec))
        paths[f"generated, {spec}"] = [pipe.generate(c.frames, np.arange(len(c.frames)) / c.fps, c.duration,
                                                     seed=c.seed) for c in tqdm(clips, desc=spec)]

    groups = feature_groups(clf.features.n_mels, clf.features.n_slices)
    print(f"\n{args.split}, {len(clips)} clips, {len(labels)} events; true audio class accuracy {accuracy(true):.3f}\n"
          "| path | class acc | " + " | ".join(f"{g}: shift (SD), acc with the true {g}" for g in groups)
          + " |\n|---|---|" + "---|" * len(groups))
    for name, audios in paths.items():
        feats = features(audios)
        shift = (feats - true) / clf.linear.std  # (E, F)
        cells = []
        for sl in groups.values():
            fixed = feats.clone()
            fixed[:, sl] = true[:, sl]
            cells.append(f"{float(shift[:, sl].mean()):+.2f}, {accuracy(fixed):.3f}")
        print(f"| {name} | {accuracy(feats):.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
