"""Decode manifest entries: sounds to mono float32, images to RGBA uint8 (stdlib wave, the WAD reader, PyAV).

PCM WAV is read with :mod:`wave` (fast, no subprocess); OGG/MP3 and PNG go through PyAV, which the project
already depends on; ``file.wad#LUMP`` is a DMX lump and ``file.zip#member`` a WAV inside a zip.
"""

from __future__ import annotations

import io
import wave
import zipfile
from pathlib import Path

import numpy as np

from frieren_rt.assets.licences import AssetEntry
from frieren_rt.assets.paths import asset_file, cache_root

__all__ = ["read_sound", "read_image", "resample"]


def _wav_bytes(data: io.BufferedIOBase | str) -> tuple[np.ndarray, int]:
    with wave.open(data, "rb") as w:
        ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 8388608.0
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    else:
        raise ValueError(f"unsupported WAV sample width {width}")
    return x.reshape(-1, ch).mean(axis=1), rate  # (S,) mono


def _av_audio(path: Path) -> tuple[np.ndarray, int]:
    import av  # noqa: PLC0415

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        parts = []
        for f in container.decode(stream):
            a = f.to_ndarray().astype(np.float32)  # planar: (C, S); packed: (1, S * C)
            parts.append(a if f.format.is_planar else a.reshape(-1, len(f.layout.channels)).T)
    return np.concatenate(parts, axis=1).mean(axis=0), rate


def read_sound(entry: AssetEntry, root: Path | None = None) -> tuple[np.ndarray, int]:
    """-> (samples float32 (S,) mono, sample rate) at the file's own rate."""
    from frieren_rt.assets.wad import parse_dmx, read_directory, read_lump  # noqa: PLC0415

    root = root or cache_root()
    file_rel, _, member = entry.path.partition("#")
    path = asset_file(entry.source, file_rel, root=root)
    if path.suffix.lower() == ".wad":
        lump = next(lp for lp in read_directory(path) if lp.name == member)
        x, rate = parse_dmx(read_lump(path, lump))
    elif path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as zf:
            x, rate = _wav_bytes(io.BytesIO(zf.read(member)))
    elif path.suffix.lower() == ".wav":
        try:
            x, rate = _wav_bytes(str(path))
        except wave.Error:  # float or ADPCM WAV: let FFmpeg decode it
            x, rate = _av_audio(path)
    else:
        x, rate = _av_audio(path)
    return np.ascontiguousarray(x, dtype=np.float32), int(rate)


def read_image(entry: AssetEntry, root: Path | None = None) -> np.ndarray:
    """-> RGBA uint8 (H, W, 4)."""
    import av  # noqa: PLC0415

    path = asset_file(entry.source, entry.path, root=root)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgba")


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited rational resampling (polyphase FIR) of (S,) float32."""
    if src_rate == dst_rate:
        return x.astype(np.float32, copy=True)
    from math import gcd  # noqa: PLC0415

    from scipy.signal import resample_poly  # noqa: PLC0415

    g = gcd(src_rate, dst_rate)
    return resample_poly(x, dst_rate // g, src_rate // g).astype(np.float32)
