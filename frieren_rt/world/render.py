"""Render a planned Scene to frames and to its mixed audio."""

from __future__ import annotations

import numpy as np

from frieren_rt.world.events import LOOPING_CLASSES, Event
from frieren_rt.world.scene import Scene
from frieren_rt.world.sound_pool import SoundPool

__all__ = ["render_frames", "mix_audio", "event_samples", "soft_limit", "silent_spans"]

_LOOP_XFADE_S = 0.02
_LOOP_FADE_IN = 64  # samples; starts at 1/64, so the onset sample is already non-zero
_LOOP_FADE_OUT_S = 0.01


def render_frames(scene: Scene, live: frozenset[int] | None = None) -> np.ndarray:
    """-> frames uint8 (N, H, W, 3). live: the event ids that happen (default: all)."""
    cfg = scene.cfg
    live = frozenset(e.id for e in scene.events) if live is None else live
    frames = np.empty((cfg.n_frames, cfg.height, cfg.width, 3), np.uint8)
    for f in range(cfg.n_frames):
        canvas, cam = frames[f], float(scene.cam[f])
        scene.background.paint(canvas, cam)
        for d in scene.distractors:
            d.draw(canvas, f, cam, live)
        for a in scene.actors:
            a.draw(canvas, f, cam, live)
    return frames


def _loop(x: np.ndarray, n: int, xfade: int) -> np.ndarray:
    """x repeated to n samples with linear crossfades at the seams (why: a bare splice clicks)."""
    if len(x) >= n:
        return x[:n].copy()
    xfade = min(xfade, len(x) // 4)
    out = np.zeros(n + len(x), np.float32)
    ramp = np.linspace(0, 1, xfade, dtype=np.float32)
    pos, hop = 0, len(x) - xfade
    while pos < n:
        seg = x.copy()
        if pos > 0 and xfade:
            seg[:xfade] *= ramp
            out[pos: pos + xfade] *= 1 - ramp
        out[pos: pos + len(seg)] += seg
        pos += hop
    return out[:n]


def event_samples(ev: Event, pool: SoundPool, n: int | None = None) -> np.ndarray:
    """The event's sound as mixed (before the limiter): pitch by resampling at ``rate``, gain ``loudness``;
    loops last exactly ``duration`` (n samples)."""
    x = pool.sounds[ev.sound]
    if ev.rate != 1.0:  # linear-interpolation playback at a different speed: pitch and length change together
        x = np.interp(np.arange(0, len(x) - 1, ev.rate), np.arange(len(x)), x).astype(np.float32)
    if ev.cls in LOOPING_CLASSES:
        n = n if n is not None else round(ev.duration * pool.sample_rate)
        x = _loop(x, n, int(_LOOP_XFADE_S * pool.sample_rate))
        k = min(_LOOP_FADE_IN, n)
        x[:k] *= np.linspace(1 / k, 1, k, dtype=np.float32)
        k = min(int(_LOOP_FADE_OUT_S * pool.sample_rate), n)
        x[n - k:] *= np.linspace(1, 0, k + 1, dtype=np.float32)[1:]  # reaches 0 on the last sample
    elif n is not None:
        x = x[:n]
    return x * np.float32(ev.loudness)


def soft_limit(x: np.ndarray, knee: float = 0.9) -> np.ndarray:
    """Per-sample soft clip above the knee (zero stays zero; samples before an onset are untouched)."""
    a = np.abs(x)
    over = a > knee
    y = x.copy()
    y[over] = np.sign(x[over]) * (knee + (1 - knee) * np.tanh((a[over] - knee) / (1 - knee)))
    return y


def mix_audio(scene: Scene, pool: SoundPool, live: frozenset[int] | None = None) -> np.ndarray:
    """-> audio float32 (S,), S = cfg.n_samples; each event starts at the first sample of its frame."""
    cfg = scene.cfg
    out = np.zeros(cfg.n_samples, np.float32)
    for ev in scene.events:
        if live is not None and ev.id not in live:
            continue
        start = cfg.frame_sample(ev.frame)
        n = None
        if ev.cls in LOOPING_CLASSES:
            n = cfg.frame_sample(ev.frame + round(ev.duration * cfg.fps)) - start
        x = event_samples(ev, pool, n)[: cfg.n_samples - start]
        out[start: start + len(x)] += x
    return soft_limit(out)


def silent_spans(scene: Scene, pool: SoundPool, min_s: float = 0.5) -> list[tuple[float, float]]:
    """Stretches of at least min_s seconds where no event sounds: [(start s, end s)], exactly silent."""
    cfg = scene.cfg
    busy = np.zeros(cfg.n_samples + 1, bool)
    for ev in scene.events:
        start = cfg.frame_sample(ev.frame)
        n = len(event_samples(ev, pool, None if ev.cls not in LOOPING_CLASSES else
                              cfg.frame_sample(ev.frame + round(ev.duration * cfg.fps)) - start))
        busy[start: start + n] = True
    idle = np.concatenate([[0], (~busy[:-1]).astype(np.int8), [0]])
    d = np.diff(idle)
    spans = []
    for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True):
        if (b - a) / cfg.sample_rate >= min_s:
            spans.append((float(a / cfg.sample_rate), float(b / cfg.sample_rate)))
    return spans
