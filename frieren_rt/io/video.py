"""Reading input videos and muxing generated audio into them (PyAV), with clear errors for bad files."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["VideoInputError", "DecodedVideo", "read_video", "mux_audio"]


class VideoInputError(ValueError):
    """The input is not a usable video; the message says what is wrong with it."""


@dataclass(frozen=True)
class DecodedVideo:
    """frames (N, H, W, 3) uint8 RGB; times (N,) float64 presentation seconds from the first frame; fps."""

    frames: np.ndarray
    times: np.ndarray
    fps: float

    @property
    def duration(self) -> float:
        return float(self.times[-1] + 1.0 / self.fps) if len(self.times) else 0.0


def read_video(path: str | Path, *, max_side: int = 320) -> DecodedVideo:
    """Decode every frame of the first video stream, downscaled so the longer side is <= ``max_side``
    (the visual features read 96-pixel frames; keeping full HD frames in memory would cost GBs)."""
    import av  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input video not found: {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise VideoInputError(f"{path} is not a readable video file ({exc})") from None
    with container:
        if not container.streams.video:
            raise VideoInputError(f"{path} has no video stream (audio-only or data file?)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames, times = [], []
        try:
            for frame in container.decode(stream):
                w, h = frame.width, frame.height
                scale = min(1.0, max_side / max(w, h))
                out_w, out_h = max(2, round(w * scale) // 2 * 2), max(2, round(h * scale) // 2 * 2)
                frames.append(frame.to_ndarray(format="rgb24", width=out_w, height=out_h))
                times.append(float(frame.time) if frame.time is not None else len(times) / float(stream.average_rate or 30))
        except av.error.FFmpegError as exc:
            if not frames:
                raise VideoInputError(f"{path}: the video stream could not be decoded ({exc})") from None
        if not frames:
            raise VideoInputError(f"{path} has a video stream with no frames (zero length)")
        rate = float(stream.average_rate) if stream.average_rate else 30.0
    t = np.asarray(times, dtype=np.float64)
    return DecodedVideo(frames=np.stack(frames), times=t - t[0], fps=rate)


def mux_audio(video_path: str | Path, audio: np.ndarray, sample_rate: int, out_path: str | Path) -> None:
    """Copy the video stream of ``video_path`` and add ``audio`` (mono float in [-1, 1]) as AAC 48 kHz."""
    import av  # noqa: PLC0415

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(video_path)) as src, av.open(str(out_path), "w") as dst:
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        aout = dst.add_stream("aac", rate=48000, layout="mono")
        for packet in src.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            dst.mux(packet)
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=48000)
        pcm = np.clip(audio.astype(np.float32), -1, 1)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
        frame.sample_rate = sample_rate
        frame.time_base = Fraction(1, sample_rate)
        frame.pts = 0
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in aout.encode(chunk):
                dst.mux(packet)
        for packet in aout.encode(None):
            dst.mux(packet)
