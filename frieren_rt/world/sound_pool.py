"""The world's sound pool: licence-filtered manifest entries grouped by event class, at the world's rate.

Only entries whose licence is on :data:`frieren_rt.assets.licences.ALLOWED_LICENCES` and whose source is a
core (non-optional) source are used, so every machine with ``frieren-rt assets fetch`` builds the same pool.

Held-out variants (HELD_OUT_RULE): within each class, variants are sorted by manifest id and every third one
(index 2, 5, 8, ...) is held out of the train split; val and test seeds draw from all variants, so they
contain sounds the model never heard in training. :func:`held_out_ids` lists them.

Preprocessing (why): resampled to the world rate; one-shots have leading samples below -40 dB of their peak
trimmed so the first mixed sample is the audible onset (exact onset alignment), are peak-normalised, and are
capped at MAX_ONESHOT_S with a fade-out so silent stretches can be scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from functools import lru_cache
from pathlib import Path

import numpy as np

from frieren_rt.assets.licences import AssetEntry, allowed, load_manifest
from frieren_rt.assets.sources import SOURCES
from frieren_rt.world.events import EVENT_CLASSES, LOOPING_CLASSES

__all__ = ["CLASS_PATTERNS", "HELD_OUT_RULE", "SoundPool", "load_pool", "held_out_ids", "class_entries"]

MAX_ONESHOT_S = 1.6
_FADE_S = 0.05
HELD_OUT_RULE = "index % 3 == 2 within each class, variants sorted by manifest id"

# (source key, file-name pattern) per class; patterns match the path's last component or the WAD lump name.
_AR, _ES, _FD = "pypi/arcade-3.3.3", "debian/endless-sky-data", "debian/freedoom"
_CB, _MT = "debian/chromium-bsu-data", "debian/minetest-data"
CLASS_PATTERNS: dict[str, tuple[tuple[str, str], ...]] = {
    "coin": ((_AR, "coin?.wav"),),
    "powerup": ((_AR, "upgrade?.wav"), (_AR, "secret?.wav"), (_CB, "power.wav"), (_CB, "life_add.wav"),
                (_FD, "DSGETPOW"), (_FD, "DSITEMUP"), (_FD, "DSWPNUP")),
    "jump": ((_AR, "jump?.wav"), (_AR, "phaseJump1.wav")),
    "laser": ((_AR, "laser?.wav"), (_ES, "pulse.wav"), (_ES, "particle.wav"), (_ES, "proton.wav")),
    "blaster": ((_ES, "blaster.wav"), (_ES, "mod blaster.wav"), (_ES, "plasma.wav"), (_ES, "ion.wav"),
                (_ES, "repeater.wav"), (_FD, "DSPLASMA"), (_FD, "DSFIRSHT")),
    "pistol": ((_FD, "DSPISTOL"), (_FD, "DSSHOTGN"), (_FD, "DSDSHTGN")),
    "impact": ((_AR, "hit?.wav"), (_AR, "rockHit2.wav"), (_FD, "DSPUNCH"), (_FD, "DSMETAL"),
               (_ES, "crunch.wav"), (_ES, "ion impact.wav")),
    "explosion": ((_AR, "explosion?.wav"), (_ES, "explosion large.wav"), (_ES, "explosion medium.wav"),
                  (_ES, "explosion small.wav"), (_ES, "explosion tiny.wav"), (_FD, "DSBAREXP"),
                  (_FD, "DSRXPLOD"), (_FD, "DSFIRXPL"), (_CB, "exploBig.wav"), (_CB, "exploStd.wav"),
                  (_CB, "exploPop.wav"), (_CB, "boom.wav"), (_MT, "tnt_explode.ogg")),
    "door_open": ((_FD, "DSDOROPN"), (_FD, "DSBDOPN"), (_FD, "DSDBOPN"), (_MT, "doors_glass_door_open.ogg")),
    "door_close": ((_FD, "DSDORCLS"), (_FD, "DSBDCLS"), (_FD, "DSDBCLS"), (_MT, "doors_glass_door_close.ogg")),
    "engine": ((_ES, "afterburner~.wav"), (_ES, "ionic afterburner~.wav"), (_ES, "flamethrower~.wav"),
               (_MT, "tnt_gunpowder_burning.ogg")),
}
assert set(CLASS_PATTERNS) == set(EVENT_CLASSES)


def _name(entry: AssetEntry) -> str:
    return entry.path.rpartition("#")[2] if "#" in entry.path else Path(entry.path).name


def class_entries(entries: list[AssetEntry]) -> dict[str, list[AssetEntry]]:
    """Allowed core-source sound entries per class, sorted by id."""
    core = {s.key for s in SOURCES if not s.optional}
    usable = [e for e in allowed(entries) if e.kind == "sound" and e.source in core]
    out = {}
    for cls, pats in CLASS_PATTERNS.items():
        out[cls] = sorted((e for e in usable if any(e.source == s and fnmatch(_name(e), p) for s, p in pats)),
                          key=lambda e: e.id)
    return out


def _held_out(index: int) -> bool:
    return index % 3 == 2


def held_out_ids(entries: list[AssetEntry] | None = None) -> list[str]:
    groups = class_entries(entries if entries is not None else load_manifest())
    return [e.id for cls in EVENT_CLASSES for i, e in enumerate(groups[cls]) if _held_out(i)]


def _trim_oneshot(x: np.ndarray, rate: int) -> np.ndarray:
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak == 0.0:
        raise ValueError("silent sound in the pool")
    loud = np.flatnonzero(np.abs(x) >= peak * 0.01)  # -40 dB
    x = x[loud[0]: loud[-1] + 1] / peak
    cap = int(MAX_ONESHOT_S * rate)
    if len(x) > cap:
        x = x[:cap].copy()
        n = int(_FADE_S * rate)
        x[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return x.astype(np.float32)


@dataclass(frozen=True)
class SoundPool:
    """Preprocessed mono float32 sounds at ``sample_rate`` keyed by manifest id, grouped by class."""

    sample_rate: int
    sounds: dict[str, np.ndarray]
    by_class: dict[str, tuple[str, ...]]  # all variants
    train_by_class: dict[str, tuple[str, ...]]  # variants minus the held-out ones

    def variants(self, cls: str, split: str) -> tuple[str, ...]:
        return self.train_by_class[cls] if split == "train" else self.by_class[cls]

    def seconds(self, sound_id: str) -> float:
        return len(self.sounds[sound_id]) / self.sample_rate


@lru_cache(maxsize=4)
def load_pool(sample_rate: int = 22050, root: Path | None = None) -> SoundPool:
    """Decode and preprocess the pool once per process (about 1 s on the 2-core machine)."""
    from frieren_rt.assets.media import read_sound, resample  # noqa: PLC0415

    groups = class_entries(load_manifest(root))
    sounds, by_class, train = {}, {}, {}
    for cls in EVENT_CLASSES:
        if not groups[cls]:
            raise ValueError(f"no licensed sound for class {cls!r}; is the asset cache complete?")
        for e in groups[cls]:
            x, rate = read_sound(e, root)
            x = resample(x, rate, sample_rate)
            if cls in LOOPING_CLASSES:
                x = (x / max(float(np.abs(x).max()), 1e-9)).astype(np.float32)
            else:
                x = _trim_oneshot(x, sample_rate)
            sounds[e.id] = x
        by_class[cls] = tuple(e.id for e in groups[cls])
        train[cls] = tuple(e.id for i, e in enumerate(groups[cls]) if not _held_out(i))
    return SoundPool(sample_rate, sounds, by_class, train)


def sound_durations(pool: SoundPool, split: str = "train", floor_db: float = -30.0) -> dict[str, list[float]]:
    """Per class, each variant's audible length: seconds from its first to its last sample within ``floor_db``
    of its peak (the event gate's per-class hold, frieren_rt/windowing/gate.py)."""
    out: dict[str, list[float]] = {}
    for cls in pool.by_class:
        lengths = []
        for sound_id in pool.variants(cls, split):
            x = np.abs(np.asarray(pool.sounds[sound_id], dtype=np.float32))
            loud = np.flatnonzero(x >= x.max() * 10 ** (floor_db / 20)) if x.size and x.max() > 0 else []
            lengths.append(float((loud[-1] - loud[0]) / pool.sample_rate) if len(loud) else 0.0)
        out[cls] = lengths
    return out
