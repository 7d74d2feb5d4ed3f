"""Planning context shared by the actors: the camera path, ground line, silent spans and event creation.

An event is only created if its whole sound interval avoids the clip's reserved silent spans, so those spans
are exactly silent; actors drop (and do not draw) any cause whose event was refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from frieren_rt.world.config import WorldConfig
from frieren_rt.world.events import LOOPING_CLASSES, Event
from frieren_rt.world.sound_pool import SoundPool

__all__ = ["PlanContext", "camera_path"]


def camera_path(rng: np.random.Generator, cfg: WorldConfig) -> np.ndarray:
    """Camera x per frame (N,) float: piecewise-constant velocity, still about 40 % of the time."""
    n = cfg.n_frames
    vel = np.zeros(n)
    f = 0
    while f < n:
        seg = int(rng.integers(cfg.fps, 3 * cfg.fps))
        v = 0.0 if rng.random() < 0.4 else float(rng.choice([-1, 1]) * rng.uniform(0.4, 2.0) * cfg.unit)
        vel[f: f + seg] = v
        f += seg
    return np.concatenate([[0.0], np.cumsum(vel[:-1])])


@dataclass
class PlanContext:
    cfg: WorldConfig
    rng: np.random.Generator
    pool: SoundPool
    split: str
    cam: np.ndarray  # (N,) camera x per frame
    silent: list[tuple[int, int]]  # reserved [start, end) in frames
    events: list[Event] = field(default_factory=list)
    next_actor: int = 0

    @property
    def ground_y(self) -> int:
        return self.cfg.height - round(18 * self.cfg.unit)

    def actor_id(self) -> int:
        self.next_actor += 1
        return self.next_actor

    def world_x(self, screen_x: float, frame: int) -> float:
        return screen_x + self.cam[min(max(frame, 0), len(self.cam) - 1)]

    def on_screen(self, world_x: float, frame: int, margin: float = 4.0) -> bool:
        """Whether world_x is inside the view at frame (margin in design pixels): causes must be visible."""
        m = margin * self.cfg.unit
        return m <= world_x - self.cam[min(max(frame, 0), len(self.cam) - 1)] <= self.cfg.width - m

    def _free(self, start_s: float, end_s: float) -> bool:
        fps = self.cfg.fps
        return all(end_s <= a / fps or start_s >= b / fps for a, b in self.silent)

    def event(self, cls: str, frame: int, source_id: int, loudness: float, rate: float = 1.0,
              end_frame: int | None = None, *, at_x: float | None = None) -> Event | None:
        """Pick a sound variant and create the event, or None if it would sound in a silent span or
        fall outside the clip or its cause (at world x at_x) off screen. Looping classes last from frame to
        end_frame."""
        if not 0 <= frame < self.cfg.n_frames or (at_x is not None and not self.on_screen(at_x, frame)):
            return None
        variants = self.pool.variants(cls, self.split)
        sound = variants[int(self.rng.integers(len(variants)))]
        t = frame / self.cfg.fps
        if cls in LOOPING_CLASSES:
            end_frame = min(end_frame if end_frame is not None else frame + 1, self.cfg.n_frames)
            dur = (end_frame - frame) / self.cfg.fps
        else:
            dur = self.pool.seconds(sound) / rate
        dur = min(dur, self.cfg.n_frames / self.cfg.fps - t)
        if dur <= 0 or not self._free(t, t + dur):
            return None
        ev = Event(id=len(self.events), time=t, frame=frame, cls=cls, source_id=source_id,
                   loudness=float(np.clip(loudness, 0.02, 1.0)), duration=dur, sound=sound, rate=float(rate))
        self.events.append(ev)
        return ev
