"""The world's public entry: ``render_clip(seed)`` -> a Clip of paired frames, audio and true events."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from frieren_rt.world.config import PRESETS, WorldConfig
from frieren_rt.world.events import Event
from frieren_rt.world.render import mix_audio, render_frames, silent_spans
from frieren_rt.world.scene import plan_clip
from frieren_rt.world.sound_pool import load_pool

__all__ = ["Clip", "render_clip"]


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (N, H, W, 3) uint8
    fps: int
    audio: np.ndarray  # (S,) float32 mono in [-1, 1], S = round(N * sample_rate / fps)
    sample_rate: int
    events: list[Event]  # sorted by time; event.frame shows its cause, its sound starts at frame / fps
    duration: float  # N / fps seconds
    seed: int
    split: str  # "train" | "val" | "test" (from the seed)
    silent_spans: list[tuple[float, float]]  # [(start s, end s)] with no sound at all (>= 0.5 s each)

    def to_json(self) -> dict:
        return {"seed": self.seed, "split": self.split, "fps": self.fps, "sample_rate": self.sample_rate,
                "duration": self.duration, "width": int(self.frames.shape[2]), "height": int(self.frames.shape[1]),
                "events": [e.to_dict() for e in self.events],
                "silent_spans": [list(s) for s in self.silent_spans]}


def render_clip(seed: int, duration: float | None = None, config: WorldConfig | str = "small") -> Clip:
    """Render clip ``seed`` (its split follows from the seed range, see config.SPLITS).

    duration overrides config.duration (seconds). Deterministic: the same seed and config give identical
    frames and audio.
    """
    cfg = PRESETS[config] if isinstance(config, str) else config
    if duration is not None:
        cfg = replace(cfg, duration=float(duration))
    pool = load_pool(cfg.sample_rate)
    scene = plan_clip(int(seed), cfg, pool=pool)
    return Clip(frames=render_frames(scene), fps=cfg.fps, audio=mix_audio(scene, pool),
                sample_rate=cfg.sample_rate, events=scene.events, duration=cfg.n_frames / cfg.fps,
                seed=int(seed), split=scene.split, silent_spans=silent_spans(scene, pool))
