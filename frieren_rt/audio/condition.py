"""What the picture tells the vocoder: a per-mel-frame condition from the visual event detector (beyond Frieren,
whose vocoder reads the mel alone).

Why: from the TRUE mel the student vocoder keeps 86 % / 81 % of the true audio's class and learned onset F1 0.84
on 120 test / validation clips (MODEL_CARD.md, "Targets"), so even a perfect field misses both of issue 3's
targets through it. What it loses is in the attack: it flattens each band's peak and softens the rise of a sound
that starts under another (``benchmarks/lost_onsets.py``), because within the mel's 46 ms window an attack's
place and kind are uncertain and a regression spreads them. The detector sees each event on its video frame and
says which class it is; handed that, the vocoder need not guess whether a rise is a new sound, nor what sound.

The condition is causal and uses only what the engine has when it vocodes a hop: the detector's posteriors on
frames up to the newest. Per video frame: P(event) = 1 - P(no event), and each class posterior's decaying hold
(:func:`frieren_rt.vision.events.event_trace`), so a class seen on an onset frame stays visible, fading, over
its sound's body. Each mel frame reads the video frame on screen at its centre.
"""

from __future__ import annotations

import torch

from frieren_rt.audio.mel import MelConfig
from frieren_rt.vision.events import event_trace

__all__ = ["CONDITION_DECAY", "LOOKBACK", "condition_channels", "detector_condition", "event_condition",
           "mel_frame_times", "with_condition"]

# Frames of history the hold reads before the first mel frame's: decay ** LOOKBACK is under 1e-4 (0.9 ** 88), so a
# stream of any length costs the same per hop and the result equals the whole history's to that margin.
LOOKBACK = 88

# Per video frame: 0.9 halves a class's hold in 6.6 frames (0.22 s at 30 fps), about half the median length of the
# world's sounds within 20 dB of their peak (MODEL_CARD.md, "Evaluation").
CONDITION_DECAY = 0.9


def condition_channels(num_classes: int) -> int:
    """Channels of :func:`event_condition` for a detector of ``num_classes`` classes: P(event) + one hold each."""
    return 1 + num_classes


def mel_frame_times(frames: int, first: int = 0, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """(frames,) float64 seconds: the centre of mel frames ``first`` .. ``first + frames - 1``. With HiFi-GAN's
    padding (frieren_rt.audio.mel) frame j's window covers samples [j hop - pad, j hop - pad + n_fft), centred
    on (j + 1/2) hop."""
    return (torch.arange(first, first + frames, dtype=torch.float64) + 0.5) * cfg.hop_length / cfg.sample_rate


def event_condition(posteriors: torch.Tensor, frame_ts: torch.Tensor, mel_times: torch.Tensor, *,
                    decay: float = CONDITION_DECAY) -> torch.Tensor:
    """The vocoder's condition (1 + K, M) float32 on ``mel_times`` (M,) seconds, from the detector's softmax
    ``posteriors`` (S, K + 1) ("no event" last) on video frames shown at ``frame_ts`` (S,) seconds, increasing.

    Row 0: P(event) of the frame on screen; rows 1..K: each class's :func:`event_trace` at ``decay`` per frame.
    A mel frame before the first video frame reads the first (the clip's or stream's start). Only the frames from
    ``LOOKBACK`` before the first mel frame's to the last one's are read (a hold older than that is under 1e-4)."""
    if posteriors.dim() != 2 or posteriors.shape[0] != frame_ts.shape[0]:
        raise ValueError(f"posteriors {tuple(posteriors.shape)} must be (S, K + 1) for {frame_ts.shape[0]} frame times")
    if len(frame_ts) == 0:
        raise ValueError("no video frame to condition the vocoder on")
    shown = (torch.searchsorted(frame_ts.double().contiguous(), mel_times.double().contiguous(), right=True) - 1)
    shown = shown.clamp(min=0)  # (M,)
    lo, hi = max(0, int(shown.min()) - LOOKBACK), int(shown.max()) + 1
    post = posteriors[lo:hi].float()
    per_frame = torch.cat([1.0 - post[:, -1:], event_trace(post[None, :, :-1], decay)[0]], dim=1)  # (S', 1 + K)
    return per_frame[shown - lo].T.contiguous()  # (1 + K, M)


def detector_condition(num_classes: int):  # noqa: ANN201 (frieren_rt.windowing.generator.VocoderCondition)
    """(frame_times (F,), features (F, D), mel_times (M,)) -> (1 + K, M): :func:`event_condition` of the
    detector posteriors the frame features end with (the FeatureExtractor's layout, as cached)."""
    from frieren_rt.vision.events import feature_posteriors  # noqa: PLC0415

    def condition(frame_times: torch.Tensor, features: torch.Tensor, mel_times: torch.Tensor) -> torch.Tensor:
        return event_condition(feature_posteriors(features, num_classes), frame_times, mel_times)

    return condition


def with_condition(model: torch.nn.Module, channels: int) -> torch.nn.Module:
    """A copy of the vocoder ``model`` (a HifiganGenerator reading the mel alone) that also reads ``channels``
    condition channels: the same weights, the new condition conv at zero, so it renders as ``model`` until
    trained (the fine-tune's starting point)."""
    from dataclasses import replace  # noqa: PLC0415

    from frieren_rt.audio.hifigan import HifiganGenerator  # noqa: PLC0415

    if model.cfg.cond_channels:
        raise ValueError(f"the vocoder already reads {model.cfg.cond_channels} condition channels")
    out = HifiganGenerator(replace(model.cfg, cond_channels=channels))
    missing, unexpected = out.load_state_dict(model.state_dict(), strict=False)
    if unexpected or set(missing) != {"conv_cond.weight", "conv_cond.bias"}:
        raise ValueError(f"cannot extend the vocoder: missing {missing}, unexpected {unexpected}")
    return out
