"""WAD directory and DMX lump parsing on a WAD built in memory."""

import struct

import numpy as np
import pytest

from frieren_rt.assets.wad import dmx_sounds, parse_dmx, read_directory, read_lump


def _dmx(pcm: bytes, rate: int = 11025) -> bytes:
    padded = bytes([128]) * 16 + pcm + bytes([128]) * 16
    return struct.pack("<HHI", 3, rate, len(padded)) + padded


def _wad(path, lumps):
    body, entries, offset = b"", [], 12
    for name, data in lumps:
        entries.append(struct.pack("<ii8s", offset + len(body), len(data), name.encode()))
        body += data
    path.write_bytes(struct.pack("<4sii", b"IWAD", len(lumps), 12 + len(body)) + body + b"".join(entries))


def test_directory_and_dmx_round_trip(tmp_path):
    wad = tmp_path / "t.wad"
    _wad(wad, [("DSPISTOL", _dmx(bytes([0, 128, 255]), 22050)), ("MAP01", b"xyz"), ("DSBAD", b"\x01\x00rest")])
    lumps = read_directory(wad)
    assert [lp.name for lp in lumps] == ["DSPISTOL", "MAP01", "DSBAD"]
    assert [lp.name for lp in dmx_sounds(wad)] == ["DSPISTOL"]
    x, rate = parse_dmx(read_lump(wad, lumps[0]))
    assert rate == 22050 and x.dtype == np.float32
    np.testing.assert_allclose(x, [-1.0, 0.0, 127 / 128])


def test_rejects_non_wad_and_non_dmx(tmp_path):
    bad = tmp_path / "bad.wad"
    bad.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(ValueError, match="not a WAD"):
        read_directory(bad)
    with pytest.raises(ValueError, match="not a DMX"):
        parse_dmx(struct.pack("<HHI", 1, 11025, 4) + bytes(4))
