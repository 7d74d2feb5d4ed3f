"""The procedural game-Foley world: paired video + audio clips with ground-truth events, deterministic by seed.

``render_clip(seed)`` is the entry point; ``frieren-rt world render`` writes one clip as mp4 + JSON.
"""

from frieren_rt.world.clip import Clip, render_clip
from frieren_rt.world.config import PRESETS, SPLITS, WorldConfig, split_of
from frieren_rt.world.events import EVENT_CLASSES, Event

__all__ = ["Clip", "render_clip", "WorldConfig", "PRESETS", "SPLITS", "split_of", "EVENT_CLASSES", "Event"]
