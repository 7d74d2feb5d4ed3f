"""Issue 3, "Tests": an end-to-end ``frieren-rt generate`` of test-split world clips with the shipped one-step
distilled model puts sound onsets on the frames that cause them.

The bar is a stated regression guard, not issue 3's 0.90 target (missed; MODEL_CARD.md): pooled onset F1 at
+-40 ms (EBU R37) over the first five test clips must reach ONSET_F1_BAR, and must be at least
MISMATCH_MARGIN times the F1 of the same audio scored against the other clips' events (the mean over every
pairing), so the check can fail.
"""

from __future__ import annotations

import wave

import numpy as np
import pytest

from frieren_rt.cli import main
from frieren_rt.eval.onset_net import LearnedOnsetDetector
from frieren_rt.eval.onsets import detect_onsets, onset_sync, pool_sync

SEEDS = (200000, 200001, 200002, 200003, 200004)  # the first five test-split clips: no selection
CLIP_S = 10.0  # whole clips: 44 events over the five (6 s cuts held 13, too few for a steady ratio)
# Measured with the shipped weights and generate's defaults since 2026-11-28 23:15 (the 0.1 s hop, 5 revised
# latents of look-ahead; the student vocoder fine-tuned on the edge-trained decoder), seed 0: pooled F1 0.880
# (precision 0.971, recall 0.805), 0.053 against the other clips' events; learned detector 0.835 against 0.082.
# Before (runs/long28, distill, generate's defaults then: offline decoder, student vocoder,
# the whole right context, seed 0) on these five whole clips: pooled F1 0.868 (the same with --lookahead 0) (precision 0.943, recall 0.805, 41 scored onsets), 0.026-0.079
# (mean 0.053) against the other clips' events. With generate's default before (HiFi-GAN universal after the
# offline decoder): 0.775 (precision 0.795, recall 0.756), mean 0.050 against the other clips. The weights before (runs/long24): 0.829 in two runs,
# mean 0.079 against the other clips. Before, on the first three clips cut to 6 s
# (10 events, so one onset moved F1 by about 0.05): 0.737 and 0.632 against 0.211 for the next clip's events;
# the second run's ratio was exactly 3 (12/19 against 4/19), which is why the check now pools more events.
# Before (runs/small19, distill, per-class event gate, seed 0): pooled F1 0.778 on
# the three 6 s clips (precision 0.875, recall 0.7) in three of four runs and 0.737 in one (generation is not bit-exact
# from run to run), 0.21-0.22 against the next clip's events, 0.818 for the true audio (the onset detector's own
# ceiling here); with generate's default since then, HiFi-GAN universal, 0.778 / 0.222 in one run, and 0.778 /
# 0.222 again (precision 0.875, recall 0.7) with the offline VAE decoder before it. Earlier weights:
# runs/small14 0.824 / 0.235; runs/small18 0.889 / 0.222; runs/small13 0.778 / 0.222; runs/small11 0.90 / 0.20;
# runs/small3 0.667 / 0.095.
ONSET_F1_BAR = 0.50
MISMATCH_MARGIN = 3.0


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    import torch

    try:
        from frieren_rt.world import render_clip
        from frieren_rt.world.mp4 import write_mp4

        clips = [render_clip(s, duration=CLIP_S) for s in SEEDS]
    except Exception as err:  # noqa: BLE001 - the world needs the licensed sounds
        pytest.skip(f"world assets missing (run 'frieren-rt assets fetch'): {err}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = []
    try:
        for clip in clips:
            folder = tmp_path_factory.mktemp(f"gen{clip.seed}")
            write_mp4(clip, folder / "in.mp4")
            code = main(["generate", str(folder / "in.mp4"), "-o", str(folder / "out.mp4"), "--wav",
                         str(folder / "out.wav"), "--model", "distill", "--seed", "0"])
            assert code == 0
            with wave.open(str(folder / "out.wav")) as w:
                assert w.getframerate() == clip.sample_rate
                audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32767.0
            out.append((clip, audio))
    finally:
        torch.set_num_threads(threads)
    return out


def _own_and_other(generated, detect) -> tuple[dict, list[float]]:
    """Pooled sync of each clip's generated onsets against its own events, and the pooled F1 against the
    events of the clip k places on, for every shift k: one pairing's count of chance hits is a handful of
    onsets, too few to hold a ratio steady (issue 3 notes: a 3-clip run tied the margin exactly)."""
    onsets = [detect(a) for _, a in generated]
    own = pool_sync([onset_sync(d, c.events, c.silent_spans) for (c, _), d in zip(generated, onsets, strict=True)])
    n = len(generated)
    other = [pool_sync([onset_sync(d, generated[(i + k) % n][0].events, generated[(i + k) % n][0].silent_spans)
                        for i, d in enumerate(onsets)])["f1"] for k in range(1, n)]
    return own, other


def test_generated_onsets_land_on_the_events_of_their_own_clip(generated):
    own, other = _own_and_other(generated, detect_onsets)
    assert own["f1"] >= ONSET_F1_BAR, own
    assert own["f1"] >= MISMATCH_MARGIN * float(np.mean(other)), (own, other)


def test_the_learned_onset_detector_agrees(generated):
    """The same check by the learned detector (frieren_rt/eval/onset_net.py; 0.93 on true test audio, where the
    flux detector finds 0.75). Measured (shipped weights, generate's defaults with the whole right context, these
    five clips): 0.853 (precision 0.941, recall 0.780) against a mean of 0.067 for the other clips' events; the flux
    detector in the same run 0.868 / 0.053. With --lookahead 0, the default before: 0.789-0.800 / 0.066-0.067 (with
    HiFi-GAN universal, the default before that: 0.822 / 0.062 and 0.775 / 0.056)."""
    own, other = _own_and_other(generated, LearnedOnsetDetector.load())
    assert own["f1"] >= ONSET_F1_BAR, own
    assert own["f1"] >= MISMATCH_MARGIN * float(np.mean(other)), (own, other)
