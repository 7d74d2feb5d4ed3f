"""True world audio without the video: the evaluation metrics are fitted and calibrated on it.

:func:`frieren_rt.world.render_clip` also draws every frame (about 0.1 s per 10 s clip); fitting the event
classifier on hundreds of train clips needs only the mixed audio and the events (about 8 ms per clip).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frieren_rt.world.config import PRESETS, WorldConfig
from frieren_rt.world.events import Event
from frieren_rt.world.render import mix_audio, silent_spans
from frieren_rt.world.scene import plan_clip
from frieren_rt.world.sound_pool import load_pool

__all__ = ["TrueAudio", "true_audio"]


@dataclass(frozen=True)
class TrueAudio:
    """The audio half of a world Clip: same fields, same values as ``render_clip(seed)``."""

    seed: int
    split: str
    audio: np.ndarray  # (S,) float32 at sample_rate
    sample_rate: int
    events: list[Event]
    silent_spans: list[tuple[float, float]]


def true_audio(seed: int, config: WorldConfig | str = "small") -> TrueAudio:
    """Clip ``seed``'s true mixed audio, events and silent spans (identical to render_clip's)."""
    cfg = PRESETS[config] if isinstance(config, str) else config
    pool = load_pool(cfg.sample_rate)
    scene = plan_clip(int(seed), cfg, pool=pool)
    return TrueAudio(seed=int(seed), split=scene.split, audio=mix_audio(scene, pool),
                     sample_rate=cfg.sample_rate, events=scene.events, silent_spans=silent_spans(scene, pool))
