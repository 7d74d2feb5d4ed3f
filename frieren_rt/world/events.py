"""Event classes of the world and the ground-truth event record."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["EVENT_CLASSES", "LOOPING_CLASSES", "Event"]

# Each class has a visual cause drawn at the exact frame its sound starts (see world/actors.py).
EVENT_CLASSES: tuple[str, ...] = (
    "coin", "powerup", "jump", "laser", "blaster", "pistol", "impact", "explosion", "door_open", "door_close",
    "engine",
)
LOOPING_CLASSES = frozenset({"engine"})  # sound lasts exactly as long as its visible cause (the flame)


@dataclass(frozen=True)
class Event:
    id: int  # unique within the clip
    time: float  # onset, seconds; always frame / fps
    frame: int  # video frame whose picture first shows the cause
    cls: str  # one of EVENT_CLASSES
    source_id: int  # the actor (on-screen object) that makes it
    loudness: float  # linear gain applied to the peak-normalised sound, (0, 1]
    duration: float  # seconds of sound as mixed (loops: exactly the visible flame's duration)
    sound: str  # manifest id of the sound variant
    rate: float  # playback-rate factor (pitch): > 1 is higher and shorter

    def to_dict(self) -> dict:
        return asdict(self)
