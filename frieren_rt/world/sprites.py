"""CC0 Kenney sprites from the arcade wheel, decoded once per process and cached per size and orientation."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from frieren_rt.assets.licences import ALLOWED_LICENCES, load_manifest
from frieren_rt.world.draw import premultiply, resize_rgba

__all__ = ["SPRITES", "SpriteBank", "sprite_bank"]

_ARCADE_KEY = "pypi/arcade-3.3.3"
# name -> path under the arcade images folder; every one is a CC0 manifest entry (checked on load).
SPRITES: dict[str, str] = {
    **{f"{c}_{p}": f"animated_characters/{d}/{c}_{p}.png"
       for d, c in (("female_adventurer", "femaleAdventurer"), ("male_person", "malePerson"),
                    ("robot", "robot"), ("zombie", "zombie"), ("female_person", "femalePerson"))
       for p in ("idle", "jump", "walk0", "walk1", "walk2", "walk3", "walk4", "walk5", "walk6", "walk7")},
    **{n: f"items/{n}.png" for n in ("coinGold", "coinSilver", "coinBronze", "gemBlue", "gemGreen", "gemRed",
                                     "star", "keyYellow")},
    **{n: f"space_shooter/{n}.png" for n in (
        "playerShip1_orange", "playerShip1_blue", "playerShip1_green", "playerShip2_orange",
        "playerShip3_orange", "laserRed01", "laserBlue01", "meteorGrey_big1", "meteorGrey_big2",
        "meteorGrey_med1", "meteorGrey_small1", "meteorGrey_tiny1")},
    **{n: f"enemies/{n}.png" for n in ("bee", "fly", "ladybug", "slimeBlue", "slimeGreen", "wormGreen", "mouse")},
    **{n: f"tiles/{n}.png" for n in ("grassMid", "dirtMid", "sandMid", "planetMid", "stoneMid", "snowMid",
                                     "brickGrey", "brickBrown", "boxCrate", "bomb", "dirtCenter", "sandCenter")},
}


class SpriteBank:
    """Premultiplied RGBA sprites by name; ``get(name, h)`` scales to height h keeping the aspect."""

    def __init__(self, root: Path | None = None) -> None:
        from frieren_rt.assets.media import read_image  # noqa: PLC0415

        entries = {e.path.removeprefix("arcade/resources/assets/images/"): e
                   for e in load_manifest(root) if e.kind == "image" and e.source == _ARCADE_KEY}
        self._full: dict[str, np.ndarray] = {}
        for name, rel in SPRITES.items():
            e = entries.get(rel)
            if e is None:
                continue  # a tile name absent from this arcade version: callers pick from what exists
            if e.licence not in ALLOWED_LICENCES:
                raise ValueError(f"sprite {e.id} has licence {e.licence}, not on the allow-list")
            self._full[name] = premultiply(read_image(e, root))
        self._cache: dict[tuple, np.ndarray] = {}

    def has(self, name: str) -> bool:
        return name in self._full

    def aspect(self, name: str) -> float:
        h, w = self._full[name].shape[:2]
        return w / h

    def get(self, name: str, h: int, *, flip: bool = False, rot: int = 0, w: int | None = None) -> np.ndarray:
        """Sprite scaled to height h (width from the aspect unless given), mirrored, rotated by rot*90 deg."""
        key = (name, h, flip, rot, w)
        out = self._cache.get(key)
        if out is None:
            img = np.rot90(self._full[name], rot) if rot else self._full[name]
            ww = w if w is not None else max(1, round(h * img.shape[1] / img.shape[0]))
            out = resize_rgba(np.ascontiguousarray(img), ww, max(1, h))
            if flip:
                out = np.ascontiguousarray(out[:, ::-1])
            self._cache[key] = out
        return out


@lru_cache(maxsize=2)
def sprite_bank(root: Path | None = None) -> SpriteBank:
    return SpriteBank(root)
