"""Write a Clip as an mp4 (H.264 video + AAC audio, via PyAV's bundled FFmpeg) with a JSON event list."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np

from frieren_rt.world.clip import Clip

__all__ = ["write_mp4", "write_clip"]


def write_mp4(clip: Clip, path: Path) -> None:
    """H.264 (yuv420p, so width/height are padded to even) + AAC mono at the clip's sample rate."""
    import av  # noqa: PLC0415

    frames = clip.frames
    h, w = frames.shape[1] + frames.shape[1] % 2, frames.shape[2] + frames.shape[2] % 2
    if (h, w) != frames.shape[1:3]:
        frames = np.pad(frames, ((0, 0), (0, h - frames.shape[1]), (0, w - frames.shape[2]), (0, 0)), mode="edge")
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=clip.fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": "18", "preset": "veryfast"}
        aus = out.add_stream("aac", rate=clip.sample_rate, layout="mono")
        for f in frames:
            out.mux(vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(vs.encode())
        hop = 1024
        for i in range(0, len(clip.audio), hop):
            chunk = clip.audio[None, i: i + hop].astype(np.float32)
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = clip.sample_rate, i, Fraction(1, clip.sample_rate)
            out.mux(aus.encode(af))
        out.mux(aus.encode())


def write_clip(clip: Clip, mp4_path: Path) -> Path:
    """Write mp4_path and the event list beside it (same name, .json); returns the JSON path."""
    mp4_path = Path(mp4_path)
    write_mp4(clip, mp4_path)
    json_path = mp4_path.with_suffix(".json")
    json_path.write_text(json.dumps(clip.to_json(), indent=1) + "\n")
    return json_path
