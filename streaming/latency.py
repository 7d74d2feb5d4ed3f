"""Glass-to-ear measurement at the receiving client (pure functions).

RTP timestamps carry random offsets, so latency is measured on the client's own clock: the capture time of a
sent frame against the arrival time of the first received sample of its audio. A received sample's play time
is taken as the arrival of its 20 ms frame plus its offset inside the frame.

- :func:`first_audio_latency`: the stream start. The engine anchors a session's audio timeline to its first
  frame, and its first emitted sample stands for that frame's capture time minus the held-back crossfade, so the
  first non-silent sample measures glass-to-ear for the whole (gap-free) stream, whatever the model sounds like.
- :func:`onset_offsets`: with a trained model, each known event of a world clip (shown on frame k) should sound
  ``latency`` after frame k was captured; the offsets of detected onsets from that are the sync error
  (../shared/reference/streaming.md: residual within ATSC IS-191, +45 ms / -15 ms).
- :func:`onset_play_times`, :func:`event_offsets`, :func:`fraction_within`: the sync acceptance check
  (issue 4, section 5): onsets found by the offline evaluation's detector (frieren_rt.eval.onsets, the one
  the model's onset F1 is measured with) on the received audio, matched one-to-one to the events' expected
  play times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ReceivedAudio", "first_audio_latency", "envelope_onsets", "event_offsets", "fraction_within",
           "onset_offsets", "onset_play_times", "summarize"]


@dataclass(frozen=True)
class ReceivedAudio:
    """Received audio on the client clock: samples (n,) mono float32 at ``rate``; arrivals (n_frames,) clock
    seconds when each ``frame``-sample frame arrived (frames are contiguous)."""

    samples: np.ndarray
    arrivals: np.ndarray
    rate: int = 48000
    frame: int = 960

    def play_time(self, index: int | np.ndarray) -> np.ndarray:
        """Clock time of sample ``index``: its frame's arrival plus its offset inside the frame."""
        index = np.asarray(index)
        return self.arrivals[index // self.frame] + (index % self.frame) / self.rate


def first_nonsilent(samples: np.ndarray, threshold: float = 1e-4) -> int | None:
    hits = np.flatnonzero(np.abs(samples) > threshold)
    return int(hits[0]) if len(hits) else None


def first_audio_latency(audio: ReceivedAudio, first_capture: float, stream_delay_s: float = 0.0,
                        threshold: float = 1e-4) -> float | None:
    """Seconds from the first frame's capture to the play time of the audio standing for it; None if silent.

    stream_delay_s: how far before the first frame's capture the first emitted sample lies (the engine's held
    crossfade; reported by the server as ``stream_delay_s``)."""
    n = first_nonsilent(audio.samples, threshold)
    if n is None:
        return None
    return float(audio.play_time(n)) - (first_capture - stream_delay_s)


def envelope_onsets(samples: np.ndarray, rate: int, *, block_s: float = 0.005, threshold: float) -> np.ndarray:
    """Times (s from sample 0) where the RMS envelope in ``block_s`` blocks rises through ``threshold``."""
    block = max(1, round(block_s * rate))
    n = len(samples) // block
    rms = np.sqrt(np.mean(np.square(samples[: n * block].reshape(n, block), dtype=np.float64), axis=1))
    above = rms > threshold
    rising = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    return rising * block / rate


def onset_offsets(audio: ReceivedAudio, event_captures: Sequence[float], latency_s: float, *,
                  threshold: float, search_s: float = 0.25) -> list[float | None]:
    """Per event (capture time of the frame showing it, client clock): detected onset play time minus the
    expected ``capture + latency_s``; the nearest onset within ``search_s``, else None."""
    onsets = envelope_onsets(audio.samples, audio.rate, threshold=threshold)
    times = audio.play_time(np.round(onsets * audio.rate).astype(int)) if len(onsets) else np.zeros(0)
    out: list[float | None] = []
    for t in event_captures:
        err = times - (t + latency_s)
        near = err[np.abs(err) <= search_s]
        out.append(float(near[np.argmin(np.abs(near))]) if len(near) else None)
    return out


def summarize(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of ``values`` (seconds)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return {}
    return {"n": float(len(v)), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max())}


def onset_play_times(audio: ReceivedAudio) -> np.ndarray:
    """Play times (K,) on the client clock of the onsets in the received audio, found by the offline onset
    detector (frieren_rt.eval.onsets: tuned on TRUE world audio at 22.05 kHz, so the audio is resampled)."""
    from math import gcd  # noqa: PLC0415

    from scipy.signal import resample_poly  # noqa: PLC0415

    from frieren_rt.eval.onsets import PRESETS, detect_onsets  # noqa: PLC0415

    model_rate = PRESETS["world"].sample_rate
    g = gcd(model_rate, audio.rate)
    x = resample_poly(audio.samples.astype(np.float64), model_rate // g, audio.rate // g).astype(np.float32)
    onsets = detect_onsets(x)  # (K,) seconds from sample 0
    index = np.clip(np.round(onsets * audio.rate).astype(int), 0, max(0, len(audio.samples) - 1))
    return audio.play_time(index) if len(audio.samples) else np.zeros(0)


def event_offsets(onsets: np.ndarray, expected: Sequence[float], search_s: float = 0.25) -> np.ndarray:
    """(E,) seconds: each event's matched onset minus its expected play time (positive = sound late); NaN
    where no onset lies within ``search_s``. Matching is one-to-one (frieren_rt.eval.onsets.match_onsets),
    so one loud onset cannot vouch for several events."""
    from frieren_rt.eval.onsets import match_onsets  # noqa: PLC0415

    expected = np.asarray(expected, dtype=np.float64)
    out = np.full(len(expected), np.nan)
    for r, c in match_onsets(expected, np.asarray(onsets, dtype=np.float64), search_s):
        out[r] = onsets[c] - expected[r]
    return out


def fraction_within(offsets: np.ndarray, early_s: float, late_s: float) -> float:
    """Fraction of all events (unmatched ones count as misses) with ``-early_s <= offset <= late_s``."""
    offsets = np.asarray(offsets, dtype=np.float64)
    if not len(offsets):
        return 0.0
    ok = (offsets >= -early_s - 1e-9) & (offsets <= late_s + 1e-9)  # NaN compares False: a miss
    return float(np.count_nonzero(ok)) / len(offsets)
