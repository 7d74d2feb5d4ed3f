"""World geometry and timing: a frozen config with derived lengths, named presets, and the seed splits."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WorldConfig", "PRESETS", "SPLITS", "split_of"]


@dataclass(frozen=True)
class WorldConfig:
    width: int = 160
    height: int = 120
    fps: int = 30  # 25-30: the video rates V2A training data uses (Frieren trains on 8 fps features of these)
    sample_rate: int = 22050  # the vocoder's rate (assets.md: HiFi-GAN universal, 22.05 kHz)
    duration: float = 10.0  # seconds; the clip has round(duration * fps) frames
    actors_per_10s: float = 4.5  # mean number of sound-making actors
    distractors: int = 3  # silent moving sprites
    silent_span_prob: float = 0.6  # chance that a clip reserves a stretch with no sound at all

    def __post_init__(self) -> None:
        if not 25 <= self.fps <= 30:
            raise ValueError(f"fps must be in 25..30, got {self.fps}")
        if self.width < 64 or self.height < 64 or self.width > 1024 or self.height > 1024:
            raise ValueError(f"frame size must be within 64..1024 pixels, got {self.width}x{self.height}")
        if not 0 < self.duration <= 600:
            raise ValueError(f"duration must be in (0, 600] seconds, got {self.duration}")
        if self.sample_rate < 8000:
            raise ValueError(f"sample_rate must be >= 8000, got {self.sample_rate}")

    @property
    def n_frames(self) -> int:
        return max(1, round(self.duration * self.fps))

    @property
    def n_samples(self) -> int:
        return self.frame_sample(self.n_frames)

    @property
    def unit(self) -> float:
        """Pixels per design pixel: sprite sizes are designed for a 120-pixel-high view."""
        return self.height / 120.0

    def frame_sample(self, frame: int) -> int:
        """First audio sample of a video frame: the frame's presentation time in samples."""
        return round(frame * self.sample_rate / self.fps)


PRESETS: dict[str, WorldConfig] = {
    "small": WorldConfig(),
    "square224": WorldConfig(width=224, height=224),
    "pal": WorldConfig(fps=25),
}

# Disjoint seed ranges; val/test may also draw the held-out sound variants (sound_pool.HELD_OUT_RULE).
SPLITS: dict[str, range] = {
    "train": range(0, 100_000),
    "val": range(100_000, 101_000),
    "test": range(200_000, 201_000),
}


def split_of(seed: int) -> str:
    for name, seeds in SPLITS.items():
        if seed in seeds:
            return name
    ranges = ", ".join(f"{n} {r.start}..{r.stop - 1}" for n, r in SPLITS.items())
    raise ValueError(f"seed {seed} is in no split ({ranges})")
