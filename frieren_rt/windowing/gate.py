"""The event gate: generated audio passes only around frames the visual event detector marks as events.

Beyond Frieren (issue 3): the one-step field puts whole sounds into a large share of the silent stretches (it does
so even when handed perfect "no event" labels; MODEL_CARD, "What was tried"), and the decoder and vocoder keep
silence silent, so the false sounds are the field's choice. The detector (frieren_rt.vision.events) already
says, per frame, how likely an event is; the gate opens ``pre_s`` before each frame with P(event) >=
``threshold``, stays open for the hold of the frame's most likely class (``class_hold_s``: the median length
of that class's training sounds, measured when the weights are exported; ``hold_s`` when absent), and closes
elsewhere, with linear ramps so it never clicks.
It reads only the frames the window already has (causal: the emitted audio lags its frames), so streaming
and offline generation gate identically.

Shapes: event_times (E,) seconds, holds (E,) seconds, sample_times (N,) seconds -> gain (N,) in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from frieren_rt.vision.events import feature_posteriors

__all__ = ["GATE_PRESETS", "EventGate", "GateConfig", "class_hold_times", "detector_posteriors", "gate_gain"]


@dataclass(frozen=True)
class GateConfig:
    """threshold: P(event) of a frame that opens the gate; pre_s: open this long before the frame (a sound may
    lead its picture by up to a frame); hold_s: stay open this long after it (the sound's body), for every
    class when ``class_hold_s`` is empty; ramp_s: linear ramp either side; class_hold_s: a hold per detector
    class, in the detector's class order (the weights folder's gate.json); min_class_confidence: a frame opens
    the gate only if its most likely class holds at least this share of its P(event) (0: any frame above the
    threshold; the detector's false peaks spread their P(event) over classes, MODEL_CARD "What was tried")."""

    threshold: float = 0.5
    pre_s: float = 0.03
    hold_s: float = 0.4
    ramp_s: float = 0.02
    class_hold_s: tuple[float, ...] = ()
    min_class_confidence: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0 or min(self.pre_s, self.hold_s, *self.class_hold_s) < 0.0 or \
                self.ramp_s <= 0.0 or not 0.0 <= self.min_class_confidence <= 1.0:
            raise ValueError(f"bad gate config {self}: threshold in (0, 1], pre_s and hold_s >= 0, ramp_s > 0, "
                             "min_class_confidence in [0, 1]")


# Chosen on validation clips (MODEL_CARD, "The event gate"): threshold 0.3 / 0.5 / 0.7 and pre 30 / 60 ms within
# noise; of one hold for all classes 0.25 s scored best and 0.6 s worst, but one hold cuts long sounds
# (explosions ~1 s) and keeps short ones open too long: per-class holds (the median length of the class's
# training sounds) scored as well as 0.4 s or better. "uniform": what a folder without gate.json gets.
GATE_PRESETS = {"uniform": GateConfig()}


def gate_gain(event_times: torch.Tensor, sample_times: torch.Tensor, cfg: GateConfig,
              holds: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) gain: the max over events of a trapezoid, 1 on [e - pre, e + hold], ramping to 0 over ``ramp_s``;
    ``holds`` (E,) per event, default ``cfg.hold_s``."""
    if event_times.numel() == 0:
        return torch.zeros(sample_times.shape, dtype=torch.float32)
    hold = torch.full(event_times.shape, cfg.hold_s, dtype=torch.float64) if holds is None else holds.double()
    d = sample_times.double()[:, None] - event_times.double()[None, :]  # (N, E) seconds after each event
    up = (d + cfg.pre_s + cfg.ramp_s) / cfg.ramp_s
    down = (hold[None, :] + cfg.ramp_s - d) / cfg.ramp_s
    return torch.minimum(up, down).clamp(0.0, 1.0).amax(dim=1).float()


def detector_posteriors(num_classes: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Features -> the detector's softmax (F, K + 1) (last: "no event"): the last K + 1 columns, the layout of
    FeatureExtractor with a detector ([image | motion | embedding | posteriors])."""
    return lambda features: feature_posteriors(features, num_classes)


def class_hold_times(durations: dict[str, list[float]], classes: tuple[str, ...], *, quantile: float = 0.5,
                     fallback_s: float = 0.4) -> tuple[float, ...]:
    """Per-class hold: the ``quantile`` of each class's sound durations (seconds; classes without any get
    ``fallback_s``), in ``classes`` order."""
    out = []
    for c in classes:
        d = sorted(durations.get(c, []))
        out.append(round(float(d[min(len(d) - 1, int(quantile * len(d)))]), 3) if d else fallback_s)
    return tuple(out)


class EventGate:
    """Applies :func:`gate_gain` to a stream's emitted audio from the frames it was generated from.
    posteriors: features (F, D) -> (F, K + 1) class posteriors, the last "no event"."""

    def __init__(self, cfg: GateConfig, posteriors: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.cfg = cfg
        self.posteriors = posteriors

    def events(self, frame_times: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F,) capture times, (F, D) features -> ((E,) times, (E,) holds) of the frames with P(event) >=
        threshold; each hold is its most likely class's (``class_hold_s``) or ``hold_s``."""
        if len(frame_times) == 0:
            return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        # On the host: a hop's few frames, and the gate's times are float64 capture times (GPU engines too).
        post = self.posteriors(features).cpu()  # (F, K + 1)
        frame_times = frame_times.cpu()
        p_event = 1.0 - post[:, -1]  # (F,)
        hit = p_event >= self.cfg.threshold
        if self.cfg.min_class_confidence > 0.0:
            hit &= post[:, :-1].amax(dim=1) >= self.cfg.min_class_confidence * p_event
        if self.cfg.class_hold_s:
            table = torch.tensor(self.cfg.class_hold_s, dtype=torch.float64)
            if len(table) != post.shape[1] - 1:
                raise ValueError(f"class_hold_s has {len(table)} holds for {post.shape[1] - 1} detector classes")
            holds = table[post[hit, :-1].argmax(dim=1)]
        else:
            holds = torch.full((int(hit.sum()),), self.cfg.hold_s, dtype=torch.float64)
        return frame_times[hit].double(), holds

    def apply(self, audio: torch.Tensor, first_time: float, rate: int,
              events: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """audio (N,) whose sample 0 plays at capture time ``first_time`` -> gated audio (N,)."""
        times = first_time + torch.arange(audio.shape[0], dtype=torch.float64) / rate
        at, holds = events
        # Only events whose open span reaches this chunk: the track holds seconds of frames, a hop ~0.1 s.
        near = (at + holds + self.cfg.ramp_s >= times[0]) & (at - self.cfg.pre_s - self.cfg.ramp_s <= times[-1]) \
            if len(times) else torch.zeros_like(at, dtype=torch.bool)
        return audio * gate_gain(at[near], times, self.cfg, holds[near]).to(device=audio.device, dtype=audio.dtype)
