"""Read sounds out of a Doom WAD (Freedoom's ``freedoom2.wad``, BSD-3-Clause).

A WAD is a 12-byte header (``IWAD``/``PWAD``, lump count, directory offset, little-endian int32s) and a
directory of 16-byte entries (offset, size, 8-byte NUL-padded name). Sound effects are DMX lumps: uint16 format
(3), uint16 sample rate, uint32 sample count, then 8-bit unsigned PCM whose first and last 16 samples are
padding (the Doom engine skips them; see the Doom wiki "Sound" page, DMX format).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Lump", "read_directory", "read_lump", "parse_dmx", "dmx_sounds"]

_DMX_PAD = 16


@dataclass(frozen=True)
class Lump:
    name: str
    offset: int
    size: int


def read_directory(path: Path) -> list[Lump]:
    """The WAD's lump directory in file order."""
    with open(path, "rb") as f:
        magic, count, dir_offset = struct.unpack("<4sii", f.read(12))
        if magic not in (b"IWAD", b"PWAD"):
            raise ValueError(f"{path} is not a WAD file (magic {magic!r})")
        f.seek(dir_offset)
        raw = f.read(16 * count)
    lumps = []
    for i in range(count):
        offset, size, name = struct.unpack_from("<ii8s", raw, 16 * i)
        lumps.append(Lump(name.rstrip(b"\0").decode("ascii", "replace"), offset, size))
    return lumps


def read_lump(path: Path, lump: Lump) -> bytes:
    with open(path, "rb") as f:
        f.seek(lump.offset)
        return f.read(lump.size)


def parse_dmx(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a DMX sound lump -> (samples float32 (S,) in [-1, 1), sample rate)."""
    if len(data) < 8:
        raise ValueError("DMX lump shorter than its 8-byte header")
    fmt, rate, count = struct.unpack_from("<HHI", data, 0)
    if fmt != 3:
        raise ValueError(f"not a DMX sound lump (format {fmt}, expected 3)")
    pcm = np.frombuffer(data, dtype=np.uint8, count=min(count, len(data) - 8), offset=8)
    if len(pcm) > 2 * _DMX_PAD:
        pcm = pcm[_DMX_PAD:-_DMX_PAD]
    return (pcm.astype(np.float32) - 128.0) / 128.0, int(rate)


def dmx_sounds(path: Path) -> list[Lump]:
    """Lumps of the WAD that are DMX sounds (Doom names them ``DS*``; the header confirms it)."""
    out = []
    with open(path, "rb") as f:
        for lump in read_directory(path):
            if not lump.name.startswith("DS") or lump.size < 8:
                continue
            f.seek(lump.offset)
            if struct.unpack("<H", f.read(2))[0] == 3:
                out.append(lump)
    return out
