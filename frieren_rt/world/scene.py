"""Plan a clip from its seed: background, camera path, silent distractors, sound-making actors, events.

Everything random is drawn from one ``numpy.random.Generator(PCG64(seed))`` in a fixed order, so a seed (with
its config) determines the clip exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from frieren_rt.world import draw
from frieren_rt.world.actors import ACTOR_TYPES
from frieren_rt.world.config import WorldConfig, split_of
from frieren_rt.world.events import Event
from frieren_rt.world.plan import PlanContext, camera_path
from frieren_rt.world.sound_pool import SoundPool, load_pool
from frieren_rt.world.sprites import SpriteBank, sprite_bank

__all__ = ["Scene", "plan_clip", "Background", "Distractor"]

_SKIES = (((70, 130, 220), (190, 225, 255)), ((40, 40, 90), (240, 150, 110)), ((5, 5, 25), (30, 40, 80)),
          ((120, 170, 200), (230, 230, 210)))
_GROUNDS = ("grassMid", "dirtMid", "sandMid", "planetMid", "stoneMid", "snowMid")


@dataclass
class Background:
    """Two pre-rendered strips scrolled by the camera: far (sky + hills, parallax 0.35) and ground (1.0)."""

    far: np.ndarray  # (ground_y, Wf, 3) uint8
    ground: np.ndarray  # (H - ground_y, Wg, 3) uint8
    cam_min: float

    def paint(self, canvas: np.ndarray, cam: float) -> None:
        gy, w = self.far.shape[0], canvas.shape[1]
        fo = int(0.35 * (cam - self.cam_min))
        go = int(cam - self.cam_min)
        canvas[:gy] = self.far[:, fo: fo + w]
        canvas[gy:] = self.ground[:, go: go + w]


def _background(rng, cfg: WorldConfig, bank: SpriteBank, cam: np.ndarray, ground_y: int) -> Background:
    span = float(cam.max() - cam.min())
    wf, wg = cfg.width + math.ceil(0.35 * span) + 2, cfg.width + math.ceil(span) + 2
    top, bottom = (np.asarray(c, np.float32) for c in _SKIES[int(rng.integers(len(_SKIES)))])
    t = np.linspace(0, 1, ground_y, dtype=np.float32)[:, None, None]
    far = np.broadcast_to(top * (1 - t) + bottom * t, (ground_y, wf, 3)).astype(np.uint8)
    if top.sum() < 120:  # night: stars
        n = wf * ground_y // 90
        far[rng.integers(0, ground_y, n), rng.integers(0, wf, n)] = 230
    xs = np.arange(wf)
    for layer in range(2):  # two hill silhouettes from sums of sines
        amp, base = (0.12, 0.45) if layer == 0 else (0.08, 0.25)
        h = np.zeros(wf)
        for _ in range(3):
            h += rng.uniform(0.3, 1.0) * np.sin(xs * rng.uniform(0.01, 0.05) + rng.uniform(0, 6.3))
        top_y = (ground_y * (1 - base - amp * h / 2)).astype(int)
        color = np.asarray(rng.integers(30, 120, size=3), np.uint8) // (2 - layer)
        mask = np.arange(ground_y)[:, None] >= top_y[None, :]
        far[mask] = color
    tile = bank.get(_GROUNDS[int(rng.integers(len(_GROUNDS)))], cfg.height - ground_y)
    strip = np.zeros((cfg.height - ground_y, wg, 3), np.uint8)
    tw = tile.shape[1]
    flat = np.clip(tile[..., :3] * 255 + (1 - tile[..., 3:4]) * 60, 0, 255).astype(np.uint8)
    phase = int(-cam.min()) % tw
    for x in range(-phase, wg, tw):
        lo, hi = max(x, 0), min(x + tw, wg)
        strip[:, lo:hi] = flat[:, lo - x: hi - x]
    return Background(np.ascontiguousarray(far), strip, float(cam.min()))


class Distractor:
    """A moving sprite that never makes a sound: a cloud, a flying insect, or a crawler on the ground."""

    def __init__(self, rng, cfg: WorldConfig, bank: SpriteBank, ground_y: int) -> None:
        u = cfg.unit
        self.bank, self.kind = bank, str(rng.choice(["cloud", "flyer", "crawler"]))
        self.sprite = str(rng.choice(["bee", "fly", "ladybug"] if self.kind == "flyer"
                                     else ["slimeBlue", "slimeGreen", "wormGreen", "mouse"]))
        self.h = round((9 if self.kind != "cloud" else 7) * u * rng.uniform(0.8, 1.3))
        self.x0 = float(rng.uniform(0, cfg.width))
        self.v = float(rng.uniform(-1.5, 1.5) * u) if self.kind != "crawler" else float(rng.uniform(-0.5, 0.5) * u)
        self.y0 = (float(rng.uniform(5 * u, ground_y * 0.6)) if self.kind != "crawler" else ground_y - self.h)
        self.phase, self.w = float(rng.uniform(0, 6.3)), cfg.width

    def draw(self, canvas, f: int, cam: float, live) -> None:
        par = 0.35 if self.kind == "cloud" else 1.0
        span = self.w + 40 * self.h / 9
        x = (self.x0 + self.v * f - par * cam) % span - 20 * self.h / 9
        if self.kind == "cloud":
            for dx, r in ((-1.0, 0.8), (0.0, 1.0), (1.0, 0.7)):
                draw.disk(canvas, x + dx * self.h, self.y0, r * self.h, (250, 250, 255), 0.85)
            return
        y = self.y0 + (3 * self.h / 9 * math.sin(0.15 * f + self.phase) if self.kind == "flyer" else 0)
        s = self.bank.get(self.sprite, self.h, flip=self.v > 0)
        draw.blit(canvas, s, round(x - s.shape[1] / 2), round(y))


@dataclass
class Scene:
    cfg: WorldConfig
    seed: int
    split: str
    cam: np.ndarray  # (N,) camera x per frame
    background: Background
    distractors: list
    actors: list
    events: list[Event]  # sorted by (time, id)
    reserved_silence: list[tuple[int, int]]  # frames [start, end) planned to be silent


def plan_clip(seed: int, cfg: WorldConfig, *, pool: SoundPool | None = None,
              bank: SpriteBank | None = None) -> Scene:
    split = split_of(seed)
    pool = pool or load_pool(cfg.sample_rate)
    bank = bank or sprite_bank()
    rng = np.random.Generator(np.random.PCG64(seed))
    n = cfg.n_frames
    cam = camera_path(rng, cfg)
    silent = []
    if rng.random() < cfg.silent_span_prob and n >= 3 * cfg.fps:
        length = int(rng.integers(cfg.fps, min(int(2.5 * cfg.fps), n // 3) + 1))
        start = int(rng.integers(n // 10, max(n - length - n // 10, n // 10 + 1)))
        silent.append((start, start + length))
    ctx = PlanContext(cfg, rng, pool, split, cam, silent)
    background = _background(rng, cfg, bank, cam, ctx.ground_y)
    distractors = [Distractor(rng, cfg, bank, ctx.ground_y) for _ in range(int(rng.integers(1, cfg.distractors + 2)))]
    types, weights = list(ACTOR_TYPES), np.asarray(list(ACTOR_TYPES.values()))
    actors = []
    for _ in range(1 + int(rng.poisson(cfg.actors_per_10s * n / (10 * cfg.fps)))):
        kind = types[int(rng.choice(len(types), p=weights / weights.sum()))]
        f0 = int(rng.integers(-cfg.fps, max(n - cfg.fps, 1)))
        f1 = min(f0 + int(rng.integers(int(2.5 * cfg.fps), 5 * cfg.fps)), n)
        actors.append(kind(ctx, bank, max(f0, 0), f1))
    order = {"Door": 0, "Meteor": 1, "Walker": 2, "Gunner": 2, "Exploder": 3, "Ship": 4}
    actors.sort(key=lambda a: order[type(a).__name__])  # draw order back to front
    events = sorted(ctx.events, key=lambda e: (e.time, e.id))
    return Scene(cfg, seed, split, cam, background, distractors, actors, events, silent)
