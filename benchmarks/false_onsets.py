"""Where the generated audio goes wrong (MODEL_CARD.md, "What was tried"): the false onsets in silent
stretches, each traced to the event-gate opening that let it through, and the sound classes as the eval's
classifier hears them (a confusion table beside the true audio's).

For every onset detected in a silent stretch of the generated audio: the last gate event (detector frame with
P(event) >= threshold) at or before it, whether a true event lies within 100 ms of that frame (else: a false
detector peak), and how long before the next true event it came.

    python benchmarks/false_onsets.py --weights runs/NAME --clips 30 --split val
"""

from __future__ import annotations

import argparse
import collections
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.cli.serve import add_gate_arg
from frieren_rt.eval.classify import fit_event_classifier
from frieren_rt.eval.onsets import detect_onsets, onset_sync, pool_sync
from frieren_rt.eval.truth import true_audio
from frieren_rt.pipeline import FoleyPipeline, GenerationOptions
from frieren_rt.world import render_clip
from frieren_rt.world.config import SPLITS
from run_args import add_run_args  # benchmarks/run_args.py, beside this script


def trace(onset: float, gate_times: np.ndarray, event_times: np.ndarray) -> tuple[str, float]:
    """(cause, seconds from the gate opening to the next true event) of one false onset."""
    before = gate_times[gate_times <= onset + 0.03]
    if len(before) == 0:
        return "no detector event before it", float("nan")
    g = float(before.max())
    later = event_times[event_times > g]
    lead = float(later.min() - g) if len(later) else float("nan")
    if len(event_times) and np.min(np.abs(event_times - g)) <= 0.1:
        return "after a true event's detection (within its hold)", lead
    return "after a false detector peak (no true event within 100 ms)", lead


def confusion(rows: collections.Counter, classes: list[str]) -> str:
    lines = ["| true \\ heard | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for t in classes:
        lines.append(f"| {t} | " + " | ".join(str(rows[(t, p)]) for p in classes) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    add_gate_arg(ap)  # --no-event-gate, the CLI's own flag
    args = ap.parse_args()
    torch.set_num_threads(2)
    classifier = fit_event_classifier([true_audio(s) for s in tqdm(list(SPLITS["train"])[:200], desc="classifier")])
    pipe = FoleyPipeline.from_dir(args.weights, GenerationOptions(variant=args.variant, event_gate=args.event_gate))
    gate = pipe.with_options(replace(pipe.options, event_gate=True)).event_gate()  # traced even when off
    heard, heard_true = collections.Counter(), collections.Counter()
    syncs, causes, leads = [], collections.Counter(), []
    for seed in tqdm(list(SPLITS[args.split])[: args.clips], desc="generate"):
        c = render_clip(seed)
        times = np.arange(len(c.frames)) / c.fps
        audio = pipe.generate(c.frames, times, c.duration, seed=c.seed)
        for e, p, q in zip(c.events, classifier.predict(audio, c.events), classifier.predict(c.audio, c.events),
                           strict=True):
            heard[(e.cls, p)] += 1
            heard_true[(e.cls, q)] += 1
        onsets = detect_onsets(audio)
        syncs.append(onset_sync(onsets, c.events, c.silent_spans))
        gate_times = gate.events(torch.as_tensor(times), pipe.frame_features(c.frames))[0].numpy()
        event_times = np.asarray([e.time for e in c.events])
        for start, end in c.silent_spans:
            for t in onsets[(onsets > start + 0.04) & (onsets < end - 0.04)]:
                cause, lead = trace(float(t), gate_times, event_times)
                causes[cause] += 1
                leads.append(lead)
    s = pool_sync(syncs)
    print(f"{args.variant}, {'gated' if args.event_gate else 'no gate'}, {args.split} {args.clips} clips: onset F1 "
          f"{s['f1']:.3f}, false onsets in silence {s['false_onset_rate_in_silence']:.3f} "
          f"({s['n_false_spans']:.0f} of {s['n_silent_spans']:.0f} stretches, {s['n_false_onsets']:.0f} onsets)\n")
    print("| false onset in silence: cause | onsets |\n|---|---|")
    for k, v in causes.most_common():
        print(f"| {k} | {v} |")
    lead = np.asarray([x for x in leads if np.isfinite(x)])
    if len(lead):
        print(f"\ngate opening -> next true event: median {np.median(lead):.2f} s, "
              f"{np.mean(lead <= 1.0):.0%} within 1 s")
    classes = sorted({k[0] for k in heard_true})
    print("\nGenerated audio, as the eval's classifier hears it:\n" + confusion(heard, classes))
    print("\nTrue audio:\n" + confusion(heard_true, classes))


if __name__ == "__main__":
    main()
